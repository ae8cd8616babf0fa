"""What a Custom Diffusion cross-attention computes, in plain torch (float64).

Custom Diffusion fine-tunes only the key and value projections of the text tokens: the
layer keeps its own query and output projections, and its keys / values come from the
file's ``to_k_custom_diffusion`` / ``to_v_custom_diffusion`` (no bias)::

    out = to_out( softmax(q kᵀ/√d) v ),  q = to_q(x),  k = c W_kᵀ,  v = c W_vᵀ

per head. The same formula with the layer's own ``to_k`` / ``to_v`` is the layer without
the adapter, so a load that changed nothing is told apart from one that changed it wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from harness.oracles.ip_projection import multi_head_attention


def _linear(x: torch.Tensor, weights: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    bias = weights.get(f"{name}.bias")
    return F.linear(
        x.to(torch.float64),
        weights[f"{name}.weight"].to(torch.float64),
        None if bias is None else bias.to(torch.float64),
    )


def cross_attention(
    hidden: torch.Tensor,
    context: torch.Tensor,
    layer: Mapping[str, torch.Tensor],
    key_weight: torch.Tensor,
    value_weight: torch.Tensor,
    heads: int,
) -> torch.Tensor:
    """``to_out(MHA(to_q(hidden), context @ key_weightᵀ, context @ value_weightᵀ))``.

    ``layer``: the attention layer's own ``to_q.weight`` / ``to_out.0.weight`` (biases if
    any), read from the pristine model."""
    query = _linear(hidden, layer, "to_q")
    key = F.linear(context.to(torch.float64), key_weight.to(torch.float64))
    value = F.linear(context.to(torch.float64), value_weight.to(torch.float64))
    return _linear(multi_head_attention(query, key, value, heads), layer, "to_out.0")
