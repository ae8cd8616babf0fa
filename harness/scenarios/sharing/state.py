"""What two pipelines sharing modules look like, and how it differs from pristine.

The oracle of every shared-components check is a pristine pair built the same way (the
zoo is seeded, so a fresh pair is bit-identical to the one under test): its weights,
attention processors, component identities and outputs. Comparisons are exact (fp32
unload must restore bit for bit); a leftover PEFT layer or ``peft_config`` on any module
counts even when the weights happen to match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.oracles.compare import diff_state, snapshot
from harness.scenarios.sharing.pairs import modules


@dataclass
class PipeState:
    """Weights (per component), attention processors and adapter leftovers of a pipeline."""

    weights: dict[str, dict[str, torch.Tensor]]
    processors: dict[str, dict[str, str]]
    adapter_layers: list[str] = field(default_factory=list)
    components: dict[str, str] = field(default_factory=dict)


def adapter_leftovers(pipe: Any) -> list[str]:
    """PEFT tuner layers and non-empty ``peft_config`` still attached to any module."""
    out: list[str] = []
    for comp, module in modules(pipe).items():
        if getattr(module, "peft_config", None):
            out.append(f"{comp}.peft_config={sorted(module.peft_config)}")
        for name, sub in module.named_modules():
            if hasattr(sub, "base_layer") or type(sub).__module__.startswith("peft.tuners"):
                out.append(f"{comp}.{name} ({type(sub).__name__})")
    return out


def processor_view(pipe: Any) -> dict[str, dict[str, str]]:
    """Attention processor class names of every component that has them."""
    out = {}
    for comp, module in modules(pipe).items():
        procs = getattr(module, "attn_processors", None)
        if isinstance(procs, Mapping):
            out[comp] = {n: type(p).__name__ for n, p in procs.items()}
    return out


def component_view(pipe: Any) -> dict[str, str]:
    """Component slots as name -> class name (``None`` for empty slots)."""
    return {k: type(v).__name__ if v is not None else "None" for k, v in pipe.components.items()}


def capture(pipe: Any) -> PipeState:
    return PipeState(
        weights={c: snapshot(m) for c, m in modules(pipe).items()},
        processors=processor_view(pipe),
        adapter_layers=adapter_leftovers(pipe),
        components=component_view(pipe),
    )


def differences(
    before: PipeState,
    after: PipeState,
    only: list[str] | None = None,
    slots: bool = True,
) -> list[str]:
    """Human-readable differences (empty when ``after`` equals ``before`` exactly);
    ``only`` restricts the comparison to those components, ``slots=False`` leaves out the
    component slots (``pipe.components``)."""
    problems: list[str] = []
    comps = sorted(set(before.weights) | set(after.weights))
    for comp in comps:
        if only is not None and comp not in only:
            continue
        if comp not in before.weights or comp not in after.weights:
            problems.append(f"component {comp} appeared/disappeared")
            continue
        diff = diff_state(before.weights[comp], after.weights[comp], exact=True)
        if not diff.equal:
            problems.append(f"{comp} weights: {diff.summary(4)}")
        if before.processors.get(comp) != after.processors.get(comp):
            b, a = before.processors.get(comp, {}), after.processors.get(comp, {})
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            problems.append(f"{comp} processors: {len(changed)} differ, e.g. {changed[:2]}")
    left = [x for x in after.adapter_layers if x not in before.adapter_layers]
    left = [x for x in left if only is None or x.split(".")[0] in only]
    if left:
        problems.append(f"adapter layers left: {left[:4]} ({len(left)})")
    if slots and only is None and before.components != after.components:
        problems.append(f"components: {before.components} -> {after.components}")
    return problems


def changed_components(before: PipeState, after: PipeState) -> list[str]:
    """Components whose weights, processors or adapter layers differ from ``before``."""
    out = []
    for comp in sorted(set(before.weights) | set(after.weights)):
        if differences(before, after, only=[comp]):
            out.append(comp)
    return out


def storage_overlap(a: Any, b: Any) -> list[str]:
    """Components of ``b`` that are ``a``'s objects or share tensor storage with them."""
    ptrs: dict[int, str] = {}
    for comp, module in modules(a).items():
        for name, t in module.state_dict(keep_vars=True).items():
            ptrs[t.untyped_storage().data_ptr()] = f"{comp}.{name}"
    out = []
    for comp, module in modules(b).items():
        if module is getattr(a, comp, None):
            out.append(f"{comp} (same object)")
            continue
        for name, t in module.state_dict(keep_vars=True).items():
            ptr = t.untyped_storage().data_ptr()
            if t.numel() and ptr in ptrs:
                out.append(f"{comp}.{name} shares storage with {ptrs[ptr]}")
                break
    return out
