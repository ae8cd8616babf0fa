"""The IP-Adapter image projections, recomputed in plain torch from the release tensors.

Why: a by-name weight check proves where tensors landed, not that the library's module
computes what the published model computes (a block that feeds ``norm2`` where ``norm1``
belongs, a K/V split in the wrong order, a missing final LayerNorm all pass a weight
check). These formulas follow the published modules, keyed by the release layout:

* base / Flux (ImageProjModel): ``LayerNorm(reshape(proj(e), N tokens))``;
* full-face (MLPProjModel): ``LayerNorm(Linear(GELU(Linear(h))))`` per token;
* FaceID (MLPProjModel of ip_adapter_faceid): ``LayerNorm(reshape(Linear(GELU(Linear(id)))))``;
* Plus (Resampler): latents; ``x = proj_in(h)``; per block ``latents += attn(x, latents)``
  (``norm1`` on x, ``norm2`` on latents, queries from latents, keys and values from
  ``[x; latents]`` through a fused ``to_kv`` whose first half is K, heads of
  ``HEAD_DIM``), ``latents += ff(latents)`` (LayerNorm, Linear, GELU, Linear, no bias);
  ``norm_out(proj_out(latents))``;
* FaceID-plus (ProjPlusModel, no shortcut): the FaceID MLP's normalised tokens are the
  latents of a resampler over ``proj_in(clip hidden states)``;
* SD3 (InstantX TimeResampler): a sinusoidal timestep embedding (cos first, no shift)
  through ``time_embedding``; ``x = proj_in(h) + temb``; each block modulates ``norm2``
  and its feed-forward LayerNorm with ``shift, scale`` from ``layers.N.2`` (AdaLN).

Computed in float64 on CPU; nothing here imports diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.inputs.checkpoints.ip_adapter.variants import HEAD_DIM, VARIANTS
from harness.oracles.compare import tolerance

Tensors = Mapping[str, torch.Tensor]

#: The published sinusoidal timestep embedding of the SD3 resampler (InstantX defaults).
TIME_FLIP_SIN_TO_COS = True
TIME_FREQ_SHIFT = 0
TIME_MAX_PERIOD = 10000.0
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used by every published module

#: Variants this module has a formula for.
COVERED = ("base", "flux", "full-face", "faceid", "plus", "faceid-plus", "sd3")


@dataclass(frozen=True)
class ProjectionInput:
    """What one projection consumes: ``embeds`` (pooled image embeddings, hidden states or
    face-id embeddings, per the variant), ``clip`` (FaceID-plus: CLIP hidden states),
    ``timestep`` (SD3)."""

    embeds: torch.Tensor
    clip: torch.Tensor | None = None
    timestep: torch.Tensor | None = None


def projection_input(
    variant: str, image_proj: Tensors, batch: int = 2, tokens: int = 5, seed: int = 0
) -> ProjectionInput:
    """A fixed random input of the widths the checkpoint expects."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    if variant in ("base", "flux"):
        return ProjectionInput(rand(batch, image_proj["proj.weight"].shape[1]))
    if variant == "full-face":
        return ProjectionInput(rand(batch, tokens, image_proj["proj.0.weight"].shape[1]))
    if variant == "faceid":
        return ProjectionInput(rand(batch, image_proj["proj.0.weight"].shape[1]))
    if variant == "faceid-plus":
        width = image_proj["perceiver_resampler.proj_in.weight"].shape[1]
        return ProjectionInput(
            rand(batch, image_proj["proj.0.weight"].shape[1]), clip=rand(batch, tokens, width)
        )
    if variant in ("plus", "sd3"):
        hidden = rand(batch, tokens, image_proj["proj_in.weight"].shape[1])
        if variant == "plus":
            return ProjectionInput(hidden)
        steps = torch.linspace(900.0, 100.0, batch, dtype=torch.float64)
        return ProjectionInput(hidden, timestep=steps)
    raise KeyError(f"no projection formula for variant {variant!r}")


def project(variant: str, image_proj: Tensors, given: ProjectionInput) -> torch.Tensor:
    """Image tokens ``(batch, tokens, width)`` the published module computes."""
    if variant not in VARIANTS or variant not in COVERED:
        raise KeyError(f"no projection formula for variant {variant!r}")
    sd = {k: v.detach().to("cpu", torch.float64) for k, v in image_proj.items()}
    x = given.embeds.to(torch.float64)
    if variant in ("base", "flux"):
        width = sd["norm.weight"].shape[0]
        tokens = _linear(x, sd, "proj").reshape(x.shape[0], -1, width)
        return _layer_norm(tokens, sd, "norm")
    if variant == "full-face":
        h = _linear(F.gelu(_linear(x, sd, "proj.0")), sd, "proj.2")
        return _layer_norm(h, sd, "proj.3")
    if variant == "faceid":
        return _face_tokens(x, sd)
    if variant == "plus":
        latents = sd["latents"].repeat(x.shape[0], 1, 1)
        return _resampler(sd, "", _linear(x, sd, "proj_in"), latents)
    if variant == "faceid-plus":
        if given.clip is None:
            raise ValueError("FaceID-plus needs CLIP hidden states")
        p = "perceiver_resampler."
        clip = _linear(given.clip.to(torch.float64), sd, p + "proj_in")
        return _resampler(sd, p, clip, _face_tokens(x, sd))
    if given.timestep is None:
        raise ValueError("the SD3 resampler needs a timestep")
    temb = _time_embedding(given.timestep.to(torch.float64), sd)
    latents = sd["latents"].repeat(x.shape[0], 1, 1)
    feats = _linear(x, sd, "proj_in") + temb[:, None]
    return _resampler(sd, "", feats, latents, temb=temb)


