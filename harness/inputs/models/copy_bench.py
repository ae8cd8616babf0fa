"""Measure how the zoo should hand out copies: ``copy.deepcopy`` of the cached pipeline,
the zoo's ``deep_copy`` (same result, module fast path), or rebuilding the components and
loading a cached state dict.

``python -m harness.inputs.models.copy_bench [repeats]`` prints one line per pipeline (milliseconds per
copy, best of ``repeats``: the minimum is the least disturbed by other load).
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

from harness.cell.classify import Unsupported
from harness.inputs.models.build import build_component, filter_kwargs, module_components, resolve
from harness.inputs.models.specs import PIPELINE_SPECS
from harness.inputs.models.zoo import Zoo, deep_copy


def _rebuild(name: str, states: dict[str, dict[str, Any]]) -> Any:
    """A pipeline from fresh constructors plus the cached weights."""
    spec = PIPELINE_SPECS[name]
    parts = {k: build_component(c, 0).obj for k, c in spec.components.items()}
    for comp_name, module in module_components(parts).items():
        module.load_state_dict(states[comp_name])
    kwargs, _ = filter_kwargs(
        resolve("diffusers", spec.pipeline_cls).__init__, {**parts, **spec.init_extra}
    )
    return resolve("diffusers", spec.pipeline_cls)(**kwargs)


def _best_ms(fn: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best * 1e3, 1)


def bench(repeats: int = 5) -> dict[str, dict[str, float]]:
    """Milliseconds per copy for each available zoo pipeline, per strategy."""
    zoo = Zoo()
    out: dict[str, dict[str, float]] = {}
    for name in zoo.names():
        try:
            original = zoo._original(name)
        except Unsupported:
            continue
        states = {
            k: {n: t.clone() for n, t in m.state_dict().items()}
            for k, m in module_components(original.components).items()
        }
        out[name] = {
            "deepcopy_ms": _best_ms(lambda o=original: copy.deepcopy(o), repeats),
            "zoo_deep_copy_ms": _best_ms(lambda o=original: deep_copy(o), repeats),
            "rebuild_ms": _best_ms(lambda n=name, s=states: _rebuild(n, s), repeats),
        }
    return out


if __name__ == "__main__":
    for pipeline, row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 5).items():
        print(pipeline, row)
