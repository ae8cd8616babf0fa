"""The detector view at full scale: a synthetic file of each format, with the exact key
layout of a real one (the committed SD1.5 / SDXL / Flux-dev layouts), goes through
``<Pipeline>.lora_state_dict`` (the classmethod every load starts with) and what comes out
must target exactly the reference's modules with the reference's effect.

Real tensors at real widths but rank 1 (so Flux's fused ``linear1``, 3072 x 3 + 12288 rows,
is converted with the widths the converter hard-codes), compared without forming any
full matrix: each module's delta is applied to a few random vectors (a Freivalds check).
Meta tensors are not used: the converters call ``.item()`` on alphas and test the up
matrix for block sparsity, which meta tensors cannot answer.
"""

from __future__ import annotations

import types

import pytest

from harness.checkpoints.lora.build import Pick, build
from harness.checkpoints.lora.formats import FORMATS, expressible
from harness.checkpoints.lora.layouts import DENOISER
from harness.checkpoints.lora.manifests import load_layout
from harness.models import PIPELINES, pipeline_exists
from harness.reference.lora import parse
from harness.reference.lora_detector import read_converted, unpack
from harness.reference.lora_driver import accepts, judge_view

ARCHES = ("sd15", "sdxl", "flux")
CASES = [(arch, name) for name, fmt in FORMATS.items() for arch in ARCHES if fmt.supports(arch)]
IDS = [f"{arch}-{name}" for arch, name in CASES]


def full_scale_file(arch: str, fmt: str, layout, alpha_every: int = 2):
    """Every group the format can express, rank 1; alpha on every other group (so both the
    default alpha = rank and an explicit alpha != rank are exercised at full scale)."""
    lora_format = FORMATS[fmt]
    picks = []
    for i, (group, parts) in enumerate(expressible(lora_format, arch, layout)):
        alpha = 0.5 if (lora_format.alpha and i % alpha_every == 0) else None
        picks.append(Pick(group, parts, 1, alpha))
    return build(lora_format, arch, layout, picks, seed=0, up_scale=0.1)


@pytest.mark.parametrize("arch,fmt", CASES, ids=IDS)
def test_detector_full_scale(compat, arch: str, fmt: str) -> None:
    compat.param(arch=arch, format=fmt)
    compat.require(pipeline_exists(arch), f"{PIPELINES[arch]} does not exist in this version")
    import diffusers

    pipe_cls = getattr(diffusers, PIPELINES[arch])
    layout = load_layout(arch)
    built = full_scale_file(arch, fmt, layout)
    ref = parse(built.state_dict, fmt, arch, layout)
    if ref.unknown_keys:
        raise RuntimeError(f"reference cannot place {ref.unknown_keys[:3]}")
    kwargs = {}
    if arch == "sdxl":
        kwargs["unet_config"] = types.SimpleNamespace(**layout["unet"].config)
    if accepts(pipe_cls.lora_state_dict, "return_alphas"):
        kwargs["return_alphas"] = True  # as load_lora_weights calls it
    with compat.library_call(names=built.stems()) as msgs:
        converted_sd, alphas = unpack(pipe_cls.lora_state_dict(dict(built.state_dict), **kwargs))
    converted = read_converted(converted_sd, alphas, inputs=set(built.state_dict))
    if converted.unconverted:
        compat.detail(unconverted=converted.unconverted[:10])
    judge_view(compat, ref, converted, DENOISER[arch], fmt.startswith("peft_"), msgs)
