"""Several IP-Adapters at once, and per-block / per-layer scale configurations.

Oracles: with two adapters loaded, adapter ``i``'s weights sit at index ``i`` of every IP
processor; scales ``[1, 0]`` reproduce a fresh pipeline holding only the first adapter,
``[0, 0]`` the pipeline without adapters. A per-block config must give each processor the
scale our own expansion of the documented semantics gives it, and the output must equal
setting those scales on the processors by hand.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from harness.drivers.ip_adapter import PER_BLOCK_SCALES, denoiser, family
from harness.oracles.compare import outputs_close
from harness.oracles.ip_adapter import expand_block_scales
from harness.protocol.outcomes import Outcome
from harness.scenarios.ip_adapter import verify_loaded

pytestmark = pytest.mark.filterwarnings("ignore")

#: Pipeline -> two adapters sharing one image encoder.
MULTI_CASES = {
    "sd15": ["sd15-base", "sd15-plus"],
    "sdxl": ["sdxl-base", "sdxl-light"],
    "flux": ["flux-base", "flux-light"],
}

#: Pipeline -> the adapter the scale-configuration check loads.
BLOCK_CASES = {"sd15": "sd15-base", "sdxl": "sdxl-base", "flux": "flux-base"}


def per_adapter(pipe: Any, scales: list[float]) -> list[Any]:
    """One scale per adapter. Flux reads a flat list of floats as per-*layer* scales of a
    single adapter in 0.32 and as per-adapter scales later; a list of per-layer lists
    means per-adapter in every version."""
    if family(pipe) == "flux":
        layers = int(pipe.transformer.config.num_layers)
        return [[s] * layers for s in scales]
    return scales


@pytest.mark.parametrize("arch", list(MULTI_CASES))
def test_two_adapters(compat: Any, ipa: Any, arch: str, dtype: Any) -> None:
    """Both adapters load in order; zeroing one leaves exactly the other."""
    names = MULTI_CASES[arch]
    compat.param(entries=names)
    pipe = ipa.pipe(compat, arch)
    ipa.load(compat, pipe, names)
    verify_loaded(compat, ipa, pipe, names)
    only_first = ipa.fresh(compat, arch, names[0])
    baseline = ipa.baseline(compat, arch)
    ipa.set_scale(compat, pipe, per_adapter(pipe, [1.0, 0.0]))
    first = ipa.run(compat, pipe, names)
    ipa.set_scale(compat, pipe, per_adapter(pipe, [0.0, 0.0]))
    none = ipa.run(compat, pipe, names)
    same_first, d_first = outputs_close(first, only_first, dtype)
    same_none, d_none = outputs_close(none, baseline, dtype)
    compat.detail(max_diff_vs_first_only=d_first, max_diff_vs_no_adapter=d_none)
    if not same_first:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"scales [1, 0] differ from the first adapter alone by {d_first:.3g}",
        )
    if not same_none:
        compat.finding(
            Outcome.WRONG_RESULT, f"scales [0, 0] differ from no adapter by {d_none:.3g}"
        )


_ATTN = re.compile(r"^(down|up)_blocks\.(\d+)\.attentions\.(\d+)\.")


def block_config(slots: Any) -> dict[str, Any]:
    """A config naming one down block (a number) and one up block (a list alternating
    0 / 1 over its transformer models); the mid block stays unnamed (0)."""
    attns: dict[tuple[str, int], set[int]] = {}
    for slot in slots:
        match = _ATTN.match(slot.name)
        if match and slot.ip_id is not None:
            attns.setdefault((match.group(1), int(match.group(2))), set()).add(int(match.group(3)))
    down = min(b for part, b in attns if part == "down")
    up = min(b for part, b in attns if part == "up")
    n_up = len(attns[("up", up)])
    return {
        "down": {f"block_{down}": 1.0},
        "up": {f"block_{up}": [float(i % 2) for i in range(n_up)]},
    }


def _scales(model: Any) -> dict[str, Any]:
    """The first adapter's scale on each IP processor (whatever type the library put)."""
    return {
        name: proc.scale[0]
        for name, proc in model.attn_processors.items()
        if hasattr(proc, "to_k_ip") and isinstance(getattr(proc, "scale", None), list)
    }


@pytest.mark.parametrize("arch", list(BLOCK_CASES))
def test_block_scales(compat: Any, ipa: Any, arch: str, dtype: Any) -> None:
    """A per-block (UNet) / per-layer (Flux) scale config sets each processor's scale as
    documented, and acts like setting those scales by hand."""
    entry = BLOCK_CASES[arch]
    pipe = ipa.pipe(compat, arch)
    target = ipa.target(arch)
    if family(pipe) == "flux":
        ids = list(target.ip_slots)
        config: Any = [float(i % 2) for i in range(len(ids))]
        expected = {s.name: config[i] for i, s in enumerate(ids)}
    else:
        compat.require(
            PER_BLOCK_SCALES.holds(),
            f"set_ip_adapter_scale takes per-block dicts from {PER_BLOCK_SCALES.version}",
        )
        config = block_config(target.slots)
        expected = expand_block_scales(target.slots, config)
    compat.param(entry=entry, config=config)
    ipa.load(compat, pipe, entry)
    ipa.set_scale(compat, pipe, config)
    got = _scales(denoiser(pipe))
    wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
    compat.detail(expected_scales=expected, wrong_scales={k: repr(v) for k, v in wrong.items()})
    if wrong:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"{len(wrong)} processors got other scales: "
            + "; ".join(f"{k}: {a!r} != {b}" for k, (a, b) in list(wrong.items())[:3]),
        )
    out = ipa.run(compat, pipe, entry)
    manual = ipa.pipe(compat, arch)
    ipa.load(compat, manual, entry)
    for name, proc in denoiser(manual).attn_processors.items():
        if name in expected:
            proc.scale = [expected[name]]
    reference = ipa.run(compat, manual, entry)
    same, delta = outputs_close(out, reference, dtype)
    compat.detail(max_diff_vs_manual=delta)
    if not same:
        compat.finding(Outcome.WRONG_RESULT, f"output differs from hand-set scales by {delta:.3g}")
