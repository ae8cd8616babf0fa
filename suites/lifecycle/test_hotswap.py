"""Hot-swap specifics: ``load_lora_weights(..., hotswap=True)`` into a loaded adapter.

Each scenario loads adapter A, hot-swaps file B into the same name and judges the result
against the reference: the effective weights must equal a fresh load of B (on A's layers B
does not target, the swapped adapter contributes nothing). Swaps documented to work
(``DOCUMENTED_TO_WORK``) must succeed: a refusal is REFUSED. The others may be refused with
a message naming something of B, leaving A exactly as it was. A swap that keeps the old lora_B / alpha, that
silently ignores keys, or that half-applies before raising is a finding. UNSUPPORTED before
diffusers 0.33 / peft 0.15 (no ``hotswap``). The compiled scenario (marker ``compile``)
swaps under ``torch._dynamo.config.patch(error_on_recompile=True)``; its swap-only row runs
in the default CPU grid with ``aot_eager``, the rest of the compile set stays opt-in.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from harness.cell import compiling
from harness.cell.classify import LibraryError
from harness.drivers.lifecycle import has_hotswap
from harness.inputs.models.run import run_step
from harness.oracles.compare import fingerprint_inputs, input_mutations, outputs_close
from harness.protocol.outcomes import Outcome
from harness.scenarios.lifecycle.machine import (
    LoraBank,
    LoraSpec,
    mismatches,
    observe,
    patched_copy,
)
from harness.scenarios.lifecycle.model import LifecycleModel

pytestmark = pytest.mark.filterwarnings("ignore")

ARCHES = ("sd15", "sdxl", "flux")
_A = LoraSpec("peft", "denoiser", 4, None, 0)

#: scenario -> (A, B, enable_lora_hotswap target rank or None, reverse B's key order)
SCENARIOS: dict[str, tuple[LoraSpec, LoraSpec, int | None, bool]] = {
    "equal-rank": (_A, replace(_A, seed=1), None, False),
    "smaller-rank": (_A, replace(_A, rank=2, seed=1), None, False),
    "larger-rank": (replace(_A, rank=2), replace(_A, seed=1), None, False),
    "larger-rank-enabled": (replace(_A, rank=2), replace(_A, seed=1), 8, False),
    "alpha": (
        LoraSpec("kohya", "denoiser", 4, 4.0, 0),
        LoraSpec("kohya", "denoiser", 4, 1.0, 1),
        None,
        False,
    ),
    "subset-targets": (_A, replace(_A, part="odd", seed=1), None, False),
    "superset-targets": (replace(_A, part="odd"), replace(_A, seed=1), None, False),
    "key-order": (_A, replace(_A, seed=1), None, True),
    "text-encoder": (replace(_A, part="all"), replace(_A, part="all", seed=1), None, False),
}


#: Swaps the documented semantics say must work (same rank, another alpha, another key
#: order, a larger rank after ``enable_lora_hotswap(target_rank=...)``: diffusers' hot-swap
#: guide and the ``load_lora_weights(hotswap=...)`` docstring): OK only, a refusal is
#: REFUSED. The others may be refused, with a message naming something of the case.
DOCUMENTED_TO_WORK = frozenset({"equal-rank", "alpha", "key-order", "larger-rank-enabled"})


def _copy(state_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v.clone() for k, v in state_dict.items()}


def _setup(compat: Any, life_scene: Any, arch: str) -> tuple[Any, Any, LoraBank]:
    scene = life_scene(arch)  # our zoo build and copy: their failures are ours
    pipe = scene.fresh()
    compat.require(
        has_hotswap(pipe), "load_lora_weights(hotswap=True) needs diffusers >= 0.33 and peft > 0.14"
    )
    return scene, pipe, LoraBank(scene)


#: Every scenario on sd15; on sdxl / flux the ones where the architecture matters (two
#: text encoders, a transformer, padding) - the other scenarios run the same peft code.
OTHER_ARCH_SCENARIOS = ("equal-rank", "larger-rank-enabled", "superset-targets", "text-encoder")
CASES = [("sd15", s) for s in SCENARIOS] + [
    (arch, s) for arch in ("sdxl", "flux") for s in OTHER_ARCH_SCENARIOS
]


@pytest.mark.parametrize("arch,scenario", CASES, ids=[f"{a}-{s}" for a, s in CASES])
def test_hotswap(compat: Any, life_scene: Any, arch: str, scenario: str) -> None:
    """After the swap: weights == a fresh load of B; outside ``DOCUMENTED_TO_WORK`` also a
    clear error naming something of B, with A intact."""
    a_spec, b_spec, target_rank, reverse = SCENARIOS[scenario]
    compat.param(arch=arch, scenario=scenario, format=b_spec.fmt)
    scene, pipe, bank = _setup(compat, life_scene, arch)
    a, b = bank.get(a_spec), bank.get(b_spec)
    # Copies: the first load aliases the caller's tensors and the swap writes into them
    # (``swap-back``); the bank's tensors are the reference and must stay intact.
    state_dict = _copy(b.built.state_dict)
    if reverse:
        state_dict = dict(reversed(list(state_dict.items())))
    compat.valid_input(f"adapter A, then a hot-swap documented to work ({scenario})")
    with compat.library_call():  # loading A (and enabling hot-swap) is valid in any scenario
        if target_rank:
            pipe.enable_lora_hotswap(target_rank=target_rank)
        pipe.load_lora_weights(_copy(a.built.state_dict), adapter_name="style")
    model_a = LifecycleModel()
    model_a.load("style", a_spec.content, a.modules)
    everything = set(a.modules) | set(b.modules)
    if scenario not in DOCUMENTED_TO_WORK:
        compat.may_reject(f"adapter A, then a hot-swap that may be refused ({scenario})")
    # A refusal must name something of this swap: a component, module or key of B.
    names = sorted({c for c, _ in b.modules} | {m for _, m in b.modules} | set(state_dict))
    try:
        with compat.library_call(names=names):
            pipe.load_lora_weights(state_dict, adapter_name="style", hotswap=True)
    except LibraryError as exc:
        left = mismatches(scene, bank, model_a, observe(scene, pipe, everything))
        if left:
            compat.detail(changed=dict(list(left.items())[:20]))
            compat.finding(
                Outcome.STALE_STATE,
                f"hotswap raised ({type(exc.original).__name__}: {str(exc.original)[:120]}) "
                f"but had already changed {len(left)} module(s): {', '.join(list(left)[:4])}",
            )
        raise
    extra = sorted(f"{c}.{m}" for c, m in b.modules - a.modules)
    if extra:
        compat.finding(
            Outcome.DROPPED_KEYS,
            f"hotswap accepted keys for {len(extra)} module(s) the adapter lacks without an "
            f"error: {', '.join(extra[:4])}",
        )
    model_b = LifecycleModel()
    model_b.load("style", b_spec.content, b.modules)
    observed = observe(scene, pipe, everything)  # our identity probe, outside the library call
    bad = mismatches(scene, bank, model_b, observed)
    if bad:
        stale = not mismatches(scene, bank, model_a, observed)
        compat.detail(mismatched_modules=dict(list(bad.items())[:20]))
        compat.finding(
            Outcome.STALE_STATE if stale else Outcome.WRONG_RESULT,
            f"after the swap {len(bad)} module(s) differ from a fresh load of the new adapter"
            f"{' (still the old one)' if stale else ''}: {', '.join(list(bad)[:4])}",
        )


@pytest.mark.parametrize("arch", ARCHES)
def test_hotswap_swap_back(compat: Any, life_scene: Any, arch: str) -> None:
    """Load the caller's dict A, hot-swap dict B, hot-swap A back (the same dict objects, as
    an app switching styles does): the weights are A's again and neither dict changed."""
    compat.param(arch=arch, scenario="swap-back", format=_A.fmt)
    compat.valid_input("adapter A, hot-swap to B (equal rank), hot-swap back to A")
    scene, pipe, bank = _setup(compat, life_scene, arch)
    a, b = bank.get(_A), bank.get(replace(_A, seed=1))
    sd_a, sd_b = _copy(a.built.state_dict), _copy(b.built.state_dict)
    print_a, print_b = fingerprint_inputs(sd_a), fingerprint_inputs(sd_b)
    with compat.library_call():
        pipe.load_lora_weights(sd_a, adapter_name="style")
        pipe.load_lora_weights(sd_b, adapter_name="style", hotswap=True)
    changed_a = input_mutations(print_a, sd_a)
    compat.detail(dict_a_changed_by_swap=len(changed_a))
    with compat.library_call():
        pipe.load_lora_weights(sd_a, adapter_name="style", hotswap=True)
    observed = observe(scene, pipe, set(a.modules))
    model = LifecycleModel()
    model.load("style", _A.content, a.modules)
    bad = mismatches(scene, bank, model, observed)
    if bad:
        compat.detail(mismatched_modules=dict(list(bad.items())[:20]))
        compat.finding(
            Outcome.WRONG_RESULT,
            f"swapping back to the caller's first dict did not restore it on {len(bad)} "
            f"module(s) ({', '.join(list(bad)[:3])}); the swap to B had changed "
            f"{len(changed_a)} tensor(s) of dict A in place",
        )
    mutated = changed_a + input_mutations(print_b, sd_b)
    if mutated:
        compat.finding(
            Outcome.INPUT_MUTATED,
            f"hot-swapping changed the caller's state dicts in place: {'; '.join(mutated[:3])}",
        )


