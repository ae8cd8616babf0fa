"""``unload_ip_adapter`` hands back the pipeline it got: the denoiser's weights, config
and attention processors (types and count), ``pipe.components`` (the image encoder and
feature extractor the load registered are gone, everything else is the very same object)
and the outputs, bit for bit. Anything left behind is STALE_STATE; a different output is
WRONG_RESULT.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.drivers.ip_adapter import denoiser
from harness.oracles.compare import diff_state, outputs_close, snapshot
from harness.oracles.ip_adapter import (
    component_config_view,
    component_view,
    diff_views,
    processor_view,
)
from harness.protocol.outcomes import Outcome

pytestmark = pytest.mark.filterwarnings("ignore")

#: Pipeline -> the adapter each unload check loads first.
UNLOAD_CASES = {"sd15": "sd15-base", "sdxl": "sdxl-base", "flux": "flux-base", "sd3": "sd3"}

#: Components a load may register and an unload must take back.
ADDED = ("image_encoder", "feature_extractor")


def _state(model: Any) -> dict[str, Any]:
    """What the denoiser looks like apart from its tensors."""
    return {
        "processors": processor_view(model),
        # Attribute reads: loaders assign ``model.config.x = ...``, which sets the
        # FrozenDict's attribute (what forward() reads), not its item.
        "config": {k: repr(getattr(model.config, k, v)) for k, v in dict(model.config).items()},
        "encoder_hid_proj": type(getattr(model, "encoder_hid_proj", None)).__name__,
        "image_proj": type(getattr(model, "image_proj", None)).__name__,
    }


def _load_and_unload(compat: Any, ipa: Any, arch: str, run: bool = False) -> tuple[Any, Any]:
    entry = UNLOAD_CASES[arch]
    compat.param(entry=entry)
    pipe = ipa.pipe(compat, arch)
    before = (snapshot(denoiser(pipe)), _state(denoiser(pipe)), component_view(pipe))
    before += (component_config_view(pipe, ADDED),)
    ipa.load(compat, pipe, entry)
    if run:  # exercise the adapter so lazily created state exists before the unload
        ipa.run(compat, pipe, entry)
    ipa.unload(compat, pipe)
    return pipe, before


@pytest.mark.parametrize("arch", list(UNLOAD_CASES))
def test_restores_state(compat: Any, ipa: Any, arch: str) -> None:
    """Denoiser weights, config and attention processors equal the pristine ones."""
    pipe, (weights, state, _, _) = _load_and_unload(compat, ipa, arch)
    model = denoiser(pipe)
    weight_diff = diff_state(weights, snapshot(model))
    after = _state(model)
    problems = []
    if not weight_diff.equal:
        problems.append(f"weights: {weight_diff.summary()}")
    problems += [f"processor {p}" for p in diff_views(state["processors"], after["processors"])]
    problems += [f"config {p}" for p in diff_views(state["config"], after["config"])]
    for key in ("encoder_hid_proj", "image_proj"):
        if state[key] != after[key]:
            problems.append(f"{key}: {state[key]} -> {after[key]}")
    compat.detail(left_behind=problems[:12], n_left_behind=len(problems))
    if problems:
        compat.finding(Outcome.STALE_STATE, "unload left: " + "; ".join(problems[:4]))


@pytest.mark.parametrize("arch", list(UNLOAD_CASES))
def test_restores_components(compat: Any, ipa: Any, arch: str) -> None:
    """``pipe.components`` (and their config entries) are what they were before the load."""
    pipe, (_, _, components, config) = _load_and_unload(compat, ipa, arch)
    problems = diff_views(components, component_view(pipe))
    problems += [f"config {p}" for p in diff_views(config, component_config_view(pipe, ADDED))]
    compat.detail(left_behind=problems)
    if problems:
        compat.finding(Outcome.STALE_STATE, "unload left components: " + "; ".join(problems[:4]))


@pytest.mark.parametrize("arch", list(UNLOAD_CASES))
def test_restores_outputs(compat: Any, ipa: Any, arch: str, dtype: Any) -> None:
    """After load, use and unload, the output equals the pristine pipeline's exactly."""
    baseline = ipa.baseline(compat, arch)
    pipe, _ = _load_and_unload(compat, ipa, arch, run=True)
    out = ipa.run(compat, pipe)
    same, delta = outputs_close(out, baseline, dtype, exact=True)
    compat.detail(max_diff=delta)
    if not same:
        compat.finding(Outcome.WRONG_RESULT, f"output after unload differs by {delta:.3g}")
