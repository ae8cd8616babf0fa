"""Adapters in one of two pipelines that share modules.

A LoRA or IP-Adapter loaded into one pipeline lands on the module *objects* it owns; the
other pipeline of the pair sees every change to a shared module (documented behaviour:
recorded as ``other_sees``, not a finding). The checks assert consistency instead:

* a shared module looks the same from both pipelines (the same object, the same
  effective weights), and the other pipeline's own modules are untouched;
* unloading in one pipeline gives BOTH pipelines their pristine weights, attention
  processors, components and outputs back, bit for bit; a leftover LoRA layer, peft_config
  or IP processor on a shared module is STALE_STATE.

Oracles: a pristine pair built the same way (seeded zoo), and the LoRA reference deltas.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.cell.classify import Finding, LibraryError
from harness.drivers.lora import judge_load
from harness.drivers.probe import accepts
from harness.oracles.compare import outputs_close
from harness.protocol.outcomes import Outcome
from harness.scenarios.sharing.adapters import attention_lora
from harness.scenarios.sharing.pairs import PAIRS, run_member
from harness.scenarios.sharing.state import capture, changed_components, differences

pytestmark = pytest.mark.filterwarnings("ignore")

ADAPTER = "shared"

#: id -> (pair, member the LoRA is loaded into, components it targets).
LORA_CASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "refiner-base": ("refiner", "a", ("unet", "text_encoder", "text_encoder_2")),
    "refiner-te2": ("refiner", "b", ("text_encoder_2",)),
    "sd15-components": ("sd15-components", "a", ("unet", "text_encoder")),
    "sd15-from_pipe": ("sd15-from_pipe", "a", ("unet", "text_encoder")),
    "sdxl-components": ("sdxl-components", "a", ("unet", "text_encoder", "text_encoder_2")),
    "sdxl-from_pipe": ("sdxl-from_pipe", "a", ("unet", "text_encoder", "text_encoder_2")),
}
#: The same cases with a UNet-only LoRA: the sharing property does not need the
#: text-encoder load path, so a release (or companion) that breaks that path (0.38-0.40
#: with transformers 5) leaves these rows free to pass or fail on the sharing itself.
LORA_CASES |= {
    f"{case}-unet": (pair, into, ("unet",))
    for case, (pair, into, comps) in list(LORA_CASES.items())
    if "unet" in comps
}

#: Pairs whose members share every module (unload through the *other* pipeline).
FULLY_SHARED = [n for n, p in PAIRS.items() if p.how != "refiner"]

#: IP-Adapter entry of the suites/ip_adapter hub for each architecture.
IP_ENTRY = {"sd15": "sd15-base", "sdxl": "sdxl-base"}


def _members(pair: Any, into: str) -> tuple[Any, Any]:
    return (pair.a, pair.b) if into == "a" else (pair.b, pair.a)


def _fuse_kwargs(pipe: Any, components: list[str]) -> dict[str, Any]:
    """``components=`` from 0.30; before, fuse_unet / fuse_text_encoder default to True."""
    return {"components": components} if accepts(pipe.fuse_lora, "components") else {}


def _load_lora(compat: Any, world: Any, case: str, seed: int) -> tuple[Any, ...]:
    """Fresh pair + LoRA loaded into one member; checks the load against the reference."""
    name, into, comps = LORA_CASES[case]
    compat.param(
        check_pair=name, loaded_into="refiner" if name == "refiner" and into == "b" else into
    )
    pristine = world.pristine(compat, name)
    pair = world.pair(compat, name)
    target, other = _members(pair, into)
    p_target, p_other = pristine if into == "a" else pristine[::-1]
    lora = attention_lora(target, PAIRS[name].arch, comps, seed=seed)
    base = lora.observe(target)
    compat.valid_input("a complete diffusers-format LoRA for one member of the pair")
    try:
        with compat.library_call(names=lora.built.stems()) as msgs:
            target.load_lora_weights(dict(lora.built.state_dict), adapter_name=ADAPTER)
    except LibraryError as exc:
        _note_if_standalone_fails(compat, world, name, into, lora, exc)
        raise
    observed = lora.observe(target)  # our probe, outside the library call
    comparisons = lora.compare(observed, base, world.dtype)
    try:
        status = judge_load(lora.ref, comparisons, msgs, [], compat)
    except Finding as exc:
        raise Finding(exc.outcome, f"load into one pipeline: {exc}") from None
    if status == "OK-reported" and not any(c.matched for c in comparisons.values()):
        compat.finding(
            Outcome.REFUSED,
            "the LoRA's keys were reported unused and nothing loaded: a complete file "
            "refused by a warning",
        )
    return pair, target, other, p_target, p_other, lora, base, observed


def _note_if_standalone_fails(
    compat: Any, world: Any, name: str, into: str, lora: Any, exc: LibraryError
) -> None:
    """Evidence for the record: does the same load fail in a pipeline sharing nothing (a
    fresh zoo pipeline; for the refiner, a fresh pair's refiner)? Then it is a first-load
    problem that suites/lora shows too; the failure is a finding here all the same."""
    compat.detail(load_error=f"{type(exc.original).__name__}: {str(exc.original)[:200]}")
    alone = world.zoo.get(PAIRS[name].arch) if into == "a" else world.pair(compat, name).b
    try:
        alone.load_lora_weights(dict(lora.built.state_dict), adapter_name=ADAPTER)
    except Exception as again:  # noqa: BLE001 - the comparison is the point
        compat.detail(
            fails_standalone_too=type(again) is type(exc.original),
            standalone_error=f"{type(again).__name__}: {str(again)[:200]}",
        )
    else:
        compat.detail(fails_standalone_too=False)


def _check_visibility(
    compat: Any, pair: Any, other: Any, p_other: Any, lora: Any, seen: Any, what: str
) -> None:
    """The other pipeline sees the change on shared modules (same object, same weights)
    and nothing on its own modules."""
    shared = [c for c in pair.shared if getattr(other, c, None) is not None]
    sees = changed_components(p_other, capture(other))
    compat.detail(**{f"other_sees_after_{what}": sees})
    leaked = [c for c in sees if c not in shared]
    if leaked:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"after {what}, the other pipeline's own module(s) changed: {leaked}",
        )
    via_other = (  # our probe, outside the library call
        lora.observe(other)
        if all(getattr(other, c, None) is not None for c in lora.components)
        else {}
    )
    for comp in set(via_other) & set(shared):
        for name, w in via_other[comp].items():
            if not bool((w == seen[comp][name]).all()):
                compat.finding(
                    Outcome.WRONG_RESULT,
                    f"after {what}, shared {comp}.{name} differs seen from the two pipelines",
                )


def _expect_pristine(
    compat: Any, world: Any, pair: Any, p_a: Any, p_b: Any, what: str, slots_a: bool = True
) -> None:
    """Both pipelines' state and outputs equal the pristine pair's exactly. ``slots_a``:
    compare the first pipeline's component slots too (off for IP-Adapter: which slots
    its own unload empties is suites/ip_adapter's subject, e.g. SD pipelines keep the
    feature_extractor on purpose)."""
    after_a = capture(pair.a)
    compat.detail(first_slots_after=after_a.components)
    problems = [f"first: {p}" for p in differences(p_a, after_a, slots=slots_a)]
    problems += [f"second: {p}" for p in differences(p_b, capture(pair.b))]
    compat.detail(left_behind=problems[:12])
    if problems:
        compat.finding(Outcome.STALE_STATE, f"after {what}: " + "; ".join(problems[:4]))
    out_a, out_b = world.baseline(compat, pair.spec.name)
    with compat.library_call():
        got_a, got_b = run_member(pair.a), run_member(pair.b)
    same_a, delta_a = outputs_close(got_a, out_a, world.dtype, exact=True)
    same_b, delta_b = outputs_close(got_b, out_b, world.dtype, exact=True)
    compat.detail(output_diff_first=delta_a, output_diff_second=delta_b)
    if not (same_a and same_b):
        compat.finding(
            Outcome.STALE_STATE,
            f"after {what}, outputs differ from pristine (first {delta_a:.3g}, second {delta_b:.3g})",
        )


@pytest.mark.parametrize("case", list(LORA_CASES))
def test_lora_unload_shared(compat: Any, world: Any, case: str) -> None:
    """load_lora_weights in one pipeline (the other sees it on shared modules only), then
    unload_lora_weights in the same pipeline restores both pipelines exactly."""
    pair, target, other, p_target, p_other, lora, _, observed = _load_lora(compat, world, case, 0)
    _check_visibility(compat, pair, other, p_other, lora, observed, "load")
    with compat.library_call():
        target.unload_lora_weights()
    p_a, p_b = (p_target, p_other) if target is pair.a else (p_other, p_target)
    _expect_pristine(compat, world, pair, p_a, p_b, "unload_lora_weights")


@pytest.mark.parametrize("case", list(LORA_CASES))
def test_lora_fuse_shared(compat: Any, world: Any, case: str) -> None:
    """fuse_lora in one pipeline: the other pipeline reads the same fused weights from
    shared modules and nothing from its own; unfuse_lora then unload_lora_weights leave
    no LoRA layer anywhere and both pipelines' weights within fp rounding of pristine."""
    pair, target, other, p_target, p_other, lora, base, _ = _load_lora(compat, world, case, 1)
    with compat.library_call():
        target.fuse_lora(**_fuse_kwargs(target, lora.components))
    fused = lora.observe(target)  # our probe, outside the library call
    comparisons = lora.compare(fused, base, world.dtype)
    if not any(c.matched for c in comparisons.values()):
        compat.finding(Outcome.SILENT_NOOP, "fuse_lora: no targeted module acts with base + delta")
    _check_visibility(compat, pair, other, p_other, lora, fused, "fuse_lora")
    with compat.library_call():
        target.unfuse_lora(**_fuse_kwargs(target, lora.components))
        target.unload_lora_weights()
    p_a, p_b = (p_target, p_other) if target is pair.a else (p_other, p_target)
    problems = []
    for label, before, pipe in (("first", p_a, pair.a), ("second", p_b, pair.b)):
        after = capture(pipe)
        if after.adapter_layers:
            problems.append(f"{label}: adapter layers left {after.adapter_layers[:3]}")
        for comp, weights in before.weights.items():
            for key, w in weights.items():
                now = after.weights.get(comp, {}).get(key)
                if now is None or now.shape != w.shape:
                    problems.append(f"{label}: {comp}.{key} missing")
                    continue
                tol = 1e-5 * float(w.abs().max()) + 1e-6
                if float((now.double() - w.double()).abs().max()) > tol:
                    problems.append(f"{label}: {comp}.{key} not restored")
    compat.detail(left_behind=problems[:12])
    if problems:
        compat.finding(Outcome.STALE_STATE, "after unfuse + unload: " + "; ".join(problems[:4]))