#: IP-Adapter switches in one pipeline: ``width`` is the encoder-width switch (a 1024-wide ViT-H encoder's
#: adapter, then a 1280-wide ViT-bigG one, or back); ``same`` keeps the encoder width.
IP_SWAPS: dict[str, tuple[str, str]] = {
    "sd15-width": ("sd15-base", "sd15-base-vitG"),
    "sd15-same": ("sd15-base", "sd15-light"),
    "sdxl-width": ("sdxl-base-vith", "sdxl-base"),
}


@pytest.mark.parametrize("case", list(IP_SWAPS))
def test_ip_swap(compat: Any, life_ipa: Any, case: str) -> None:
    """load_ip_adapter(first) then load_ip_adapter(second): one step with the second's image
    equals a fresh pipeline holding only the second (a stale image projection or encoder is
    the seed's matmul shape error, or a silent mix)."""
    arch, kind = case.split("-")
    compat.param(arch=arch, scenario=f"ip-swap-{kind}")
    first, second = IP_SWAPS[case]
    pipe = life_ipa.pipe(compat, arch)
    life_ipa.load(compat, pipe, first)
    life_ipa.load(compat, pipe, second)
    got = life_ipa.run(compat, pipe, second)
    want = life_ipa.fresh(compat, arch, second)
    close, delta = outputs_close(got, want, pipe.unet.dtype)
    compat.detail(max_abs_diff=delta)
    if not close and delta > 1e-4:
        compat.finding(
            Outcome.STALE_STATE,
            f"after switching {first} -> {second} one step differs from a fresh pipeline "
            f"holding only {second} (max {delta:.3g})",
        )


