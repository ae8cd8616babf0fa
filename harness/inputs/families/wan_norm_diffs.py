"""Wan's norm ``.diff`` / ``.diff_b`` keys as data, and a writer for them.

LoRAs extracted from a Wan fine-tune (Kijai's / lightx2v's CausVid, StepDistill and
Lightning extractions, ComfyUI's "extract LoRA") store the difference of every trained
parameter the extractor cannot factor: Linear biases as ``<module>.diff_b``, and each
block's norm parameters as full differences, ``blocks.N.norm3.diff`` (the LayerNorm
weight), ``.diff_b`` (its bias), ``self_attn.norm_q.diff`` & co (the RMSNorm weights).
Loading such a file means: the norm parameter becomes pristine + the difference.

The names are Wan 2.1's ``WanAttentionBlock`` (Wan-Video/Wan2.1 ``wan/modules/model.py``:
``norm3`` is the affine LayerNorm before the cross-attention, ``norm1`` / ``norm2`` have no
parameters; ``WanSelfAttention.norm_q`` / ``norm_k`` are ``WanRMSNorm``s of the inner width,
``norm_k_img`` in the I2V cross-attention). diffusers' model names them differently: its
``norm2`` is the original ``norm3`` (diffusers' single-file Wan conversion swaps the two
names, ``single_file_utils.py``), ``attn1`` / ``attn2`` are ``self_attn`` / ``cross_attn``,
``norm_added_k`` is ``norm_k_img``. Nothing here calls diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

#: Per block: (original parameter tail with its difference suffix, diffusers parameter
#: tail). A row whose diffusers parameter the model lacks (``norm_added_k`` outside I2V,
#: any norm of a model built without ``qk_norm`` / ``cross_attn_norm``) is not written.
WAN_BLOCK_NORM_DIFFS: tuple[tuple[str, str], ...] = (
    ("norm3.diff", "norm2.weight"),
    ("norm3.diff_b", "norm2.bias"),
    ("self_attn.norm_q.diff", "attn1.norm_q.weight"),
    ("self_attn.norm_k.diff", "attn1.norm_k.weight"),
    ("cross_attn.norm_q.diff", "attn2.norm_q.weight"),
    ("cross_attn.norm_k.diff", "attn2.norm_k.weight"),
    ("cross_attn.norm_k_img.diff", "attn2.norm_added_k.weight"),
)
#: Most blocks a tiny model has (indices tried from 0 until the model lacks the block).
MAX_BLOCKS = 64
#: How differences are filled: ``random`` (a trained norm, small next to the weights), or
#: ``zero`` (what diffusers' converter assumes every norm difference is).
FILLS = ("random", "zero")


@dataclass(frozen=True)
class NormDiffs:
    """Norm difference keys of one file: key -> (diffusers parameter path, tensor)."""

    entries: dict[str, tuple[str, torch.Tensor]]

    @property
    def keys(self) -> list[str]:
        return list(self.entries)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: t for k, (_, t) in self.entries.items()}

    def targets(self) -> dict[str, str]:
        """diffusers parameter path -> the file key that acts on it."""
        return {path: key for key, (path, _) in self.entries.items()}


def norm_diff_targets(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, str]:
    """Original name (``blocks.N.norm3.diff``) -> diffusers parameter path, for every row
    whose parameter the model has (``shapes``: the model's parameter shapes by path)."""
    out: dict[str, str] = {}
    for i in range(MAX_BLOCKS):
        found = False
        for source, target in WAN_BLOCK_NORM_DIFFS:
            path = f"blocks.{i}.{target}"
            if path in shapes:
                out[f"blocks.{i}.{source}"] = path
                found = True
        if not found:
            break
    return out


def write_norm_diffs(
    prefix: str,
    shapes: Mapping[str, tuple[int, ...]],
    fill: str = "random",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> NormDiffs:
    """One difference per norm parameter the model has, keyed ``<prefix><original name>``
    (``diffusion_model.`` in the extractions), shaped as the parameter."""
    if fill not in FILLS:
        raise ValueError(f"fill {fill!r}: one of {FILLS}")
    gen = torch.Generator().manual_seed(seed)
    entries: dict[str, tuple[str, torch.Tensor]] = {}
    for source, path in norm_diff_targets(shapes).items():
        shape = tuple(shapes[path])
        value = torch.zeros(shape) if fill == "zero" else 0.1 * torch.randn(shape, generator=gen)
        entries[prefix + source] = (path, value.to(dtype))
    return NormDiffs(entries)
