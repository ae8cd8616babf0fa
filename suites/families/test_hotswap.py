"""Hot-swap on every model family the table knows: ``load_lora_weights(..., hotswap=True)``
into a loaded adapter, through the family pipeline's own mixin.

The lifecycle suite's rules (``suites/lifecycle/test_hotswap.py``) on one family component:
the adapter is the family's complete diffusers/PEFT file (every Linear inside the blocks,
rank 4, alpha 2 in the header where the release reads it), the swapped-in file the same
keys and rank with other values. That swap is documented to work (its ``equal-rank``
scenario): a refusal is REFUSED; afterwards every block Linear acts as a fresh load of the
second file, every other Linear as pristine, and no second adapter exists. A file of a
higher rank without ``enable_lora_hotswap`` (its ``larger-rank`` scenario) may be refused,
naming something of the file and leaving the first adapter as it was. UNSUPPORTED where
the release has no hot-swap or the mixin's ``load_lora_weights`` lacks ``hotswap``.

After ``pipe.enable_lora_hotswap(target_rank=16)`` (its ``larger-rank-enabled`` scenario)
another rank and another alpha are documented to swap: the chain rank 4 -> rank 8 ->
rank 4 with another alpha must act as a fresh load of each file in turn, the padding
invisible. The compiled variant runs the same chain with the denoiser compiled (the
lifecycle's compiled row: its backend, ``error_on_recompile`` around each swap and step)
for a few families, judged by a step of the complete pipeline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from harness.cell import compiling
from harness.cell.classify import Finding, LibraryError
from harness.inputs.families.components import FAMILY_PIPELINES
from harness.inputs.families.full_pipelines import FullFamilyZoo
from harness.inputs.families.table import FAMILIES
from harness.oracles.lora import Reference
from harness.oracles.lora_merge import STEP_RELATIVE_TOLERANCE
from harness.protocol.outcomes import Outcome
from harness.scenarios.families import RANK
from harness.scenarios.family_hotswap import (
    CHAIN,
    FIRST,
    TARGET_RANK,
    adapter_names,
    adapter_rank,
    enable_missing,
    hotswap_missing,
    judge_step,
    load_args,
    merged_step,
    still_acting,
)
from harness.scenarios.family_steps import complete_lora, family_step, prompt_embeds

ADAPTER = "a"
NAMES = list(FAMILIES)
#: The second file's rank in the rank-mismatch row (no ``enable_lora_hotswap`` before).
LARGER_RANK = 2 * RANK
#: Families whose compiled swap chain runs (in the default CPU grid with ``aot_eager``).
COMPILED = compiling.FAMILY_HOTSWAP


def _first_loaded(
    compat: Any, scene: Any, tmp_path: Path, target_rank: int | None = None
) -> tuple[Any, Reference]:
    """A fresh pipeline holding the complete file (seed 6) as adapter ``a`` (after
    ``enable_lora_hotswap(target_rank)`` when given); (pipe, ref)."""
    compat.detail(**scene.build_info)
    pipe = scene.fresh()
    missing = (
        hotswap_missing(pipe) if target_rank is None else enable_missing(pipe, scene.component)
    )
    compat.require(missing is None, missing or "")
    built, ref = scene.lora(seed=FIRST.seed, alpha=FIRST.alpha, rank=FIRST.rank)
    compat.detail(alpha_in="header metadata" if built.header else "none (scale 1)")
    source, kwargs = load_args(built, tmp_path / "first")
    compat.valid_input("a complete diffusers/PEFT LoRA file as adapter 'a'")
    with compat.library_call(names=built.stems()):
        if target_rank is not None:
            pipe.enable_lora_hotswap(target_rank=target_rank)
        pipe.load_lora_weights(source, adapter_name=ADAPTER, **kwargs)
    scene.expect_effect(compat, pipe, ref, "loading the first file")
    return pipe, ref


def _expect_swapped(
    compat: Any, scene: Any, pipe: Any, old: Reference, new: Reference, what: str
) -> None:
    """After a swap: one adapter, every block Linear acting as the new file, every other
    Linear pristine; modules still acting as the old file are STALE_STATE."""
    extra = [name for name in adapter_names(pipe, scene.component) if name != ADAPTER]
    if extra:
        compat.detail(adapters_after_swap=[ADAPTER, *extra])
        compat.finding(
            Outcome.STALE_STATE,
            f"{what} into {ADAPTER!r} created adapter(s) {', '.join(extra)} on "
            f"{scene.component}; {ADAPTER!r} is still there",
        )
    try:
        scene.expect_effect(compat, pipe, new, what)
    except Finding:
        kept = still_acting(scene, pipe, old, new)
        if kept:
            compat.detail(still_old_file=kept[:20])
            compat.finding(
                Outcome.STALE_STATE,
                f"after {what} {len(kept)} module(s) still act as the file it replaced: "
                + ", ".join(kept[:4]),
            )
        raise


@pytest.mark.parametrize("family", NAMES)
def test_hotswap(compat: Any, family_scene: Any, tmp_path: Path, family: str) -> None:
    """Adapter ``a``, then a file of the same keys and rank (another seed) hot-swapped into
    ``a``: the effect is the second file's reference, no second adapter, the rest pristine."""
    compat.param(family=family, format="peft", scenario="equal-rank")
    scene = family_scene(family)
    pipe, first = _first_loaded(compat, scene, tmp_path)
    built, second = scene.lora(seed=7)
    source, kwargs = load_args(built, tmp_path / "second")
    compat.valid_input("a hot-swap documented to work: same keys and rank, other values")
    with compat.library_call(names=built.stems()):
        pipe.load_lora_weights(source, adapter_name=ADAPTER, hotswap=True, **kwargs)
    _expect_swapped(compat, scene, pipe, first, second, "the hot-swap")


