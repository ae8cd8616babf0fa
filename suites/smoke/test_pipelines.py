"""Smoke checks: every zoo pipeline builds and runs one deterministic, seed-sensitive step,
and every image encoder produces the width an IP-Adapter expects.

Why in every cell: all adapter suites compare ``run_step`` outputs, so they are only as
good as these properties. Determinism is what lets "equal outputs" mean "equal state";
seed sensitivity shows the comparison can tell outputs apart at all. A version where a
pipeline class is absent is UNSUPPORTED (grey), never a failure.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pytest

from harness.inputs.models import ENCODERS, PIPELINES
from harness.inputs.models.run import encode_image, run_step
from harness.inputs.models.specs import ENCODER_SPECS, PIPELINE_SPECS
from harness.protocol.outcomes import Outcome

pytestmark = pytest.mark.filterwarnings("ignore")


def _declare(compat: Any, zoo: Any, name: str) -> None:
    """Name the pipeline in the record and build it: building calls diffusers /
    transformers constructors, so a version that rejects the tiny architecture is a library
    finding (CLEAR_ERROR / CRASH); an absent class is UNSUPPORTED."""
    compat.param(pipeline=name, pipeline_cls=PIPELINES[name])
    with compat.library_call():
        info = zoo.info(name)
    compat.detail(**info.as_dict())


def _pipe(compat: Any, zoo: Any, name: str) -> Any:
    """A fresh, independent zoo copy."""
    with compat.library_call():
        return zoo.get(name)


def _step(compat: Any, pipe: Any, seed: int) -> np.ndarray:
    with compat.library_call():
        out = run_step(pipe, seed=seed)
    return np.asarray(out, dtype=np.float32)


#: zoo -> {name: the seed-0 output of a fresh copy}. Computed by whichever check needs
#: it first and compared against by the others: each check still runs its own fresh copy,
#: and comparing with an output made earlier in the session also catches state leaking
#: from one copy into the next. Saves the suite a copy and a step per check.
_REFERENCE: weakref.WeakKeyDictionary[Any, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()


def _reference(compat: Any, zoo: Any, name: str) -> np.ndarray:
    outputs = _REFERENCE.setdefault(zoo, {})
    if name not in outputs:
        outputs[name] = _step(compat, _pipe(compat, zoo, name), seed=0)
    return outputs[name]


@pytest.mark.parametrize("name", list(PIPELINES))
def test_builds(compat: Any, zoo: Any, name: str) -> None:
    """The tiny architecture constructs with this version's constructors."""
    _declare(compat, zoo, name)


@pytest.mark.parametrize("name", list(PIPELINES))
def test_step(compat: Any, zoo: Any, name: str) -> None:
    """One step yields finite pixels of the requested size."""
    _declare(compat, zoo, name)
    out = _reference(compat, zoo, name)
    call = PIPELINE_SPECS[name].call
    expected = (1, call["height"], call["width"], 3)
    compat.detail(shape=list(out.shape), mean=float(np.nanmean(out)), std=float(np.nanstd(out)))
    if tuple(out.shape) != expected:
        compat.finding(Outcome.WRONG_RESULT, f"output shape {out.shape}, expected {expected}")
    if not np.isfinite(out).all():
        compat.finding(Outcome.WRONG_RESULT, f"{int((~np.isfinite(out)).sum())} non-finite values")


@pytest.mark.parametrize("name", list(PIPELINES))
def test_deterministic(compat: Any, zoo: Any, name: str) -> None:
    """Two independent copies, same seed: bit-identical output."""
    _declare(compat, zoo, name)
    first = _reference(compat, zoo, name)
    second = _step(compat, _pipe(compat, zoo, name), seed=0)
    diff = float(np.abs(first - second).max()) if first.shape == second.shape else float("inf")
    compat.detail(max_abs_diff=diff)
    if not np.array_equal(first, second):
        compat.finding(Outcome.WRONG_RESULT, f"same seed, different outputs (max diff {diff:g})")


@pytest.mark.parametrize("name", list(PIPELINES))
def test_seed_sensitive(compat: Any, zoo: Any, name: str) -> None:
    """Different seeds give different outputs, so output comparisons can fail."""
    _declare(compat, zoo, name)
    a = _reference(compat, zoo, name)
    b = _step(compat, _pipe(compat, zoo, name), seed=1)
    diff = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    compat.detail(max_abs_diff=diff)
    if diff == 0.0:
        compat.finding(Outcome.SILENT_NOOP, "seed 0 and seed 1 gave identical outputs")


@pytest.mark.parametrize("name", list(ENCODERS))
def test_encoder(compat: Any, zoo: Any, name: str) -> None:
    """The image encoder builds and its IP-Adapter-facing output has the right width."""
    spec = ENCODER_SPECS[name]
    compat.param(encoder=name, encoder_cls=ENCODERS[name], width=spec.output_width)
    with compat.library_call():
        model = zoo.component(name)
        processor = zoo.processor(name)
        out = encode_image(name, model, processor)
    compat.detail(shape=list(out.shape), **zoo.info(name).as_dict())
    if out.shape[-1] != spec.output_width:
        compat.finding(
            Outcome.WRONG_RESULT, f"output width {out.shape[-1]}, expected {spec.output_width}"
        )
    if not bool(out.float().isfinite().all()):
        compat.finding(Outcome.WRONG_RESULT, "non-finite encoder output")
