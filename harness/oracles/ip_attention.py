"""One attention processor's IP-Adapter image branch, recomputed in plain torch.

The published decoupled cross-attention adds, to the text attention's output before the
output projection, ``scale · softmax(q k_ipᵀ/√d) v_ip`` per head, with ``q`` the layer's
own query and ``k_ip = ip_tokens @ to_k_ipᵀ``, ``v_ip = ip_tokens @ to_v_ipᵀ`` from the
checkpoint. The output projection is linear, so the library's processor output at scale
``s`` minus its output at scale 0 must equal ``s · ip_branch @ W_outᵀ / rescale`` — no
bias, no text branch — which is what ``expected_scale_delta`` returns. That difference
needs only the two outputs, so it does not depend on how a version passes the image
tokens in.

The base model's query and output projections come from the model (they are not what the
adapter changes); the IP weights come from the release file, never from the loaded model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from harness.oracles.ip_projection import multi_head_attention


def ip_branch(
    query: torch.Tensor,
    ip_tokens: torch.Tensor,
    to_k_ip: torch.Tensor,
    to_v_ip: torch.Tensor,
    heads: int,
    k_bias: torch.Tensor | None = None,
    v_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax(q k_ipᵀ/√d) v_ip`` per head, heads merged: ``(batch, tokens, width)``."""
    f64 = torch.float64
    tokens = ip_tokens.to(f64)
    k = F.linear(tokens, to_k_ip.to(f64), None if k_bias is None else k_bias.to(f64))
    v = F.linear(tokens, to_v_ip.to(f64), None if v_bias is None else v_bias.to(f64))
    return multi_head_attention(query.to(f64), k, v, heads)


def expected_scale_delta(
    hidden_states: torch.Tensor,
    ip_tokens: torch.Tensor,
    base: Mapping[str, torch.Tensor],
    ip_weights: Mapping[str, torch.Tensor],
    heads: int,
    scale: float,
    rescale_output_factor: float = 1.0,
) -> torch.Tensor:
    """Processor output at ``scale`` minus output at 0 for a UNet cross-attention.

    ``base``: the layer's ``to_q.weight`` (and ``to_q.bias`` if any) and
    ``to_out.0.weight``; ``ip_weights``: the release's ``to_k_ip.weight`` /
    ``to_v_ip.weight`` (and biases, Flux) of this processor's id."""
    f64 = torch.float64
    q_bias = base.get("to_q.bias")
    query = F.linear(
        hidden_states.to(f64),
        base["to_q.weight"].to(f64),
        None if q_bias is None else q_bias.to(f64),
    )
    branch = ip_branch(
        query,
        ip_tokens,
        ip_weights["to_k_ip.weight"],
        ip_weights["to_v_ip.weight"],
        heads,
        ip_weights.get("to_k_ip.bias"),
        ip_weights.get("to_v_ip.bias"),
    )
    return scale * F.linear(branch, base["to_out.0.weight"].to(f64)) / rescale_output_factor
