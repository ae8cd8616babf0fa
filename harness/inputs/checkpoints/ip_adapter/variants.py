"""IP-Adapter release layouts as data, and seeded synthetic checkpoints built from them.

A release checkpoint is ``{"image_proj": {...}, "ip_adapter": {...}}`` in the *original*
(IP-Adapter repository) key layout, which diffusers converts on load. Which image_proj
variant a file is, diffusers decides from sentinel keys; the table below records each
variant's sentinel, the encoder output it consumes, its token count and its key -> shape
layout as a function of the target model and the image encoder. Shapes are derived from
the target (``targets.py``), so a checkpoint always fits the tiny zoo model it was made
for — or deliberately does not (``encoder`` of the wrong width).

Values are random and all distinct (LayerNorm weights near 1), so a tensor at the wrong
name never equals the right one and an oracle can say which key a wrong parameter holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.inputs.checkpoints.ip_adapter.targets import Target


@dataclass(frozen=True)
class Encoder:
    """The image encoder an adapter is paired with (only its widths matter here)."""

    kind: str  # "clip" | "siglip" | "id" (FaceID: embeddings come from a face model)
    projection_dim: int | None  # CLIPVisionModelWithProjection.image_embeds width
    hidden_size: int  # width of hidden_states[-2]

    @classmethod
    def from_model(cls, model: Any) -> Encoder:
        config = model.config
        kind = "siglip" if "Siglip" in type(model).__name__ else "clip"
        return cls(kind, getattr(config, "projection_dim", None), int(config.hidden_size))


@dataclass(frozen=True)
class Dims:
    """Free widths of the synthetic adapters (the target fixes the rest)."""

    resampler_dim: int = 32  # Plus / FaceID-plus / SD3 resampler width
    resampler_heads: int = 1  # diffusers derives heads as to_q.out // 64
    resampler_depth: int = 4  # diffusers' converters assume depth 4
    plus_queries: int = 16
    sd3_queries: int = 8
    sd3_time_in: int = 32
    id_dim: int = 512  # FaceID embedding width (insightface)
    faceid_mult: int = 2
    faceid_tokens: int = 4
    lora_rank: int = 4


HEAD_DIM = 64  # resampler attention head width fixed by the IP-Adapter design


@dataclass(frozen=True)
class Variant:
    """One image_proj variant of the release layout."""

    name: str
    families: tuple[str, ...]  # "unet" | "flux" | "sd3"
    sentinel: str  # image_proj key diffusers branches on
    #: Encoder output the variant consumes: "image_embeds" (projection), "hidden" (the
    #: penultimate hidden state), "id" (face-id embeddings passed by the caller).
    consumes: str
    #: The first diffusers version whose loader knows the variant (older ones may only
    #: reject it clearly).
    since: str
    lora: bool = False  # ships LoRA keys for every attention processor (FaceID)
    image_proj: Callable[[Target, Encoder, Dims], dict[str, tuple[int, ...]]] = field(
        default=lambda t, e, d: {}, compare=False
    )

    def tokens(self, target: Target, encoder: Encoder, dims: Dims) -> int:
        """Image tokens per adapter (what the attention processors attend to)."""
        return {
            "base": 4,
            "plus": dims.plus_queries,
            "full-face": 257,
            "faceid": dims.faceid_tokens,
            "faceid-plus": 4,
            "flux": 4,
            "sd3": dims.sd3_queries,
        }[self.name]


def _base(t: Target, e: Encoder, d: Dims, tokens: int = 4) -> dict[str, tuple[int, ...]]:
    width = _need(e.projection_dim, "a projection width (CLIPVisionModelWithProjection)")
    cad = t.image_token_dim
    return {
        "proj.weight": (tokens * cad, width),
        "proj.bias": (tokens * cad,),
        "norm.weight": (cad,),
        "norm.bias": (cad,),
    }


def _perceiver_layers(prefix: str, width: int, d: Dims) -> dict[str, tuple[int, ...]]:
    inner = d.resampler_heads * HEAD_DIM
    out: dict[str, tuple[int, ...]] = {}
    for i in range(d.resampler_depth):
        p = f"{prefix}layers.{i}."
        out |= {
            p + "0.norm1.weight": (width,),
            p + "0.norm1.bias": (width,),
            p + "0.norm2.weight": (width,),
            p + "0.norm2.bias": (width,),
            p + "0.to_q.weight": (inner, width),
            p + "0.to_kv.weight": (2 * inner, width),
            p + "0.to_out.weight": (width, inner),
            p + "1.0.weight": (width,),
            p + "1.0.bias": (width,),
            p + "1.1.weight": (4 * width, width),
            p + "1.3.weight": (width, 4 * width),
        }
    return out


def _plus(t: Target, e: Encoder, d: Dims) -> dict[str, tuple[int, ...]]:
    width, cad = d.resampler_dim, t.image_token_dim
    return {
        "latents": (1, d.plus_queries, width),
        "proj_in.weight": (width, e.hidden_size),
        "proj_in.bias": (width,),
        "proj_out.weight": (cad, width),
        "proj_out.bias": (cad,),
        "norm_out.weight": (cad,),
        "norm_out.bias": (cad,),
        **_perceiver_layers("", width, d),
    }


def _full_face(t: Target, e: Encoder, d: Dims) -> dict[str, tuple[int, ...]]:
    width, cad = e.hidden_size, t.image_token_dim
    return {
        "proj.0.weight": (width, width),
        "proj.0.bias": (width,),
        "proj.2.weight": (cad, width),
        "proj.2.bias": (cad,),
        "proj.3.weight": (cad,),
        "proj.3.bias": (cad,),
    }


def _faceid(t: Target, e: Encoder, d: Dims) -> dict[str, tuple[int, ...]]:
    cad, inner = t.image_token_dim, d.id_dim * d.faceid_mult
    return {
        "proj.0.weight": (inner, d.id_dim),
        "proj.0.bias": (inner,),
        "proj.2.weight": (cad * d.faceid_tokens, inner),
        "proj.2.bias": (cad * d.faceid_tokens,),
        "norm.weight": (cad,),
        "norm.bias": (cad,),
    }


def _faceid_plus(t: Target, e: Encoder, d: Dims) -> dict[str, tuple[int, ...]]:
    width, cad, inner = d.resampler_dim, t.image_token_dim, d.id_dim * 2
    return {
        "proj.0.weight": (inner, d.id_dim),
        "proj.0.bias": (inner,),
        "proj.2.weight": (width * 4, inner),
        "proj.2.bias": (width * 4,),
        "norm.weight": (width,),
        "norm.bias": (width,),
        "perceiver_resampler.proj_in.weight": (width, e.hidden_size),
        "perceiver_resampler.proj_in.bias": (width,),
        "perceiver_resampler.proj_out.weight": (cad, width),
        "perceiver_resampler.proj_out.bias": (cad,),
        "perceiver_resampler.norm_out.weight": (cad,),
        "perceiver_resampler.norm_out.bias": (cad,),
        **_perceiver_layers("perceiver_resampler.", width, d),
    }


def _sd3(t: Target, e: Encoder, d: Dims) -> dict[str, tuple[int, ...]]:
    """InstantX SD3.5 layout: a timestep-aware perceiver (AdaLN per block)."""
    width, out, inner = d.resampler_dim, t.image_token_dim, d.resampler_heads * HEAD_DIM
    keys: dict[str, tuple[int, ...]] = {
        "latents": (1, d.sd3_queries, width),
        "proj_in.weight": (width, e.hidden_size),
        "proj_in.bias": (width,),
        "proj_out.weight": (out, width),
        "proj_out.bias": (out,),
        "norm_out.weight": (out,),
        "norm_out.bias": (out,),
        "time_embedding.linear_1.weight": (width, d.sd3_time_in),
        "time_embedding.linear_1.bias": (width,),
        "time_embedding.linear_2.weight": (width, width),
        "time_embedding.linear_2.bias": (width,),
    }
    for i in range(d.resampler_depth):
        p = f"layers.{i}."
        keys |= {
            p + "0.norm1.weight": (width,),
            p + "0.norm1.bias": (width,),
            p + "0.norm2.weight": (width,),
            p + "0.norm2.bias": (width,),
            p + "0.to_q.weight": (inner, width),
            p + "0.to_kv.weight": (2 * inner, width),
            p + "0.to_out.weight": (width, inner),
            p + "1.0.weight": (width,),
            p + "1.0.bias": (width,),
            p + "1.1.weight": (4 * width, width),
            p + "1.3.weight": (width, 4 * width),
            p + "2.1.weight": (4 * width, width),
            p + "2.1.bias": (4 * width,),
        }
    return keys


def _need(value: int | None, what: str) -> int:
    if value is None:
        raise ValueError(f"this IP-Adapter variant needs {what}")
    return value


#: The image_proj variants, keyed by the names used in check ids.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("base", ("unet",), "proj.weight", "image_embeds", "0.26", image_proj=_base),
        Variant("plus", ("unet",), "latents", "hidden", "0.26", image_proj=_plus),
        Variant("full-face", ("unet",), "proj.3.weight", "hidden", "0.26", image_proj=_full_face),
        Variant("faceid", ("unet",), "norm.weight", "id", "0.28", lora=True, image_proj=_faceid),
        Variant(
            "faceid-plus",
            ("unet",),
            "perceiver_resampler.proj_in.weight",
            "id",
            "0.28",
            lora=True,
            image_proj=_faceid_plus,
        ),
        Variant("flux", ("flux",), "proj.weight", "image_embeds", "0.32", image_proj=_base),
        Variant("sd3", ("sd3",), "latents", "hidden", "0.32", image_proj=_sd3),
    )
}

LORA_PARTS = ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora")


def ip_adapter_shapes(target: Target, variant: Variant, dims: Dims) -> dict[str, tuple[int, ...]]:
    """Release-layout ``ip_adapter`` keys and shapes for ``target``."""
    out: dict[str, tuple[int, ...]] = {}
    if target.family == "sd3":
        head = int(target.extra["head_dim"])
        for s in target.ip_slots:
            width = target.image_token_dim
            out |= {
                f"{s.ip_id}.norm_ip.linear.weight": (2 * width, dims.resampler_dim),
                f"{s.ip_id}.norm_ip.linear.bias": (2 * width,),
                f"{s.ip_id}.to_k_ip.weight": (s.hidden, width),
                f"{s.ip_id}.to_v_ip.weight": (s.hidden, width),
                f"{s.ip_id}.norm_q.weight": (head,),
                f"{s.ip_id}.norm_k.weight": (head,),
                f"{s.ip_id}.norm_ip_k.weight": (head,),
            }
        return out
    for s in target.ip_slots:
        cross = int(s.cross_dim or s.hidden)
        out[f"{s.ip_id}.to_k_ip.weight"] = (s.hidden, cross)
        out[f"{s.ip_id}.to_v_ip.weight"] = (s.hidden, cross)
        if target.family == "flux":
            out[f"{s.ip_id}.to_k_ip.bias"] = (s.hidden,)
            out[f"{s.ip_id}.to_v_ip.bias"] = (s.hidden,)
    if variant.lora:
        r = dims.lora_rank
        for s in target.slots:
            k_in = int(s.cross_dim or s.hidden)
            for part, d_in in (
                ("to_q_lora", s.hidden),
                ("to_k_lora", k_in),
                ("to_v_lora", k_in),
                ("to_out_lora", s.hidden),
            ):
                out[f"{s.position}.{part}.down.weight"] = (r, d_in)
                out[f"{s.position}.{part}.up.weight"] = (s.hidden, r)
    return dict(sorted(out.items(), key=lambda kv: _natural(kv[0])))


def release_shapes(
    target: Target, variant: Variant, encoder: Encoder, dims: Dims | None = None
) -> dict[str, dict[str, tuple[int, ...]]]:
    """The full key -> shape manifest of a release checkpoint (a converter template)."""
    dims = dims or Dims()
    if target.family not in variant.families:
        raise ValueError(f"variant {variant.name!r} is not for {target.family} models")
    return {
        "image_proj": variant.image_proj(target, encoder, dims),
        "ip_adapter": ip_adapter_shapes(target, variant, dims),
    }


def build_release(
    target: Target,
    variant: Variant | str,
    encoder: Encoder,
    seed: int = 0,
    dims: Dims | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, dict[str, torch.Tensor]]:
    """A seeded synthetic release checkpoint (nested dict, original key layout)."""
    variant = VARIANTS[variant] if isinstance(variant, str) else variant
    shapes = release_shapes(target, variant, encoder, dims)
    return fill(shapes, seed=seed, dtype=dtype)


def fill(
    shapes: Mapping[str, Mapping[str, tuple[int, ...]]],
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict[str, dict[str, torch.Tensor]]:
    """Random tensors for a nested key -> shape manifest: matrices ~ N(0, 1/fan_in),
    vectors named like norm weights ~ 1 + N(0, 0.1), other vectors ~ N(0, 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for section, keys in shapes.items():
        out[section] = {}
        for key, shape in keys.items():
            out[section][key] = _tensor(key, shape, gen).to(dtype)
    return out


def _tensor(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    noise = torch.randn(shape, generator=gen)
    if len(shape) >= 2:
        return noise / max(shape[-1], 1) ** 0.5
    if key.endswith("weight") and _is_norm(key):
        return 1.0 + 0.1 * noise
    return 0.1 * noise


def _is_norm(key: str) -> bool:
    """1-D weights of LayerNorm / RMSNorm modules (named ``norm*`` or a resampler's
    ``<i>.1.0`` feed-forward LayerNorm)."""
    parts = key.split(".")
    return any("norm" in p for p in parts) or key.endswith(".1.0.weight") or key == "proj.3.weight"


def _natural(key: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key "2.x" < "10.x"; numbers and words never compared with each other."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))
