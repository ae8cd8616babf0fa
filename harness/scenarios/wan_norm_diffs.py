"""Wan files with norm ``.diff`` keys: the file, its two references, and the judgement of
the norm parameters after a load.

A file here is what Wan LoRA extractions ship: the original-named LoRA pairs of a layout
(``wan-original-downup``: ``diffusion_model.blocks.N.self_attn.q.lora_down.weight``, no
alpha) plus a difference for every norm parameter of the model
(:mod:`harness.inputs.families.wan_norm_diffs`). The pairs are judged as every layout row
(:func:`harness.drivers.lora.judge_load`); the norm parameters by
:func:`judge_norm_diffs`: each must hold pristine + difference. One that kept its pristine
value is DROPPED_KEYS unless a library warning named its key (then reported, as a dropped
``diff_b`` is); any other value is WRONG_RESULT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.cell.classify import Finding
from harness.drivers.lora import read_params, reported
from harness.inputs.families.layouts import LAYOUTS, LayoutLora
from harness.inputs.families.wan_norm_diffs import NormDiffs, write_norm_diffs
from harness.oracles.lora import REL_TOL, Reference
from harness.oracles.param_diffs import compare_params, expected_params
from harness.protocol.outcomes import Outcome
from harness.scenarios.families import FamilyScene


@dataclass
class NormDiffFile:
    """The written file (pairs and norm differences), the pairs' reference, the norms'."""

    built: LayoutLora
    ref: Reference
    norms: NormDiffs
    #: The model's dtype of each norm parameter (its rounding allowance).
    param_dtypes: dict[str, torch.dtype]

    def names(self) -> list[str]:
        """What a message may name: the pairs' modules and keys, the norm keys (with and
        without the layout's prefix: converters strip it before they log)."""
        prefix = self.built.layout.prefix
        return [
            *self.built.names(self.built.modules),
            *self.norms.keys,
            *(k.removeprefix(prefix) for k in self.norms.keys),
        ]


def norm_diff_file(scene: FamilyScene, layout_row: str, fill: str, seed: int) -> NormDiffFile:
    """``layout_row``'s complete file without alpha (scale 1, what extractions write) plus
    one ``fill``ed difference per norm parameter of the scene's model."""
    layout = LAYOUTS[layout_row]
    built, ref = scene.layout_lora(layout_row, seed=seed, alpha=None)
    model = getattr(scene.fresh(), scene.component)
    params = dict(model.named_parameters())
    norms = write_norm_diffs(
        layout.prefix, {n: tuple(p.shape) for n, p in params.items()}, fill, seed + 1
    )
    if not norms.entries:  # the table names no parameter of this model: our bug
        raise RuntimeError(f"{scene.family.name}: no norm parameter of the Wan table")
    built.state_dict.update(norms.state_dict())
    dtypes = {path: params[path].dtype for path in norms.targets()}
    return NormDiffFile(built, ref, norms, dtypes)


def norm_params(pipe: Any, scene: FamilyScene, file: NormDiffFile) -> dict[str, Any]:
    """The current values of the parameters the file's norm differences act on."""
    return read_params(pipe, scene.component, file.norms.targets())


def judge_norm_diffs(
    compat: Any,
    file: NormDiffFile,
    before: dict[str, torch.Tensor | None],
    after: dict[str, torch.Tensor | None],
    msgs: list[str],
) -> str:
    """Every norm parameter = pristine + its difference; see the module docstring."""
    targets = file.norms.targets()
    base = {p: v for p, v in before.items() if v is not None}
    if set(base) != set(targets):  # the model lost a parameter before any load: our bug
        raise RuntimeError(f"no pristine value for {sorted(set(targets) - set(base))[:3]}")
    diffs = {path: tensor for path, tensor in file.norms.entries.values()}
    file_dtypes = {p: _looser(file.param_dtypes.get(p), t.dtype) for p, t in diffs.items()}
    result = compare_params(after, base, expected_params(base, diffs), file_dtypes)
    compat.detail(
        norm_params_applied=len(result.applied),
        norm_params_dropped=len(result.dropped),
        norm_worst_rel_error=max(result.errors.values(), default=0.0),
    )
    if result.wrong:
        keys = [targets[p] for p in result.wrong]
        compat.detail(wrong_norm_params=result.wrong[:20])
        raise Finding(
            Outcome.WRONG_RESULT,
            f"{len(keys)} norm parameter(s) neither pristine nor pristine + the file's "
            "difference: " + ", ".join(f"{targets[p]} -> {p}" for p in result.wrong[:4]),
        )
    if not result.dropped:
        return "OK"
    keys = sorted(targets[p] for p in result.dropped)
    compat.detail(dropped_norm_keys=keys[:40])
    prefix = file.built.layout.prefix
    if reported(msgs, keys + [k.removeprefix(prefix) for k in keys]):
        return "OK-reported"
    raise Finding(
        Outcome.DROPPED_KEYS,
        f"{len(keys)} norm difference key(s) had no effect and no warning: " + ", ".join(keys[:6]),
    )


def _looser(a: torch.dtype | None, b: torch.dtype) -> torch.dtype:
    """Of two dtypes, the one with the larger rounding allowance."""
    if a is None:
        return b
    return a if REL_TOL.get(a, 0.0) >= REL_TOL.get(b, 0.0) else b
