"""diffusers/PEFT-named LoRA files for a family's denoiser, written from its layout.

Keys are ``<component>.<module path>.lora_A.weight`` (rank x in) and ``.lora_B.weight``
(out x rank) for every Linear inside the transformer blocks. diffusers' transformer
mixins load these with ``network_alphas=None`` and reject ``.alpha`` keys (every key must
contain ``lora``), so the only place a file of this naming carries alpha is diffusers'
adapter metadata in the safetensors header (``lora_adapter_metadata``), read from 0.34 on.
It is written as diffusers' own ``save_lora_weights`` writes it: the installed peft's
``LoraConfig(r, lora_alpha, target_modules).to_dict()``, every key prefixed with the
component (0.34-0.35 index ``rank_pattern`` & co without a default, so a hand-trimmed
header is not what diffusers writes). Without it the scale is 1 (alpha = rank). Stray
pairs are named ``bogusN`` (a module no model has).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.inputs.checkpoints.lora.layouts import ComponentLayout, Layer

#: The safetensors header key diffusers reads its LoRA adapter metadata from.
ADAPTER_METADATA_KEY = "lora_adapter_metadata"
#: Width of a stray pair's module (it exists in no model, any width will do).
STRAY_WIDTH = 16


@dataclass
class FamilyLora:
    """One written file: tensors, the safetensors header (or None) and what is in it."""

    state_dict: dict[str, torch.Tensor]
    header: dict[str, str] | None
    modules: list[str]
    stray_keys: list[str] = field(default_factory=list)

    def stems(self) -> list[str]:
        """Key prefixes before ``.lora_A`` / ``.lora_B``: what a refusal may name."""
        return sorted({k.rsplit(".", 2)[0] for k in self.state_dict})

    def save(self, folder: Path, name: str = "family_lora.safetensors") -> Path:
        from safetensors.torch import save_file

        path = folder / name
        tensors = {k: v.contiguous() for k, v in self.state_dict.items()}
        save_file(tensors, str(path), metadata=self.header)
        return path


def block_targets(layout: ComponentLayout, blocks: Iterable[str]) -> dict[str, Layer]:
    """Every Linear below one of the block prefixes, in model order."""
    prefixes = tuple(blocks)
    return {
        path: layer
        for path, layer in layout.layers.items()
        if path.startswith(prefixes) and not layer.conv
    }


def write_lora(
    component: str,
    targets: Mapping[str, Layer],
    rank: int = 4,
    alpha: float | None = 2.0,
    seed: int = 0,
    omit: Iterable[str] = (),
    stray: int = 0,
    dtype: torch.dtype = torch.float32,
) -> FamilyLora:
    """A file on ``targets`` less ``omit``, plus ``stray`` pairs for modules that do not
    exist; alpha in the header metadata when given (else no alpha anywhere)."""
    skip = set(omit)
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    modules = [p for p in targets if p not in skip]
    shapes = [(p, targets[p].in_features, targets[p].out_features) for p in modules]
    shapes += [(f"bogus{i}", STRAY_WIDTH, STRAY_WIDTH) for i in range(stray)]
    for path, n_in, n_out in shapes:
        down = torch.randn(rank, n_in, generator=gen) / n_in**0.5
        up = torch.randn(n_out, rank, generator=gen) / rank**0.5
        state[f"{component}.{path}.lora_A.weight"] = down.to(dtype)
        state[f"{component}.{path}.lora_B.weight"] = up.to(dtype)
    stray_keys = [k for k in state if ".bogus" in k]
    header = None
    if alpha is not None:
        names = sorted(modules + [f"bogus{i}" for i in range(stray)])
        config = {f"{component}.{k}": v for k, v in peft_config(rank, alpha, names).items()}
        header = {"format": "pt", ADAPTER_METADATA_KEY: json.dumps(config, sort_keys=True)}
    return FamilyLora(state, header, modules, stray_keys)


def peft_config(rank: int, alpha: float, target_modules: list[str]) -> dict[str, Any]:
    """The installed peft's full ``LoraConfig`` as a JSON-ready dict (sets become sorted
    lists, as diffusers' ``write_lora_layers`` does)."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=target_modules).to_dict()
    return {k: sorted(v) if isinstance(v, set) else _plain(v) for k, v in config.items()}


def _plain(value: Any) -> Any:
    """Enums (``peft_type``, ``task_type``) as their string values."""
    return getattr(value, "value", value)