@pytest.mark.parametrize("family", NAMES)
def test_hotswap_rank_mismatch(compat: Any, family_scene: Any, tmp_path: Path, family: str) -> None:
    """Adapter ``a`` (rank 4), then a rank-8 file hot-swapped into it without
    ``enable_lora_hotswap``: a clear refusal naming something of the file with ``a`` left
    as it was, or a swap whose effect is the second file's reference."""
    compat.param(family=family, format="peft", scenario="larger-rank")
    scene = family_scene(family)
    pipe, first = _first_loaded(compat, scene, tmp_path)
    built, second = scene.lora(seed=7, rank=LARGER_RANK)
    source, kwargs = load_args(built, tmp_path / "second")
    compat.may_reject("a hot-swap to a higher rank without enable_lora_hotswap")
    try:
        with compat.library_call(names=built.stems()):
            pipe.load_lora_weights(source, adapter_name=ADAPTER, hotswap=True, **kwargs)
    except LibraryError as exc:
        compat.detail(swap="refused")
        if ADAPTER not in adapter_names(pipe, scene.component):
            compat.finding(
                Outcome.STALE_STATE,
                f"the refused hot-swap ({type(exc.original).__name__}) removed adapter "
                f"{ADAPTER!r} from {scene.component}",
            )
        try:
            scene.expect_effect(compat, pipe, first, "the refused hot-swap (first file)")
        except Finding as left:
            raise Finding(Outcome.STALE_STATE, str(left)) from None
        raise
    compat.detail(swap="accepted")
    scene.expect_effect(compat, pipe, second, "the accepted hot-swap")


@pytest.mark.parametrize("family", NAMES)
def test_hotswap_enabled(compat: Any, family_scene: Any, tmp_path: Path, family: str) -> None:
    """``enable_lora_hotswap(target_rank=16)``, adapter ``a`` (rank 4, alpha 2), then
    hot-swapped in turn a rank-8 file and a rank-4 file with alpha 6: after each swap the
    effect is that file's reference (its own alpha / rank, not the padded rank's), no
    second adapter, the rest pristine."""
    compat.param(
        family=family, format="peft", scenario="larger-rank-enabled", target_rank=TARGET_RANK
    )
    scene = family_scene(family)
    pipe, old = _first_loaded(compat, scene, tmp_path, target_rank=TARGET_RANK)
    for step, file in enumerate(CHAIN, start=1):
        built, new = scene.lora(seed=file.seed, alpha=file.alpha, rank=file.rank)
        source, kwargs = load_args(built, tmp_path / f"swap{step}")
        compat.valid_input(
            f"hot-swaps documented to work after enable_lora_hotswap(target_rank={TARGET_RANK})"
        )
        with compat.library_call(names=built.stems()):
            pipe.load_lora_weights(source, adapter_name=ADAPTER, hotswap=True, **kwargs)
        _expect_swapped(compat, scene, pipe, old, new, f"the hot-swap to {file.label()}")
        old = new
    compat.detail(config_rank_after_swaps=adapter_rank(pipe, scene.component, ADAPTER))


@pytest.fixture(scope="session")
def full_family_zoo(device: Any, dtype: Any) -> FullFamilyZoo:
    return FullFamilyZoo(device=device, dtype=dtype)


