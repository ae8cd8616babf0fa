"""Where IP-Adapter weights go in a target model, derived without diffusers' loaders.

A *target* lists the attention processors of a UNet / Flux / SD3 denoiser in
``attn_processors`` order with the widths their IP layers need and the release-layout id
their weights are stored under. Two derivations, which self-tests cross-check:

* from a live model (``target_from_model``): processor names are the model's own
  ``attn_processors`` keys (the runtime truth), widths come from its config;
* from a config dict alone (``unet_target_from_config``): no diffusers import, used by the
  converter CLI for the real SD1.5 / SDXL templates.

Numbering rules of diffusers' IP-Adapter loaders, kept here and nowhere else:

* UNet: every processor counts; the id of an IP layer is its position in
  ``attn_processors`` order, so cross-attention processors sit at odd ids 1, 3, 5, ...
* Flux: only double-stream blocks (``transformer_blocks.N``) carry IP layers, numbered
  from 0, with weights *and* biases.
* SD3: every joint-attention processor carries IP layers, numbered from 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Slot:
    """One attention processor of the target model."""

    name: str  # key in model.attn_processors
    position: int  # index in attn_processors order
    hidden: int  # query width of the attention (output width of to_k_ip)
    cross_dim: int | None  # width of the text tokens it attends to; None for self-attention
    ip_id: int | None  # release-layout id of its IP weights; None when it carries none


@dataclass(frozen=True)
class Target:
    """The IP-Adapter-relevant shape of one denoiser."""

    family: str  # "unet" | "flux" | "sd3"
    slots: tuple[Slot, ...]
    image_token_dim: int  # width of the image tokens image_proj must produce
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ip_slots(self) -> tuple[Slot, ...]:
        return tuple(s for s in self.slots if s.ip_id is not None)

    def slot_by_id(self) -> dict[int, Slot]:
        return {s.ip_id: s for s in self.ip_slots if s.ip_id is not None}


# -- UNet ------------------------------------------------------------------------------------
_BLOCK_RE = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.")


def unet_hidden_size(name: str, block_out_channels: Sequence[int]) -> int:
    """Query width of the attention processor ``name`` (down: block i, up: reversed, mid:
    last) — the widths a UNet's transformer blocks run at."""
    if name.startswith("mid_block"):
        return int(block_out_channels[-1])
    match = _BLOCK_RE.match(name)
    if match is None:
        raise ValueError(f"cannot place attention processor {name!r} in a UNet block")
    kind, index = match.group(1), int(match.group(2))
    channels = list(block_out_channels)
    return int(channels[index] if kind == "down_blocks" else list(reversed(channels))[index])


def _is_cross(name: str) -> bool:
    return not name.endswith("attn1.processor") and "motion_modules" not in name


def unet_target_from_names(names: Sequence[str], config: Mapping[str, Any]) -> Target:
    """Target from processor names in ``attn_processors`` order plus the UNet config."""
    cad = _int_dim(config["cross_attention_dim"])
    blocks = config["block_out_channels"]
    slots = []
    for position, name in enumerate(names):
        hidden = unet_hidden_size(name, blocks)
        cross = _is_cross(name)
        slots.append(
            Slot(
                name=name,
                position=position,
                hidden=hidden,
                cross_dim=cad if cross else None,
                ip_id=position if cross else None,
            )
        )
    return Target("unet", tuple(slots), image_token_dim=cad, extra={"config": dict(config)})


def unet_processor_names(config: Mapping[str, Any]) -> list[str]:
    """Processor names of a ``UNet2DConditionModel`` in ``attn_processors`` order, from its
    config alone: down blocks, then up blocks, then the mid block (module registration
    order), each cross-attention transformer block contributing ``attn1`` then ``attn2``."""
    down_types = list(config["down_block_types"])
    up_types = list(config["up_block_types"])
    n_blocks = len(down_types)
    layers = _per_block(config.get("layers_per_block", 2), n_blocks)
    tlayers = _per_block(config.get("transformer_layers_per_block", 1), n_blocks)
    reverse_t = config.get("reverse_transformer_layers_per_block")
    up_tlayers = list(reverse_t) if reverse_t is not None else list(reversed(tlayers))
    up_layers = list(reversed(layers))
    names: list[str] = []
    for i, kind in enumerate(down_types):
        if "CrossAttn" in kind:
            names += _attn_names(f"down_blocks.{i}", layers[i], tlayers[i])
    for i, kind in enumerate(up_types):
        if "CrossAttn" in kind:
            names += _attn_names(f"up_blocks.{i}", up_layers[i] + 1, up_tlayers[i])
    mid = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid and "CrossAttn" in mid:
        names += _attn_names("mid_block", 1, tlayers[-1])
    return names


def _attn_names(prefix: str, n_attn: int, n_transformer: int | Sequence[int]) -> list[str]:
    out = []
    for a in range(n_attn):
        depth = n_transformer[a] if isinstance(n_transformer, (list, tuple)) else n_transformer
        for t in range(int(depth)):
            base = f"{prefix}.attentions.{a}.transformer_blocks.{t}"
            out += [f"{base}.attn1.processor", f"{base}.attn2.processor"]
    return out


def _per_block(value: Any, n: int) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def _int_dim(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"per-block cross_attention_dim {value} is not supported")
        return int(value[0])
    return int(value)


def unet_target_from_config(config: Mapping[str, Any]) -> Target:
    return unet_target_from_names(unet_processor_names(config), config)


# -- Flux / SD3 ------------------------------------------------------------------------------
def flux_target_from_names(names: Sequence[str], config: Mapping[str, Any]) -> Target:
    """Double-stream blocks carry IP layers numbered from 0; single-stream blocks none."""
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    joint = int(config["joint_attention_dim"])
    slots, next_id = [], 0
    for position, name in enumerate(names):
        double = name.startswith("transformer_blocks.")
        slots.append(
            Slot(name, position, inner, joint if double else None, next_id if double else None)
        )
        next_id += int(double)
    return Target("flux", tuple(slots), image_token_dim=joint, extra={"config": dict(config)})


def sd3_target_from_names(names: Sequence[str], config: Mapping[str, Any]) -> Target:
    """Every joint-attention processor carries IP layers, numbered by position from 0; the
    image tokens are as wide as the attention (heads x head dim)."""
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    slots = tuple(Slot(n, i, inner, inner, i) for i, n in enumerate(names))
    return Target(
        "sd3",
        slots,
        image_token_dim=inner,
        extra={"config": dict(config), "head_dim": int(config["attention_head_dim"])},
    )


def target_from_model(model: Any) -> Target:
    """Target of a live UNet / Flux / SD3 denoiser (processor order from the model)."""
    # Processors of a loaded resampler (``encoder_hid_proj``) are not IP slots: loaders
    # drop encoder_hid_proj before numbering.
    names = [n for n in model.attn_processors if not n.startswith("encoder_hid_proj.")]
    config = dict(model.config)
    cls = type(model).__name__
    if "Flux" in cls:
        return flux_target_from_names(names, config)
    if "SD3" in cls:
        return sd3_target_from_names(names, config)
    return unet_target_from_names(names, config)


def target_from_pipeline(pipe: Any) -> Target:
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    return target_from_model(denoiser)