def _linear(x: torch.Tensor, sd: Tensors, name: str) -> torch.Tensor:
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def _layer_norm(x: torch.Tensor, sd: Tensors, name: str) -> torch.Tensor:
    weight = sd[f"{name}.weight"]
    return F.layer_norm(x, (weight.shape[0],), weight, sd.get(f"{name}.bias"), LAYER_NORM_EPS)


def _face_tokens(ids: torch.Tensor, sd: Tensors) -> torch.Tensor:
    """FaceID MLP: id -> N tokens of the ``norm`` width, normalised."""
    width = sd["norm.weight"].shape[0]
    h = _linear(F.gelu(_linear(ids, sd, "proj.0")), sd, "proj.2")
    return _layer_norm(h.reshape(-1, h.shape[-1] // width, width), sd, "norm")


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def _resampler(
    sd: Tensors,
    prefix: str,
    feats: torch.Tensor,
    latents: torch.Tensor,
    temb: torch.Tensor | None = None,
) -> torch.Tensor:
    """Perceiver blocks over ``feats`` (already through ``proj_in``), then the output
    projection; ``temb`` switches on the SD3 AdaLN modulation."""
    depth = 1 + max(
        int(k[len(prefix) :].split(".")[1]) for k in sd if k.startswith(prefix + "layers.")
    )
    for n in range(depth):
        block = f"{prefix}layers.{n}."
        if temb is not None:
            mod = _linear(F.silu(temb), sd, block + "2.1")
            shift_msa, scale_msa, shift_mlp, scale_mlp = mod.chunk(4, dim=1)
        x = _layer_norm(feats, sd, block + "0.norm1")
        lat = _layer_norm(latents, sd, block + "0.norm2")
        if temb is not None:
            lat = _modulate(lat, shift_msa, scale_msa)
        latents = latents + _perceiver_attention(sd, block + "0.", x, lat)
        h = _layer_norm(latents, sd, block + "1.0")
        if temb is not None:
            h = _modulate(h, shift_mlp, scale_mlp)
        latents = latents + _linear(F.gelu(_linear(h, sd, block + "1.1")), sd, block + "1.3")
    return _layer_norm(_linear(latents, sd, prefix + "proj_out"), sd, prefix + "norm_out")


def _perceiver_attention(
    sd: Tensors, prefix: str, x: torch.Tensor, latents: torch.Tensor
) -> torch.Tensor:
    """Queries from the latents; keys and values from ``[x; latents]``; heads of HEAD_DIM."""
    q = _linear(latents, sd, prefix + "to_q")
    k, v = _linear(torch.cat([x, latents], dim=-2), sd, prefix + "to_kv").chunk(2, dim=-1)
    out = multi_head_attention(q, k, v, q.shape[-1] // HEAD_DIM)
    return _linear(out, sd, prefix + "to_out")


def multi_head_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int
) -> torch.Tensor:
    """``softmax(q kᵀ / √d) v`` per head; inputs and output ``(batch, tokens, heads·d)``."""
    batch, width = q.shape[0], q.shape[-1]
    d = width // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, -1, heads, d).transpose(1, 2)

    weights = torch.softmax(split(q) @ split(k).transpose(-2, -1) / math.sqrt(d), dim=-1)
    return (weights @ split(v)).transpose(1, 2).reshape(batch, -1, width)


def _time_embedding(steps: torch.Tensor, sd: Tensors) -> torch.Tensor:
    """Sinusoidal embedding of ``steps`` (``time_embedding.linear_1`` input width), then
    Linear, SiLU, Linear."""
    dim = sd["time_embedding.linear_1.weight"].shape[1]
    half = dim // 2
    freqs = torch.exp(
        -math.log(TIME_MAX_PERIOD)
        * torch.arange(half, dtype=torch.float64)
        / (half - TIME_FREQ_SHIFT)
    )
    angles = steps[:, None] * freqs[None]
    sin, cos = torch.sin(angles), torch.cos(angles)
    emb = torch.cat([cos, sin] if TIME_FLIP_SIN_TO_COS else [sin, cos], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    h = F.silu(_linear(emb, sd, "time_embedding.linear_1"))
    return _linear(h, sd, "time_embedding.linear_2")


def outputs_agree(
    actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype
) -> tuple[bool, float]:
    """Library output vs our float64 formula: the dtype's tolerance, floored at 1e-4 (a
    float32 forward through a few blocks rounds at that level)."""
    a, e = actual.detach().to("cpu", torch.float64), expected.to(torch.float64)
    if a.shape != e.shape:
        return False, float("inf")
    rtol, atol = tolerance(dtype)
    delta = float((a - e).abs().max()) if a.numel() else 0.0
    return bool(torch.allclose(a, e, rtol=max(rtol, 1e-4), atol=max(atol, 1e-4))), delta
