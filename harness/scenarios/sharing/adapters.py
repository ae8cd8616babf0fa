"""LoRA files for shared-module checks, built with the LoRA writers and checked with the
independent reference (``harness.oracles.lora``), never with diffusers' converters.

Only attention projections are targeted (``to_q/k/v/out.0``, ``q/k/v/out_proj``): the
diffusers/PEFT format loads those natively in every version, so what these checks see is
the sharing, not a format gap (formats are suites/lora's subject).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from harness.inputs.checkpoints.lora.build import Built
from harness.inputs.checkpoints.lora.cases import Case, full_case, realise
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.checkpoints.lora.layouts import ModelLayout, model_layout
from harness.oracles.lora import Comparison, Reference, compare, effective_weight, parse

ATTENTION_SUFFIXES = (
    ".to_q",
    ".to_k",
    ".to_v",
    ".to_out.0",
    ".q_proj",
    ".k_proj",
    ".v_proj",
    ".out_proj",
)


@dataclass
class SharedLora:
    """A diffusers/PEFT-format LoRA and its reference, shaped for one pipeline."""

    built: Built
    ref: Reference
    layout: ModelLayout
    arch: str

    @property
    def components(self) -> list[str]:
        return sorted({c for c, _ in self.ref.modules()})

    def observe(self, pipe: Any) -> dict[str, dict[str, torch.Tensor]]:
        """Effective weights of the targeted modules, read through ``pipe``."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for comp, name in self.ref.modules():
            module = getattr(pipe, comp).get_submodule(self.layout[comp].real_path(name))
            out.setdefault(comp, {})[name] = effective_weight(module)
        return out

    def compare(
        self,
        observed: dict[str, dict[str, torch.Tensor]],
        base: dict[str, dict[str, torch.Tensor]],
        dtype: torch.dtype,
        weight: float = 1.0,
    ) -> dict[str, Comparison]:
        return {
            c: compare(observed[c], base[c], self.ref, c, dtype, weight) for c in self.components
        }


def attention_lora(
    pipe: Any, arch: str, components: Iterable[str], seed: int = 0, rank: int = 4
) -> SharedLora:
    """A LoRA on every attention projection of ``components`` of ``pipe``."""
    fmt = FORMATS["peft"]
    layout = model_layout(pipe, arch)
    wanted = set(components)
    case = full_case(fmt, arch, layout, rank=rank, alpha=None, seed=seed)
    picks = [
        p
        for p in case.picks
        if p.group.component in wanted and p.group.native.endswith(ATTENTION_SUFFIXES)
    ]
    built = realise(fmt, arch, layout, Case(picks, 0, case.dtype, seed, 0))
    return SharedLora(built, parse(built.state_dict, fmt, arch, layout), layout, arch)
