"""The detector view at full scale: a synthetic file of each format, with the exact key
layout of a real one (the committed SD1.5 / SDXL / Flux-dev layouts), goes through
``<Pipeline>.lora_state_dict`` (the classmethod every load starts with) and what comes out
must target exactly the reference's modules with the reference's effect.

Real tensors at real widths but rank 1 (so Flux's fused ``linear1``, 3072 x 3 + 12288 rows,
is converted with the widths the converter hard-codes), compared without forming any
full matrix: each module's delta is applied to a few random vectors (a Freivalds check).
Meta tensors are not used: the converters call ``.item()`` on alphas and test the up
matrix for block sparsity, which meta tensors cannot answer.

The formats whose converters hard-code Flux-dev's 19 + 38 blocks (BFL control LoRAs,
fal-kontext) are only checked here: the full file must convert exactly (LoRA pairs, the
widened ``img_in`` down, norm scales), and ``full_scale_partial`` drops one block layer, as
a LoRA that did not train it has: the converter must convert the rest or refuse clearly
(a bare ``KeyError`` is the partial Q/K/V finding). DoRA files: magnitudes must come through.
Where a version passes a file through unconverted (no converter yet), whether the loader
reports the keys it then ignores is asked of a real load into the tiny pipeline.
"""

from __future__ import annotations

import types

import pytest

from harness.drivers.lora import judge_view
from harness.drivers.lora_detector import read_converted, unpack
from harness.drivers.probe import accepts
from harness.inputs.checkpoints.lora.build import Built, Pick, build
from harness.inputs.checkpoints.lora.formats import FORMATS, expressible
from harness.inputs.checkpoints.lora.layouts import DENOISER
from harness.inputs.checkpoints.lora.manifests import load_layout
from harness.inputs.models import PIPELINES, pipeline_exists
from harness.oracles.lora import parse
from harness.protocol.outcomes import Outcome

ARCHES = ("sd15", "sdxl", "sd3", "flux")
CASES = [(arch, name) for name, fmt in FORMATS.items() for arch in ARCHES if fmt.supports(arch)]
IDS = [f"{arch}-{name}" for arch, name in CASES]
#: Rank of the full-scale files (1: cheapest). Control LoRAs are rank 128 in the wild; the
#: BFL control converter chunks the adaLN *down* matrix in two, so rank 1 only shows that
#: it cannot (an unpack error) and hides what it does to a real, even-rank file.
FULL_SCALE_RANK = {"control_bfl": 2, "control": 2}
PARTIAL = [("flux", name) for name, fmt in FORMATS.items() if fmt.full_only]
#: The layer a partial file lacks (a LoRA trained without the image MLP of one block).
PARTIAL_DROP = "double_blocks.1.img_mlp.0"


def full_scale_file(arch: str, fmt: str, layout, alpha_every: int = 2):
    """Every group the format can express, rank 1; alpha on every other group (so both the
    default alpha = rank and an explicit alpha != rank are exercised at full scale)."""
    lora_format = FORMATS[fmt]
    rank = FULL_SCALE_RANK.get(fmt, 1)
    picks = []
    for i, (group, parts) in enumerate(expressible(lora_format, arch, layout)):
        alpha = 0.5 if (lora_format.alpha and i % alpha_every == 0) else None
        picks.append(Pick(group, parts, rank, alpha))
    return build(lora_format, arch, layout, picks, seed=0, up_scale=0.1)


@pytest.mark.parametrize("arch,fmt", CASES, ids=IDS)
def test_detector_full_scale(compat, zoo, arch: str, fmt: str) -> None:
    compat.param(arch=arch, format=fmt)
    compat.require(pipeline_exists(arch), f"{PIPELINES[arch]} does not exist in this version")
    layout = load_layout(arch)
    lora_format = FORMATS[fmt]
    compat.valid_input(f"complete full-size {fmt} file for {arch}")
    built = full_scale_file(arch, fmt, layout)
    extra = ["dora_scale", "lora_magnitude_vector"] if lora_format.magnitude else []
    _view(compat, zoo, arch, fmt, layout, built, names=built.stems() + extra)


@pytest.mark.parametrize("arch,fmt", PARTIAL, ids=[f"{a}-{f}" for a, f in PARTIAL])
def test_full_scale_partial(compat, zoo, arch: str, fmt: str) -> None:
    """A full-size BFL-layout file without one block layer: converted exactly, or refused
    with a message naming the layer."""
    compat.param(arch=arch, format=fmt)
    compat.expect(Outcome.OK, Outcome.CLEAR_ERROR)
    compat.require(pipeline_exists(arch), f"{PIPELINES[arch]} does not exist in this version")
    layout = load_layout(arch)
    built = full_scale_file(arch, fmt, layout)
    stem = FORMATS[fmt].stem(arch, _group(fmt, arch, layout, PARTIAL_DROP), layout)
    built.state_dict = {k: v for k, v in built.state_dict.items() if not k.startswith(stem + ".")}
    compat.detail(dropped_layer=stem)
    _view(compat, zoo, arch, fmt, layout, built, names=[stem, PARTIAL_DROP])


def _group(fmt: str, arch: str, layout, native: str):
    for group, _ in expressible(FORMATS[fmt], arch, layout):
        if group.native == native:
            return group
    raise RuntimeError(f"{fmt} cannot express {native}")


def _view(compat, zoo, arch: str, fmt: str, layout, built: Built, names=None) -> None:
    import diffusers

    pipe_cls = getattr(diffusers, PIPELINES[arch])
    ref = parse(built.state_dict, fmt, arch, layout)
    if ref.unknown_keys:
        raise RuntimeError(f"reference cannot place {ref.unknown_keys[:3]}")
    kwargs = {}
    if arch == "sdxl":
        kwargs["unet_config"] = types.SimpleNamespace(**layout["unet"].config)
    if accepts(pipe_cls.lora_state_dict, "return_alphas"):
        kwargs["return_alphas"] = True  # as load_lora_weights calls it
    with compat.library_call(names=names or built.stems()) as msgs:
        converted_sd, alphas = unpack(pipe_cls.lora_state_dict(dict(built.state_dict), **kwargs))
    converted = read_converted(converted_sd, alphas, inputs=set(built.state_dict))
    if converted.unconverted:
        compat.detail(unconverted=converted.unconverted[:10])
    msgs = list(msgs)
    scope: list[str] = []
    if FORMATS[fmt].full_only and not any(c for c, _ in converted.pairs):
        load_msgs, scope = _load_messages(compat, zoo, arch, built)
        msgs += load_msgs
    judge_view(compat, ref, converted, DENOISER[arch], fmt.startswith("peft_"), msgs, scope=scope)


def _load_messages(compat, zoo, arch: str, built: Built) -> tuple[list[str], list[str]]:
    """Nothing was converted to a component: the loader's prefix filter will drop the
    file. Does the real load say so? Its warnings count as the report, also a generic
    "no LoRA keys ... FluxTransformer2DModel" one (returned: the scope that names it)."""
    pipe = zoo.get(arch)
    with compat.library_call(names=built.stems()) as msgs:
        pipe.load_lora_weights(dict(built.state_dict), adapter_name="full")
    compat.detail(load_messages=[m[:200] for m in msgs][:5])
    denoiser = DENOISER[arch]
    return list(msgs), [f"'{denoiser}'", type(getattr(pipe, denoiser)).__name__]
