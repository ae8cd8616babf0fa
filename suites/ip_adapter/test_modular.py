"""IP-Adapter load / scale / unload in the modular SDXL pipeline (``ModularIPAdapterMixin``,
0.35+; UNSUPPORTED before), built offline from the zoo's UNet
(:mod:`harness.scenarios.ip_modular`). Oracles are the classic pipeline's independent ones:
``verify_loaded`` (processor IP layers and image projection equal the release file), the
plain-torch attention-branch formula at scale 0.6, our expansion of a per-block scale
config, and the pristine UNet (weights, processors, ``encoder_hid_proj``) after unload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.drivers.ip_adapter import load_kwargs
from harness.inputs.checkpoints.ip_adapter.hub import ENTRIES
from harness.oracles.compare import diff_state, snapshot
from harness.oracles.ip_adapter import diff_views, expand_block_scales
from harness.protocol.outcomes import Outcome
from harness.scenarios.ip_adapter import expect_variant, verify_loaded
from harness.scenarios.ip_forward import probe_ip_attention_branch
from harness.scenarios.ip_modular import (
    build_modular,
    first_block_config,
    ip_scales,
    missing_api,
    modular_load_kwargs,
    save_unet,
    unet_view,
)

pytestmark = pytest.mark.filterwarnings("ignore")

#: The modular pipeline of the grid (SDXL) and its base adapter.
ENTRY = "sdxl-base"


def _modular(compat: Any, ipa: Any, tmp_path: Path) -> tuple[Any, Any]:
    missing = missing_api()
    compat.require(not missing, f"no {', '.join(missing)} in this version")
    spec = ENTRIES[ENTRY]
    compat.param(entry=ENTRY, pipeline="StableDiffusionXLModularPipeline")
    expect_variant(compat, spec.variant)
    classic = ipa.pipe(compat, spec.arch)
    pipe = build_modular(compat, save_unet(classic, tmp_path), type(classic.unet))
    return classic, pipe


def _load(compat: Any, ipa: Any, classic: Any, pipe: Any) -> None:
    """``pipe.load_ip_adapter(root, subfolder=..., weight_name=...)`` from the local hub."""
    ipa.entries(ENTRY)
    kwargs = modular_load_kwargs(load_kwargs(classic, ipa.repo.root, ENTRY))
    with compat.library_call(names=[kwargs["weight_name"], kwargs["subfolder"]]):
        pipe.load_ip_adapter(**kwargs)


def test_modular_load(compat: Any, ipa: Any, tmp_path: Path) -> None:
    """The release file's IP layers and image projection land where the classic oracle says."""
    classic, pipe = _modular(compat, ipa, tmp_path)
    _load(compat, ipa, classic, pipe)
    verify_loaded(compat, ipa, pipe, [ENTRY])


def test_modular_scale(compat: Any, ipa: Any, tmp_path: Path) -> None:
    """``set_ip_adapter_scale(0.6)``: the first IP processor's output at 0.6 minus at 0 is
    ``0.6 · to_out(softmax(q k_ipᵀ/√d) v_ip)``; then a per-block dict gives every IP
    processor the scale our expansion of the documented semantics gives it."""
    classic, pipe = _modular(compat, ipa, tmp_path)
    _load(compat, ipa, classic, pipe)
    probe_ip_attention_branch(compat, ipa, pipe, ENTRY)
    target = ipa.target(ENTRIES[ENTRY].arch)
    config = first_block_config(target.slots)
    expected = expand_block_scales(target.slots, config)
    if not any(expected.values()):  # a config that sets nothing would pass vacuously
        raise RuntimeError(f"{config} names no IP processor of the target")
    with compat.library_call():
        pipe.set_ip_adapter_scale(config)
    got = ip_scales(pipe.unet)
    wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != [v]}
    compat.detail(config=config, wrong_scales={k: repr(v) for k, v in wrong.items()})
    if wrong:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"set_ip_adapter_scale({config}): {len(wrong)} processor(s) got other scales: "
            + "; ".join(f"{k}: {a!r} != [{b}]" for k, (a, b) in list(wrong.items())[:3]),
        )


def test_modular_unload(compat: Any, ipa: Any, tmp_path: Path) -> None:
    """``unload_ip_adapter()`` gives back the UNet it got: weights bit-equal, processor
    classes, ``encoder_hid_proj`` and ``encoder_hid_dim_type`` as before the load."""
    classic, pipe = _modular(compat, ipa, tmp_path)
    weights, view = snapshot(pipe.unet), unet_view(pipe.unet)
    _load(compat, ipa, classic, pipe)
    with compat.library_call():
        pipe.unload_ip_adapter()
    problems = diff_views(view, unet_view(pipe.unet))
    weight_diff = diff_state(weights, snapshot(pipe.unet))
    if not weight_diff.equal:
        problems.append(f"weights: {weight_diff.summary()}")
    compat.detail(left_behind=problems[:12])
    if problems:
        compat.finding(Outcome.STALE_STATE, "unload left: " + "; ".join(problems[:4]))
