"""LoRA files on every model family the table knows, one row per kind of file.

``load[<family>-<kind>]``: a diffusers/PEFT-named file (``transformer.<path>.lora_A.weight``
/ ``.lora_B.weight``, rank 4) on every Linear inside the family's transformer blocks,
loaded with the family pipeline's ``load_lora_weights``:

* ``complete`` - alpha 2 != rank in diffusers' adapter metadata of the safetensors header
  (the only alpha channel of this naming; read from 0.34 on, before that the file has no
  alpha): valid input, must load with the reference effect. A refusal is ``REFUSED``.
* ``no-alpha`` - the same modules, a plain dict without metadata: scale 1. Valid input.
* ``partial-no-to_k`` - the first attention without its ``to_k`` pair: the effect of the
  pairs present, or a refusal naming a key or module of that attention.
* ``stray-key`` - complete plus one pair for a module the model does not have
  (``bogus0``): applied-or-reported (a warning naming it), or a refusal naming it.

``does_not_mutate_input[<family>]``: ``load_lora_weights(dict)`` leaves the caller's dict
and tensors as they were.

Oracle: each targeted module's effective weight (probed) equals base + (alpha / rank) B A
computed from the file alone (:mod:`harness.oracles.lora_peft`), no other module moved;
keys without effect pass only if a library warning named them
(:func:`harness.drivers.lora.judge_load`).
"""

from __future__ import annotations

import pytest

from harness.cell.classify import LibraryError
from harness.drivers.lora import judge_load
from harness.inputs.families.table import FAMILIES
from harness.oracles.compare import fingerprint_inputs, input_mutations
from harness.protocol.outcomes import Outcome
from harness.scenarios.families import load_source, reads_adapter_metadata

KINDS = ("complete", "partial-no-to_k", "no-alpha", "stray-key")
ROWS = [(family, kind) for family in FAMILIES for kind in KINDS]
ADAPTER = "style"


def _case(scene, kind: str):
    """The file of a row, whether it is valid input, and what a refusal must name."""
    if kind == "complete":
        built, ref = scene.lora(seed=0)
        return built, ref, True, built.stems()
    if kind == "no-alpha":
        built, ref = scene.lora(seed=0, alpha=None)
        return built, ref, True, built.stems()
    if kind == "stray-key":
        built, ref = scene.lora(seed=0, stray=1)
        return (
            built,
            ref,
            False,
            [*built.stray_keys, *(k.rsplit(".", 2)[0] for k in built.stray_keys)],
        )
    missing, group = scene.partial_attention()
    built, ref = scene.lora(seed=0, omit=(missing,))
    component = scene.component
    names = [*group, *(f"{component}.{p}" for p in group)]
    names += [k for k in built.state_dict if any(k.startswith(f"{component}.{p}.") for p in group)]
    return built, ref, False, names


@pytest.mark.parametrize("family,kind", ROWS, ids=[f"{f}-{k}" for f, k in ROWS])
def test_load(compat, family_scene, tmp_path, family: str, kind: str) -> None:
    """One deterministic file of one kind, judged by what that kind owes the user."""
    compat.param(family=family, kind=kind, format="peft")
    scene = family_scene(family)
    compat.detail(**scene.build_info)
    built, ref, valid, names = _case(scene, kind)
    if valid:
        compat.valid_input(f"complete diffusers/PEFT file for {family} ({kind})")
    else:
        compat.may_reject(f"{kind} diffusers/PEFT file for {family}")
    source, kwargs = load_source(built, tmp_path)
    compat.detail(
        n_keys=len(built.state_dict),
        modules=len(built.modules),
        alpha_in="header metadata" if built.header else "none (scale 1)",
        reads_adapter_metadata=reads_adapter_metadata(),
    )
    pipe = scene.fresh()
    with compat.library_call(names=names) as msgs:
        pipe.load_lora_weights(source, adapter_name=ADAPTER, **kwargs)
    observed = scene.observe(pipe)
    comparisons = scene.compare(observed, ref)
    status = judge_load(ref, comparisons, msgs, built.stray_keys, compat, scene.classes)
    compat.detail(status=status)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_does_not_mutate_input(compat, family_scene, family: str) -> None:
    """``load_lora_weights(dict)`` leaves the caller's dict and tensors alone (checked even
    when the call raised: a loader may pop, then fail)."""
    compat.param(family=family, format="peft")
    scene = family_scene(family)
    compat.detail(**scene.build_info)
    compat.valid_input(f"complete diffusers/PEFT dict for {family}")
    built, _ = scene.lora(seed=1, alpha=None)
    pipe = scene.fresh()
    before = fingerprint_inputs(built.state_dict)
    failure: LibraryError | None = None
    try:
        with compat.library_call(names=built.stems()):
            pipe.load_lora_weights(built.state_dict, adapter_name=ADAPTER)
    except LibraryError as exc:
        failure = exc
    problems = input_mutations(before, built.state_dict)
    if problems:
        compat.detail(mutations=problems[:20])
        compat.finding(
            Outcome.INPUT_MUTATED, f"{len(problems)} change(s) to the caller's dict: {problems[0]}"
        )
    if failure is not None:
        raise failure