@pytest.mark.parametrize("case", [c for n in FULLY_SHARED for c in (n, f"{n}-unet")])
def test_lora_unload_via_other(compat: Any, world: Any, case: str) -> None:
    """Members sharing every module: a LoRA loaded through one pipeline and unloaded
    through the other leaves both pristine (the modules hold the state, not the pipeline)."""
    pair, target, other, p_target, p_other, *_ = _load_lora(compat, world, case, 2)
    with compat.library_call():
        other.unload_lora_weights()
    _expect_pristine(
        compat, world, pair, p_target, p_other, "unload_lora_weights on the other pipeline"
    )


@pytest.mark.parametrize("name", list(PAIRS))
def test_ip_adapter_unload_shared(compat: Any, world: Any, name: str) -> None:
    """load_ip_adapter in the first pipeline: the second sees the IP processors on a
    shared UNet (recorded, with whether it still runs without an image), its own modules
    and components stay untouched; unload_ip_adapter restores both pipelines exactly."""
    arch = PAIRS[name].arch
    entry = IP_ENTRY[arch]
    compat.param(entry=entry)
    p_a, p_b = world.pristine(compat, name)
    pair = world.pair(compat, name)
    ipa = world.ipa()
    from harness.drivers.ip_adapter import require_ip_adapter

    require_ip_adapter(pair.a)
    ipa.load(compat, pair.a, entry)
    sees = changed_components(p_b, capture(pair.b))
    compat.detail(
        other_sees_after_load=sees, other_components_after_load=capture(pair.b).components
    )
    leaked = [c for c in sees if c not in pair.shared]
    if leaked:
        compat.finding(
            Outcome.WRONG_RESULT, f"the other pipeline's own module(s) changed: {leaked}"
        )
    if capture(pair.b).components != p_b.components:
        compat.finding(
            Outcome.WRONG_RESULT, "load_ip_adapter changed the other pipeline's components"
        )
    ipa.run(compat, pair.a, entry)  # the adapter works where it was loaded
    try:  # documented consequence of sharing, not a finding: recorded only
        run_member(pair.b)
        compat.detail(other_runs_without_image="ok")
    except Exception as exc:  # noqa: BLE001 - evidence
        compat.detail(other_runs_without_image=f"{type(exc).__name__}: {str(exc)[:160]}")
    ipa.unload(compat, pair.a)
    _expect_pristine(compat, world, pair, p_a, p_b, "unload_ip_adapter", slots_a=False)
