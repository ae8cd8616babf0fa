"""The two file layouts the legacy attention-processor route (``UNet.load_attn_procs`` /
``save_attn_procs``) reads and writes, built from shapes alone.

* Custom Diffusion (``train_custom_diffusion.py``): per cross-attention processor
  ``<attention path>.processor.to_k_custom_diffusion.weight`` and ``..to_v_..`` (the
  fine-tuned key / value projections of the text tokens, ``(inner, cross_dim)``, no bias);
  self-attention processors carry no tensor.
* attention-processor LoRA (diffusers' training scripts up to 0.20, ``unet.save_attn_procs``):
  ``<attention path>.processor.to_q_lora.down.weight`` / ``.up.weight`` (and ``to_k``,
  ``to_v``, ``to_out``), written from a reference's down / up matrices.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: Custom Diffusion's trained projections, file name part -> the attention layer it stands in for.
CUSTOM_DIFFUSION_PARTS = {"to_k_custom_diffusion": "to_k", "to_v_custom_diffusion": "to_v"}

#: diffusers module of an attention projection -> its attention-processor LoRA name.
ATTN_PROCS_LORA_PARTS = {"to_q": "to_q_lora", "to_k": "to_k_lora", "to_v": "to_v_lora",
                         "to_out.0": "to_out_lora"}  # fmt: skip


def custom_diffusion_file(
    shapes: Mapping[str, tuple[int, int]], seed: int
) -> dict[str, torch.Tensor]:
    """A Custom Diffusion state dict for the given processors (``processor name ->
    (inner width, cross-attention width)``), seeded; values of a trained projection's
    magnitude (``N(0, 1/in)``)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for processor in sorted(shapes):
        inner, cross = shapes[processor]
        for part in CUSTOM_DIFFUSION_PARTS:
            out[f"{processor}.{part}.weight"] = (
                torch.randn(inner, cross, generator=gen) / cross**0.5
            )
    return out


def attn_procs_lora_key(module_path: str, which: str) -> str | None:
    """The attention-processor LoRA key of a diffusers projection path (``which``: ``down``
    or ``up``); None for a module that is no attention projection."""
    for suffix, name in ATTN_PROCS_LORA_PARTS.items():
        if module_path.endswith(f".{suffix}"):
            attention = module_path[: -len(suffix) - 1]
            return f"{attention}.processor.{name}.{which}.weight"
    return None
