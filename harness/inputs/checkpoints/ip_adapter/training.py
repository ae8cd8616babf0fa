"""Synthetic *training* checkpoints of IP-Adapter (``image_proj_model.*``, ``adapter_modules.N.*``), with their ground truth.

A training run saves the whole trainable wrapper as one flat state dict:

* ``unet.*``: the (frozen) UNet — dropped by a converter;
* ``image_proj_model.*``: the image projection, keys as in the release ``image_proj``;
* ``adapter_modules.<i>.*``: a ``ModuleList`` of attention processors. Two numberings are
  in the wild: ``"processor"`` — the list holds *every* processor of
  ``unet.attn_processors`` (IP-Adapter's ``tutorial_train.py``; FaceID needs it, its LoRA
  lives on every processor), so ``i`` already is the release id; ``"cross"`` — the list
  holds only the cross-attention (IP) processors, so ``i`` counts them 0, 1, 2, ... and
  the release id is the i-th cross processor's position (1, 3, 5, ...).

``build_training`` returns the checkpoint and, per processor *name*, the tensors a correct
conversion must land there — the oracle of the converter round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from harness.inputs.checkpoints.ip_adapter.targets import Target
from harness.inputs.checkpoints.ip_adapter.variants import VARIANTS, Dims, Encoder, build_release

NUMBERINGS = ("processor", "cross")


@dataclass
class TrainingCheckpoint:
    state: dict[str, torch.Tensor]
    #: processor name -> {"to_k_ip.weight": tensor, ..., "to_q_lora.down.weight": ...}
    by_processor: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    image_proj: dict[str, torch.Tensor] = field(default_factory=dict)
    numbering: str = "processor"


def build_training(
    target: Target,
    variant: str,
    encoder: Encoder,
    numbering: str = "cross",
    seed: int = 0,
    dims: Dims | None = None,
    frozen_unet_keys: int = 3,
) -> TrainingCheckpoint:
    """A training-layout checkpoint for ``target`` (a UNet) and its ground truth."""
    if numbering not in NUMBERINGS:
        raise ValueError(f"numbering must be one of {NUMBERINGS}")
    if VARIANTS[variant].lora and numbering != "processor":
        raise ValueError("FaceID training checkpoints number every processor")
    release = build_release(target, variant, encoder, seed=seed, dims=dims)
    gen = torch.Generator().manual_seed(seed + 1)
    state: dict[str, torch.Tensor] = {}
    for j in range(frozen_unet_keys):  # a few frozen UNet weights, as trainers save them
        state[f"unet.down_blocks.0.resnets.0.conv{j}.weight"] = torch.randn(4, 4, generator=gen)
    for key, value in release["image_proj"].items():
        state[f"image_proj_model.{key}"] = value
    cross_index = {s.position: i for i, s in enumerate(target.ip_slots)}
    by_processor: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in release["ip_adapter"].items():
        position_str, rest = key.split(".", 1)
        position = int(position_str)
        slot = target.slots[position]
        if numbering == "processor":
            index = position
        else:
            index = cross_index[position]
        state[f"adapter_modules.{index}.{rest}"] = value
        by_processor.setdefault(slot.name, {})[rest] = value
    return TrainingCheckpoint(state, by_processor, dict(release["image_proj"]), numbering)


def doctor(
    state: Mapping[str, torch.Tensor],
    missing: str,
    extra: str,
    wrong_shape: str,
) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with one key removed, one added and one reshaped (the
    converter report must name exactly these three)."""
    out = {k: v for k, v in state.items() if k != missing}
    out[extra] = torch.zeros(2, 2)
    original = out[wrong_shape]
    out[wrong_shape] = torch.zeros(original.shape[0] + 1, *original.shape[1:])
    return out
