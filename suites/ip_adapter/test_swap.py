"""Switching IP-Adapters whose image encoders differ in width (1024 ViT-H vs 1280 ViT-bigG).

ViT-H adapters read 1024-wide image embeddings, ViT-bigG ones 1280-wide. Users switch
between them in a live pipeline ("Base" -> "Base ViT-G" in SD.Next) and got
``mat1 and mat2 shapes cannot be multiplied (2x1024 and 1280x3072)``. Invariant: after
every step of a sequence the output equals a fresh pipeline loaded with only that step's
adapter (each load names the encoder folder the adapter needs). A library that cannot
switch encoders must say so when the adapter is loaded: a shape error at inference is a
CRASH, a silently kept encoder of the right width but the wrong weights STALE_STATE.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.inputs.checkpoints.ip_adapter.hub import ENTRIES
from harness.oracles.compare import outputs_close
from harness.protocol.outcomes import Outcome

pytestmark = pytest.mark.filterwarnings("ignore")

UNLOAD = "unload"

#: Sequence id -> (pipeline, steps). "h" = ViT-H width (1024), "G" = ViT-bigG (1280).
SEQUENCES: dict[str, tuple[str, list[str]]] = {
    "sd15-h>G": ("sd15", ["sd15-base", "sd15-base-vitG"]),
    "sd15-G>h": ("sd15", ["sd15-base-vitG", "sd15-base"]),
    "sd15-h>unload>G": ("sd15", ["sd15-base", UNLOAD, "sd15-base-vitG"]),
    "sd15-G>unload>h>unload>G": (
        "sd15",
        ["sd15-base-vitG", UNLOAD, "sd15-base", UNLOAD, "sd15-base-vitG"],
    ),
    "sd15-h>plus": ("sd15", ["sd15-base", "sd15-plus"]),
    "sd15-G>plus": ("sd15", ["sd15-base-vitG", "sd15-plus"]),
    "sdxl-G>h": ("sdxl", ["sdxl-base", "sdxl-base-vith"]),
    "sdxl-G>unload>h": ("sdxl", ["sdxl-base", UNLOAD, "sdxl-base-vith"]),
}

#: Adapters loaded with the encoder folder of the *other* width (the loader's default).
MISMATCH_CASES = ["sd15-base-vitG", "sdxl-base-vith"]


@pytest.mark.parametrize("sequence", list(SEQUENCES))
def test_width_swap(compat: Any, ipa: Any, sequence: str, dtype: Any) -> None:
    """After each switch the pipeline equals a fresh one holding only the new adapter."""
    arch, steps = SEQUENCES[sequence]
    compat.param(steps=steps, widths=[ENTRIES[s].encoder for s in steps if s != UNLOAD])
    pipe = ipa.pipe(compat, arch)
    for index, step in enumerate(steps):
        if step == UNLOAD:
            ipa.unload(compat, pipe)
            continue
        ipa.load(compat, pipe, step)
        out = ipa.run(compat, pipe, step)
        fresh = ipa.fresh(compat, arch, step)
        same, delta = outputs_close(out, fresh, dtype)
        compat.detail(**{f"step{index}_{step}_max_diff": delta})
        if not same:
            encoder = getattr(pipe, "image_encoder", None)
            width = getattr(getattr(encoder, "config", None), "projection_dim", None)
            compat.finding(
                Outcome.STALE_STATE,
                f"step {index} ({step}): output differs from a fresh load by {delta:.3g} "
                f"(pipeline kept a {width}-wide image encoder; {step} needs "
                f"{ENTRIES[step].encoder})",
            )


@pytest.mark.parametrize("entry", MISMATCH_CASES)
def test_encoder_mismatch(compat: Any, ipa: Any, entry: str) -> None:
    """An adapter paired with an encoder of the wrong width is rejected at load time; an
    error only at inference (whatever its type or wording) is a late failure."""
    spec = ENTRIES[entry]
    compat.expect(Outcome.CLEAR_ERROR)
    compat.param(entry=entry, needs=spec.encoder, given=spec.default_encoder)
    pipe = ipa.pipe(compat, spec.arch)
    ipa.load(compat, pipe, entry, encoder_folder=spec.default_encoder)
    ipa.run(compat, pipe, entry, late=True)  # the load had to refuse: an error here is late
    compat.finding(
        Outcome.WRONG_RESULT,
        f"{entry} (needs {spec.encoder}) loaded and ran with {spec.default_encoder}",
    )
