"""Loading IP-Adapters from a hub-like folder: every release variant lands where the
numbering rules say, and the scale does what it promises.

Oracles (harness.oracles.ip_adapter): the IP layers of each attention processor equal
the release tensors stored under that processor's id; every image_proj tensor sits at the
parameter its key maps to (proj_names table; nothing else in the projection); FaceID LoRA
keys change each targeted linear by exactly ``up @ down``. Scale 0 must reproduce the
pipeline without the adapter (the IP branch is added with weight 0); scale 1 must not.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.drivers.ip_adapter import denoiser, family
from harness.inputs.checkpoints.ip_adapter.hub import ENTRIES
from harness.oracles.compare import outputs_close, snapshot
from harness.protocol.outcomes import Outcome
from harness.scenarios.ip_adapter import expect_variant, verify_loaded

pytestmark = pytest.mark.filterwarnings("ignore")

#: (entry, file format) pairs: every variant, both on-disk forms for the base adapter.
WEIGHT_CASES = [
    ("sd15-base", "safetensors"),
    ("sd15-base", "bin"),
    ("sd15-plus", "safetensors"),
    ("sd15-full-face", "safetensors"),
    ("sd15-faceid", "bin"),
    ("sd15-faceid-plus", "bin"),
    ("sdxl-base", "safetensors"),
    ("sdxl-plus-vith", "bin"),
    ("flux-base", "safetensors"),
    ("sd3", "safetensors"),
]

SCALE_CASES = ["sd15-base", "sd15-plus", "sd15-full-face", "sdxl-base", "flux-base", "sd3"]


@pytest.mark.parametrize(("entry", "fmt"), WEIGHT_CASES, ids=[f"{e}-{f}" for e, f in WEIGHT_CASES])
def test_weights(compat: Any, ipa: Any, entry: str, fmt: str) -> None:
    """The loaded IP layers, image projection (and FaceID LoRA) equal the checkpoint."""
    spec = ENTRIES[entry]
    compat.param(format=fmt, entry=entry)
    expect_variant(compat, spec.variant)
    pipe = ipa.pipe(compat, spec.arch)
    lora = spec.variant.startswith("faceid")
    pristine = snapshot(denoiser(pipe)) if lora else None
    messages = ipa.load(compat, pipe, entry, fmt=fmt)
    if lora and any("PEFT backend is required" in m for m in messages):
        compat.not_run("FaceID LoRA needs the PEFT backend, absent in this environment")
    verify_loaded(compat, ipa, pipe, [entry], pristine)


@pytest.mark.parametrize("entry", SCALE_CASES)
def test_scale(compat: Any, ipa: Any, entry: str, dtype: Any) -> None:
    """Scale 0 equals the pipeline without the adapter; scale 1 changes the output."""
    spec = ENTRIES[entry]
    compat.param(entry=entry)
    expect_variant(compat, spec.variant)
    baseline = ipa.baseline(compat, spec.arch)
    pipe = ipa.pipe(compat, spec.arch)
    ipa.load(compat, pipe, entry)
    ipa.set_scale(compat, pipe, 0.0)
    at_zero = ipa.run(compat, pipe, entry)
    ipa.set_scale(compat, pipe, 1.0)
    at_one = ipa.run(compat, pipe, entry)
    same0, delta0 = outputs_close(at_zero, baseline, dtype)
    same1, delta1 = outputs_close(at_one, baseline, dtype)
    compat.detail(max_diff_scale0=delta0, max_diff_scale1=delta1, family=family(pipe))
    if not same0:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"scale 0 differs from the pipeline without adapter by {delta0:.3g}",
        )
    if same1:
        compat.finding(Outcome.SILENT_NOOP, "scale 1 output equals the pipeline without adapter")
