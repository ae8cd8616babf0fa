"""Converter round trip: a training-layout checkpoint of the zoo UNet, converted
by the harness's converter, loads into diffusers with every trained tensor where training
put it.

The oracle is the training run itself: ``adapter_modules.<i>`` *is* a known attention
processor (by name, from the UNet's own ``attn_processors`` order), so after the load that
processor must hold the tensor — independent of the release numbering the converter
computed. A converter report with problems is WRONG_RESULT (the converter refuses such a
file); a loader that then misplaces or drops tensors is WRONG_RESULT / DROPPED_KEYS.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.convert import ip_adapter as converter
from harness.drivers.ip_adapter import denoiser
from harness.inputs.checkpoints.ip_adapter import Encoder, save_release
from harness.inputs.checkpoints.ip_adapter.hub import Entry
from harness.inputs.checkpoints.ip_adapter.training import build_training
from harness.oracles.compare import snapshot
from harness.protocol.outcomes import Outcome
from harness.scenarios.ip_adapter import expect_variant, verify_loaded

pytestmark = pytest.mark.filterwarnings("ignore")

#: (pipeline, variant, training numbering, output format, encoder, subfolder)
ROUND_TRIPS = [
    ("sd15", "base", "cross", "safetensors", "clip-vision-1024", "models"),
    ("sd15", "plus", "processor", "bin", "clip-vision-1024", "models"),
    ("sd15", "faceid", "processor", "bin", None, "models"),
    ("sdxl", "base", "cross", "safetensors", "clip-vision-1280", "sdxl_models"),
]


def _expected_release(target: Any, training: Any) -> dict[str, dict[str, Any]]:
    """The release a correct conversion yields, keyed by processor *position* in the
    UNet's attn_processors order (from the training ground truth, not the converter)."""
    position = {s.name: s.position for s in target.slots}
    ip = {
        f"{position[name]}.{rest}": tensor
        for name, tensors in training.by_processor.items()
        for rest, tensor in tensors.items()
    }
    return {"image_proj": training.image_proj, "ip_adapter": ip}


@pytest.mark.parametrize(
    ("arch", "variant", "numbering", "fmt", "encoder", "subfolder"),
    ROUND_TRIPS,
    ids=[f"{a}-{v}-{n}-{f}" for a, v, n, f, _, _ in ROUND_TRIPS],
)
def test_round_trip(
    compat: Any,
    ipa: Any,
    arch: str,
    variant: str,
    numbering: str,
    fmt: str,
    encoder: str | None,
    subfolder: str,
) -> None:
    """training checkpoint -> convert -> load_ip_adapter -> processors hold the trained tensors."""
    compat.param(numbering=numbering, format=fmt)
    expect_variant(compat, variant)
    pipe = ipa.pipe(compat, arch)
    target = ipa.target(arch)
    enc = Encoder.from_model(ipa.encoder(encoder)) if encoder else Encoder("id", None, 0)
    training = build_training(target, variant, enc, numbering=numbering, seed=7)
    release, report = converter.convert(training.state, target=target)
    compat.detail(converter_report=report.render().splitlines())
    if not report.ok:
        compat.finding(
            Outcome.WRONG_RESULT, "converter report: " + "; ".join(report.problems()[:4])
        )
    stem = f"converted-{arch}-{variant}-{numbering}"
    save_release(release, ipa.repo.root / subfolder / f"{stem}.{fmt}")
    entry = Entry(stem, arch, variant, encoder, subfolder, stem, seed=0)
    lora = variant.startswith("faceid")
    pristine = snapshot(denoiser(pipe)) if lora else None
    ipa.load(compat, pipe, [entry], fmt=fmt)
    verify_loaded(
        compat, ipa, pipe, [entry], pristine, releases=[_expected_release(target, training)]
    )
