"""Judge a loader's output against the independent reference, whatever its naming.

A loader returns ``{module name: WeightDelta}`` (BFL or diffusers naming, see
:mod:`harness.loaders.spec`). Each name is placed on the reference's modules through the
layout tables (:func:`~harness.inputs.checkpoints.lora.layouts.flux_groups`: a fused BFL
layer's rows split into its parts, ``final_layer.adaLN_modulation.1``'s halves swapped),
then every module is probed with the same random inputs on both sides - the loader's
factors and the reference's terms - so real Flux widths never need a dense matrix.

The outcome rules are the LoRA suite's (:func:`harness.drivers.lora.judge_load`):
WRONG_RESULT for a wrong delta, a change the file does not make, or a layer placed on a
module the model does not have (in a file without stray keys); DROPPED_KEYS for a module
the file changes that received nothing, or a stray key neither applied nor named by a
warning; otherwise OK (``OK-reported`` when a warning named what went unused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch

from harness.cell.classify import Finding
from harness.drivers.lora import reported
from harness.inputs.checkpoints.lora.layouts import ComponentLayout, ModelLayout, flux_groups
from harness.loaders.delta import WeightDelta
from harness.oracles.lora import Reference, allowance
from harness.protocol.outcomes import Outcome

ROOT = Path(__file__).resolve().parents[2]
#: Real Flux-dev widths (InvokeAI's converters assert them), few blocks: two double and
#: two single blocks (a partial group sits in block 1, so the app's format probe, which
#: looks at block 0, still recognises the file) and two CLIP layers.
BLOCKS = {"transformer_blocks": 2, "single_transformer_blocks": 2, "encoder.layers": 2}
#: Probe columns per module: a wrong low-rank delta agrees with the right one on random
#: inputs with probability zero.
PROBES = 4


@cache
def flux_layout() -> ModelLayout:
    """The committed full-size Flux layout (``fixtures/lora/layout-flux.json``), cut to
    :data:`BLOCKS`. No model is built: the reference and the writers need only shapes."""
    data = json.loads((ROOT / "fixtures" / "lora" / "layout-flux.json").read_text())
    out: ModelLayout = {}
    for component, raw in data.items():
        layout = ComponentLayout.from_json(raw)
        layout.layers = {p: layer for p, layer in layout.layers.items() if _kept(p)}
        out[component] = layout
    return out


def _kept(path: str) -> bool:
    for prefix, count in BLOCKS.items():
        match = re.search(rf"(?:^|\.){re.escape(prefix)}\.(\d+)\.", path)
        if match and (path.startswith(prefix) or prefix == "encoder.layers"):
            return int(match.group(1)) < count
    return True


@dataclass
class Placement:
    """Where one output layer lands: (component, module, rows) per part; swap halves."""

    parts: list[tuple[str, str, slice]]
    out_features: int
    in_features: int
    swap_halves: bool = False


def placements(naming: str, layout: ModelLayout) -> dict[str, Placement]:
    """Every output name a loader of ``naming`` may use for a module of ``layout``."""
    table: dict[str, Placement] = {}
    for component, comp in layout.items():
        for path, layer in comp.layers.items():
            whole = slice(0, layer.out_features)
            table[f"{component}.{path}"] = Placement(
                [(component, path, whole)], layer.out_features, layer.in_features
            )
        if naming == "bfl" and component == "transformer":
            for group in flux_groups(comp):
                parts = [(component, p, rows) for p, rows in group.row_slices().items()]
                table[f"{component}.{group.native}"] = Placement(
                    parts, group.out_features, group.in_features, group.permute == "swap_halves"
                )
    return table


@dataclass
class Judgement:
    matched: list[str] = field(default_factory=list)
    wrong: dict[str, float] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    unexpected: dict[str, float] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)
    worst: float = 0.0


def _probe(width: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(width)
    return torch.randn(width, PROBES, generator=gen, dtype=torch.float64)


def _expected(ref: Reference, component: str, module: str, x: torch.Tensor) -> torch.Tensor:
    return sum(t.apply(x) for t in ref.terms[(component, module)])  # type: ignore[return-value]


def compare(
    ref: Reference, deltas: Mapping[str, WeightDelta], naming: str, layout: ModelLayout
) -> Judgement:
    """Probe every output layer and every reference module."""
    table = placements(naming, layout)
    seen: dict[tuple[str, str], torch.Tensor] = {}
    result = Judgement()
    for name, delta in deltas.items():
        place = table.get(name)
        if place is None:
            result.unplaced.append(name)
            continue
        if (delta.out_features, delta.in_features) != (place.out_features, place.in_features):
            result.wrong[name] = float("inf")  # a shape the module cannot take
            continue
        full = delta.apply(_probe(place.in_features))
        if place.swap_halves:
            half = full.shape[0] // 2
            full = torch.cat([full[half:], full[:half]])
        for component, module, rows in place.parts:
            seen[(component, module)] = full[rows]
    for (component, module), _ in sorted(ref.terms.items()):
        width = layout[component].layers[module].in_features
        exp = _expected(ref, component, module, _probe(width))
        tol = allowance(exp, torch.zeros(()), ref.file_dtype(component, module), torch.float32)
        obs = seen.pop((component, module), None)
        if obs is None or float(obs.abs().max()) <= tol < float(exp.abs().max()):
            if float(exp.abs().max()) > tol:
                result.dropped.append((component, module))
            continue
        err = float((obs - exp).abs().max())
        result.worst = max(result.worst, err)
        if err <= tol:
            result.matched.append(f"{component}.{module}")
        else:
            result.wrong[f"{component}.{module}"] = err
    for (component, module), obs in seen.items():  # changed, but the file has no key for it
        if float(obs.abs().max()) > 1e-9:
            result.unexpected[f"{component}.{module}"] = float(obs.abs().max())
    return result


def judge(
    compat: Any,
    ref: Reference,
    deltas: Mapping[str, WeightDelta],
    naming: str,
    layout: ModelLayout,
    stray_keys: list[str],
    messages: list[str],
) -> str:
    """OK / OK-reported, or raise the Finding the suite records."""
    result = compare(ref, deltas, naming, layout)
    compat.detail(
        modules_matched=len(result.matched),
        worst_abs_error=result.worst,
        layers_converted=len(deltas),
    )
    strays = [n for n in result.unplaced if re.search(r"bogus\d+", n)]
    misplaced = [n for n in result.unplaced if n not in strays or not stray_keys]
    if result.wrong or result.unexpected or misplaced:
        compat.detail(
            wrong=dict(list(result.wrong.items())[:20]),
            unexpected=dict(list(result.unexpected.items())[:20]),
            unplaced=misplaced[:20],
        )
        parts = []
        if result.wrong:
            parts.append("wrong delta on " + ", ".join(sorted(result.wrong)[:6]))
        if result.unexpected:
            parts.append("changed without a key: " + ", ".join(sorted(result.unexpected)[:6]))
        if misplaced:
            parts.append("layers for modules the model does not have: " + ", ".join(misplaced[:6]))
        raise Finding(Outcome.WRONG_RESULT, "; ".join(parts))
    status = "OK"
    if result.dropped:
        keys = sorted({k for c, m in result.dropped for k in ref.keys_for(c, m)})
        names = [m for _, m in result.dropped] + keys
        if not reported(messages, names):
            compat.detail(dropped_keys=keys[:40])
            raise Finding(
                Outcome.DROPPED_KEYS,
                f"{len(keys)} key(s) had no effect and no warning: " + ", ".join(keys[:6]),
            )
        status = "OK-reported"
    if stray_keys:
        tokens = sorted({t for k in stray_keys for t in re.findall(r"bogus\d+", k)})
        if not reported(messages, tokens + stray_keys):
            compat.detail(dropped_keys=stray_keys, stray_layers=strays)
            how = (
                f"converted to layer(s) the model does not have ({', '.join(strays[:3])})"
                if strays
                else "silently ignored"
            )
            raise Finding(
                Outcome.DROPPED_KEYS,
                f"unknown key(s) {how}, no warning: " + ", ".join(stray_keys[:6]),
            )
        status = "OK-reported"
    return status
