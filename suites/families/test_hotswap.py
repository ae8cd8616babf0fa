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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cell.classify import Finding, LibraryError
from harness.inputs.families.table import FAMILIES
from harness.oracles.lora import Reference
from harness.protocol.outcomes import Outcome
from harness.scenarios.families import RANK
from harness.scenarios.family_hotswap import adapter_names, hotswap_missing, load_args, still_first

ADAPTER = "a"
NAMES = list(FAMILIES)
#: The second file's rank in the rank-mismatch row (no ``enable_lora_hotswap`` before).
LARGER_RANK = 2 * RANK


def _first_loaded(compat: Any, scene: Any, tmp_path: Path) -> tuple[Any, Reference]:
    """A fresh pipeline holding the complete file (seed 6) as adapter ``a``; (pipe, ref)."""
    compat.detail(**scene.build_info)
    pipe = scene.fresh()
    missing = hotswap_missing(pipe)
    compat.require(missing is None, missing or "")
    built, ref = scene.lora(seed=6)
    compat.detail(alpha_in="header metadata" if built.header else "none (scale 1)")
    source, kwargs = load_args(built, tmp_path / "first")
    compat.valid_input("a complete diffusers/PEFT LoRA file as adapter 'a'")
    with compat.library_call(names=built.stems()):
        pipe.load_lora_weights(source, adapter_name=ADAPTER, **kwargs)
    scene.expect_effect(compat, pipe, ref, "loading the first file")
    return pipe, ref


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
    extra = [name for name in adapter_names(pipe, scene.component) if name != ADAPTER]
    if extra:
        compat.detail(adapters_after_swap=[ADAPTER, *extra])
        compat.finding(
            Outcome.STALE_STATE,
            f"the hot-swap into {ADAPTER!r} created adapter(s) {', '.join(extra)} on "
            f"{scene.component}; {ADAPTER!r} is still there",
        )
    try:
        scene.expect_effect(compat, pipe, second, "the hot-swap")
    except Finding:
        kept = still_first(scene, pipe, first, second)
        if kept:
            compat.detail(still_first_file=kept[:20])
            compat.finding(
                Outcome.STALE_STATE,
                f"after the hot-swap {len(kept)} module(s) still act as the first file: "
                + ", ".join(kept[:4]),
            )
        raise


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