@pytest.mark.compile
@pytest.mark.parametrize("family", COMPILED)
def test_hotswap_enabled_compiled(
    compat: Any, full_family_zoo: FullFamilyZoo, device: Any, tmp_path: Path, family: str
) -> None:
    """The enabled chain with the denoiser compiled after the first load: each swap and the
    step after it run under ``error_on_recompile`` (a recompile is red), and each step
    equals the step of a copy with that file merged in (else WRONG_RESULT; STALE_STATE
    when it equals the file swapped out)."""
    compat.param(family=family, format="peft", scenario="compiled-enabled", target_rank=TARGET_RANK)
    backend = compiling.backend_for(device)
    compat.detail(compile_backend=backend)
    missing = compiling.missing(backend)
    if missing:
        compat.not_run(missing)
    spec, zoo = FAMILY_PIPELINES[family], full_family_zoo
    try:
        with compat.library_call():
            compat.detail(**zoo.build(family).as_dict())
            pipe = zoo.get(family)
    except LibraryError as exc:
        compat.not_run(
            f"the pristine {family} pipeline does not build in this release "
            f"(family_step[{family}] records it): {exc.reason}"
        )
    missing = enable_missing(pipe, FAMILIES[family].attr)
    compat.require(missing is None, missing or "")
    embeds = prompt_embeds(zoo.build(family).pipe, spec) if spec.embeds else None
    try:
        with compat.library_call():
            pristine = family_step(zoo.get(family), spec, seed=0, embeds=embeds)
    except LibraryError as exc:
        compat.not_run(
            f"the pristine {family} pipeline does not step in this release "
            f"(family_step[{family}] records it): {exc.reason}"
        )
    import torch._dynamo

    torch._dynamo.reset()
    try:
        _compiled_chain(compat, zoo, pipe, family, embeds, pristine, backend, tmp_path)
    finally:
        torch._dynamo.reset()  # no compiled graph outlives its row


def _compiled_chain(
    compat: Any, zoo: FullFamilyZoo, pipe: Any, family: str, embeds: Any, pristine: Any,
    backend: str, tmp_path: Path,
) -> None:  # fmt: skip
    """Load, compile and step; then each file of the chain swapped in and stepped, judged
    against the step of a fresh copy with that file merged (:func:`merged_step`)."""
    import torch
    import torch._dynamo

    spec, fam = FAMILY_PIPELINES[family], FAMILIES[family]
    tolerance = STEP_RELATIVE_TOLERANCE.get(zoo.dtype, 1e-3)

    def merged(ref: Reference) -> Any:
        with compat.library_call():
            return merged_step(zoo.get(family), fam, spec, ref, embeds)

    # Written from the denoiser's own layout, before it is wrapped by the compile.
    (built, ref), *chain = [
        complete_lora(pipe, fam, file.seed, file.rank, file.alpha) for file in (FIRST, *CHAIN)
    ]
    source, kwargs = load_args(built, tmp_path / "first")
    compat.valid_input(
        f"a padded hot-swap chain after enable_lora_hotswap(target_rank={TARGET_RANK}) on a "
        "compiled denoiser, as diffusers' hot-swap guide shows"
    )
    with compat.library_call(names=built.stems()):
        pipe.enable_lora_hotswap(target_rank=TARGET_RANK)
        pipe.load_lora_weights(source, adapter_name=ADAPTER, **kwargs)
        setattr(pipe, fam.attr, torch.compile(getattr(pipe, fam.attr), backend=backend))
        start = time.perf_counter()
        family_step(pipe, spec, seed=0, embeds=embeds)
        compat.detail(compile_step_seconds=round(time.perf_counter() - start, 2))
        # A second step before any swap: a model that caches on its first call (Z-Image's
        # rope fills ``freqs_cis``) recompiles here, not because of a swap.
        got = family_step(pipe, spec, seed=0, embeds=embeds)
    old = merged(ref)
    verdict = judge_step(got, old, pristine, pristine, tolerance)
    if not verdict.matches:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"the compiled step with the first file differs from its merge by "
            f"{verdict.error:.3g} (allowed {verdict.tolerance:.3g})",
        )
    errors = []
    for step, (file, (built, ref)) in enumerate(zip(CHAIN, chain, strict=True), start=1):
        source, kwargs = load_args(built, tmp_path / f"swap{step}")
        with (
            compat.library_call(names=built.stems()),
            torch._dynamo.config.patch(error_on_recompile=True),
        ):
            pipe.load_lora_weights(source, adapter_name=ADAPTER, hotswap=True, **kwargs)
            got = family_step(pipe, spec, seed=0, embeds=embeds)
        want = merged(ref)
        verdict = judge_step(got, want, old, pristine, tolerance)
        errors.append(round(verdict.error / verdict.effect, 6))
        compat.detail(relative_error_per_swap=errors)
        if not verdict.matches:
            compat.finding(
                Outcome.STALE_STATE if verdict.stale else Outcome.WRONG_RESULT,
                f"the compiled step after the hot-swap to {file.label()} differs from the "
                f"step with that file merged by {verdict.error:.3g} (allowed "
                f"{verdict.tolerance:.3g})"
                + (": it is still the step of the file swapped out" if verdict.stale else ""),
            )
        old = want
    compat.detail(config_rank_after_swaps=adapter_rank(pipe, fam.attr, ADAPTER))