#: What follows the compiled hot-swap: nothing (the default-grid row: the guard question
#: alone, one compile), or ``set_adapters`` + ``unload_lora_weights`` on the compiled
#: denoiser (opt-in on CPU with the other compile checks: the unload recompiles).
COMPILED_THEN = ("swap", "set_adapters-unload")


@pytest.mark.compile
@pytest.mark.parametrize(
    "arch,then", [("sd15", t) for t in COMPILED_THEN], ids=["sd15", "sd15-then-set_adapters-unload"]
)
def test_compiled_hotswap(compat: Any, life_scene: Any, device: Any, arch: str, then: str) -> None:
    """enable_lora_hotswap(target_rank) + compiled denoiser: a swap to another rank does not
    recompile and gives B's output; ``then``: set_adapters and unload still work afterwards.
    ``[sd15]`` runs in the default CPU grid (``harness.cell.compiling.CPU_DEFAULT``)."""
    compat.param(arch=arch, scenario="compiled", then=then)
    compat.valid_input("a padded hot-swap after enable_lora_hotswap, as the compile guide shows")
    backend = compiling.backend_for(device)
    compat.detail(compile_backend=backend)
    missing = compiling.missing(backend)
    if missing:
        compat.not_run(missing)
    scene, pipe, bank = _setup(compat, life_scene, arch)
    a_spec, b_spec = replace(_A, rank=2), replace(_A, rank=4, seed=1)
    a, b = bank.get(a_spec), bank.get(b_spec)
    import torch._dynamo

    torch._dynamo.reset()
    try:
        _compiled_swap(compat, scene, pipe, bank, a, b, b_spec, backend, then)
    finally:
        torch._dynamo.reset()


def _compiled_swap(
    compat: Any, scene: Any, pipe: Any, bank: Any, a: Any, b: Any, b_spec: Any, backend: str,
    then: str,
) -> None:  # fmt: skip
    import torch._dynamo

    with compat.library_call():
        pipe.enable_lora_hotswap(target_rank=8)
        pipe.load_lora_weights(_copy(a.built.state_dict), adapter_name="style")
        pipe.unet = torch.compile(pipe.unet, backend=backend)
        start = time.perf_counter()
        run_step(pipe)
        compile_s = time.perf_counter() - start
    compat.detail(compile_seconds=round(compile_s, 1))
    with compat.library_call(), torch._dynamo.config.patch(error_on_recompile=True):
        pipe.load_lora_weights(_copy(b.built.state_dict), adapter_name="style", hotswap=True)
        start = time.perf_counter()
        got = run_step(pipe)
        compat.detail(post_swap_step_seconds=round(time.perf_counter() - start, 2))
    model = LifecycleModel()
    model.load("style", b_spec.content, b.modules)
    want = run_step(patched_copy(scene, bank, model))
    close, delta = outputs_close(got, want, scene.dtype)
    compat.detail(swap_max_abs_diff=delta)
    if not close and delta > 1e-4:
        compat.finding(
            Outcome.WRONG_RESULT, f"compiled output after swap differs from B (max {delta:.3g})"
        )
    if then == "swap":
        torch._dynamo.reset()  # no compiled graph outlives its row
        return
    with compat.library_call():
        pipe.set_adapters(["style"], [0.5])
        got = run_step(pipe)
    model.set_adapters(["style"], [0.5])
    close, delta = outputs_close(got, run_step(patched_copy(scene, bank, model)), scene.dtype)
    if not close and delta > 1e-4:
        compat.finding(
            Outcome.WRONG_RESULT, f"set_adapters on the compiled UNet: max diff {delta:.3g}"
        )
    with compat.library_call():
        pipe.unload_lora_weights()
        got = run_step(pipe)
    close, delta = outputs_close(got, run_step(scene.fresh()), scene.dtype)
    compat.detail(unload_max_abs_diff=delta)
    if not close and delta > 1e-4:
        compat.finding(Outcome.STALE_STATE, f"unload on the compiled UNet: max diff {delta:.3g}")
    torch._dynamo.reset()
