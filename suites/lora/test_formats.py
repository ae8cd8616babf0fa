"""Every LoRA format x architecture x key subset: the loaded LoRA acts exactly as the
reference computed from the file says, or the loader refuses it clearly.

Partial fused groups, generalised: hypothesis picks which parts of a fused group are present (any
subset of q/k/v, with or without proj_mlp), alpha present or absent (and its value), rank,
fused layout, file dtype, key order and stray unknown keys. Per example the verdict is:

* OK - every targeted module's effective weight (probed, independent of peft internals)
  equals base + reference delta, no other module moved; keys without effect are fine only
  if a library warning reported them;
* CLEAR_ERROR - the loader refused the file with a message naming the offending keys (for
  a file with stray keys: naming those). Accepted; when *every* example was refused the
  check records CLEAR_ERROR (still a pass) so the grid shows "this version rejects the
  format" rather than a bare OK;
* UNCLEAR_ERROR / DROPPED_KEYS / WRONG_RESULT / CRASH (AssertionError, bare KeyError) -
  findings.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import Phase, given, settings

from harness.cell.classify import LibraryError
from harness.drivers.lora import judge_load
from harness.inputs.checkpoints.lora.cases import candidates, case_strategy, full_case, realise
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.oracles.compare import fingerprint_inputs, input_mutations
from harness.oracles.lora import parse
from harness.protocol.outcomes import Outcome

ARCHES = ("sd15", "sdxl", "flux")
#: DoRA / control / full-size-only formats have their own checks (test_dora, test_control,
#: test_full_scale); the draws here are the plain down/up/alpha formats.
CASES = [
    (arch, name)
    for name, fmt in FORMATS.items()
    for arch in ARCHES
    if fmt.supports(arch) and not fmt.extension
]
IDS = [f"{arch}-{name}" for arch, name in CASES]

FOCUS_ENV = "ADAPTER_COMPAT_LORA_FOCUS"

#: Hypothesis: no shrinking (every example loads a pipeline; the failing example is
#: recorded in the details instead), no example database.
RUN = settings(phases=[Phase.explicit, Phase.generate])


def focused(cands):
    """Restrict the groups hypothesis draws from to those matching ``ADAPTER_COMPAT_LORA_FOCUS``
    (a regex on ``<component>.<native group name>``; unset = all). For narrowing a
    bisection or a self-test to one part of the model; recorded with the result."""
    pattern = os.environ.get(FOCUS_ENV)
    if not pattern:
        return cands
    return [(g, p) for g, p in cands if re.search(pattern, f"{g.component}.{g.native}")]


def _load(compat, scene, fmt, built, names):
    """Load ``built`` into a fresh pipeline and observe it; returns (pipe, msgs, observed)."""
    pipe = scene.fresh()
    with compat.library_call(names=names) as msgs:
        pipe.load_lora_weights(built.state_dict, adapter_name="style")
        observed = scene.observe(pipe)
    return pipe, msgs, observed


def _check_writer_reference(ref, built) -> None:
    """Our writer and reference must agree on every non-stray key (else: our bug)."""
    unknown = set(ref.unknown_keys) - set(built.stray_keys)
    if unknown:
        raise RuntimeError(
            f"reference could not place keys the writer wrote: {sorted(unknown)[:5]}"
        )


@pytest.mark.parametrize("arch,fmt", CASES, ids=IDS)
def test_load_matches_reference(compat, scene_for, arch: str, fmt: str) -> None:
    compat.param(arch=arch, format=fmt)
    compat.expect(Outcome.OK, Outcome.CLEAR_ERROR)
    scene = scene_for(arch)
    lora_format = FORMATS[fmt]
    cands = focused(candidates(lora_format, arch, scene.layout))
    compat.require(cands, f"{fmt} expresses no module of the tiny {arch} model")
    stats: Counter = Counter()
    refusals: list[LibraryError] = []

    @RUN
    @given(case=case_strategy(lora_format, cands))
    def run(case) -> None:
        built = realise(lora_format, arch, scene.layout, case)
        ref = parse(built.state_dict, lora_format, arch, scene.layout)
        _check_writer_reference(ref, built)
        compat.detail(example=case.describe(), n_keys=len(built.state_dict))
        # A clear refusal must name the stray keys; for a valid file, at least some key.
        stray_stems = sorted({k.rsplit(".", 2)[0] for k in built.stray_keys})
        names = (stray_stems + list(built.stray_keys)) or built.stems()
        try:
            _, msgs, observed = _load(compat, scene, lora_format, built, names)
        except LibraryError as exc:
            if exc.outcome is Outcome.CLEAR_ERROR:
                stats["CLEAR_ERROR"] += 1
                refusals.append(exc)
                return
            raise
        stats[
            judge_load(
                ref, scene.compare(observed, ref), msgs, built.stray_keys, compat, scene.classes
            )
        ] += 1

    if os.environ.get(FOCUS_ENV):
        compat.detail(focus=os.environ[FOCUS_ENV])
    try:
        run()
    finally:
        compat.detail(examples=dict(stats))
    if refusals and set(stats) == {"CLEAR_ERROR"}:
        raise refusals[-1]  # every example refused clearly: record CLEAR_ERROR (a pass)


def _call_and_check_mutation(compat, state_dict, call) -> None:
    """Run ``call()`` in a library call; INPUT_MUTATED when the caller's dict or tensors
    changed - checked even when the call raised (a loader may pop, then fail). A refusal
    without mutation records the refusal (CLEAR_ERROR passes, a crash stays a finding)."""
    before = fingerprint_inputs(state_dict)
    failure: LibraryError | None = None
    try:
        with compat.library_call():
            call()
    except LibraryError as exc:
        failure = exc
    problems = input_mutations(before, state_dict)
    if problems:
        compat.detail(
            mutations=problems[:20], raised=str(failure.original)[:300] if failure else None
        )
        compat.finding(
            Outcome.INPUT_MUTATED, f"{len(problems)} change(s) to the caller's dict: {problems[0]}"
        )
    if failure is not None:
        raise failure


def _mutation_case(compat: Any, scene_for: Any, arch: str, fmt: str) -> tuple[Any, Any]:
    """A full file (alpha != rank, so any in-place rescaling shows) and a fresh pipeline;
    a clear refusal is fine, a changed input is not."""
    compat.param(arch=arch, format=fmt)
    compat.expect(Outcome.OK, Outcome.CLEAR_ERROR)
    scene = scene_for(arch)
    lora_format = FORMATS[fmt]
    case = full_case(lora_format, arch, scene.layout, rank=4, alpha=1.0)
    compat.require(case.picks, f"{fmt} expresses no module of the tiny {arch} model")
    return realise(lora_format, arch, scene.layout, case), scene.fresh()


@pytest.mark.parametrize("arch,fmt", CASES, ids=IDS)
def test_load_does_not_mutate_input(compat, scene_for, arch: str, fmt: str) -> None:
    """``load_lora_weights(dict)`` leaves the caller's dict and tensors as they were (alpha
    != rank, so any in-place rescaling shows)."""
    built, pipe = _mutation_case(compat, scene_for, arch, fmt)
    _call_and_check_mutation(
        compat,
        built.state_dict,
        lambda: pipe.load_lora_weights(built.state_dict, adapter_name="style"),
    )


@pytest.mark.parametrize("arch,fmt", CASES, ids=IDS)
def test_lora_state_dict_does_not_mutate_input(compat, scene_for, arch: str, fmt: str) -> None:
    """The public classmethod ``<Pipeline>.lora_state_dict(dict)`` (what apps call to
    inspect / convert a LoRA) leaves the caller's dict and tensors alone."""
    built, pipe = _mutation_case(compat, scene_for, arch, fmt)
    kwargs = {"unet_config": pipe.unet.config} if arch == "sdxl" else {}
    _call_and_check_mutation(
        compat, built.state_dict, lambda: type(pipe).lora_state_dict(built.state_dict, **kwargs)
    )
