"""Pipelines users derive from a pipeline that holds a LoRA.

After ``pipe.load_lora_weights(...)`` users build an image-to-image pipeline from the same
models instead of loading them twice, in one of three documented ways (``WAYS``):
``AutoPipelineForImage2Image.from_pipe(pipe)``, ``<Img2ImgClass>.from_pipe(pipe)`` and
``<Img2ImgClass>(**pipe.components)``. The derived pipeline *shares* the models, so:

* ``derived_effect`` - it computes with the adapter: every targeted layer acts with
  base + the reference delta (read through the derived pipeline);
* ``derived_unload`` - ``derived.unload_lora_weights()`` gives back the pristine weights in
  *both* pipelines (a derived pipeline holding a copy of the denoiser leaves the original's
  adapter in place: STALE_STATE);
* ``derived_set_adapters`` - ``derived.set_adapters([A], [0.5])`` is what the original
  computes with, and ``pipe.set_adapters([A], [2.0])`` what the derived one does.

The adapter is a denoiser-only diffusers/PEFT file (the format every version with the
pipeline loads; text encoders left out so the transformers-5 text-encoder failures of
0.38-0.40, shown by the formats and lifecycle rows, do not hide the derivation). Where the
derived class, its ``from_pipe`` (0.28) or the Auto mapping entry is absent, the row is
UNSUPPORTED.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from harness.inputs.checkpoints.lora.cases import Case, full_case, realise
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.checkpoints.lora.layouts import DENOISER
from harness.oracles.lora import parse
from harness.protocol.outcomes import Outcome

ARCHES = ("sd15", "sdxl", "sd3", "flux")
#: arch -> the image-to-image pipeline class derived from the zoo's text-to-image one.
IMG2IMG: dict[str, str] = {
    "sd15": "StableDiffusionImg2ImgPipeline",
    "sdxl": "StableDiffusionXLImg2ImgPipeline",
    "sd3": "StableDiffusion3Img2ImgPipeline",
    "flux": "FluxImg2ImgPipeline",
}
#: How users derive it: ``auto`` = AutoPipelineForImage2Image.from_pipe, ``from_pipe`` =
#: the class's own from_pipe, ``components`` = the constructor fed ``pipe.components``.
WAYS = ("auto", "from_pipe", "components")
CASES = [(arch, way) for arch in ARCHES for way in WAYS]
IDS = [f"{arch}-{way}" for arch, way in CASES]
A = "style"


def _adapter(scene) -> tuple[Any, Any]:
    """A denoiser-only diffusers/PEFT file on every targetable layer, and its reference."""
    fmt = FORMATS["peft"]
    case = full_case(fmt, scene.arch, scene.layout, rank=4, alpha=None, seed=21)
    picks = [p for p in case.picks if p.group.component == DENOISER[scene.arch]]
    built = realise(fmt, scene.arch, scene.layout, Case(picks, 0, "float32", 21, 0))
    return built, parse(built.state_dict, fmt, scene.arch, scene.layout)


def _derive_class(compat, arch: str, way: str) -> Any:
    """The class (or Auto class) ``way`` uses; UNSUPPORTED where this version lacks it."""
    import diffusers

    target = getattr(diffusers, IMG2IMG[arch], None)
    compat.require(target is not None, f"{IMG2IMG[arch]} does not exist in this version")
    if way == "auto":
        auto = getattr(diffusers, "AutoPipelineForImage2Image", None)
        compat.require(
            callable(getattr(auto, "from_pipe", None)), "no AutoPipelineForImage2Image.from_pipe"
        )
        from diffusers.pipelines import auto_pipeline

        mapped = {c.__name__ for c in auto_pipeline.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING.values()}
        compat.require(
            IMG2IMG[arch] in mapped, f"AutoPipelineForImage2Image does not map to {IMG2IMG[arch]}"
        )
        return auto
    if way == "from_pipe":
        compat.require(
            callable(getattr(target, "from_pipe", None)), f"{IMG2IMG[arch]} has no from_pipe"
        )
    return target


def derive(compat, cls: Any, pipe: Any, way: str) -> Any:
    """The pipeline derived from ``pipe`` by ``way`` through ``cls`` (a library call)."""
    with compat.library_call():
        if way in ("auto", "from_pipe"):
            return cls.from_pipe(pipe)
        accepted = inspect.signature(cls.__init__).parameters
        components = {k: v for k, v in pipe.components.items() if k in accepted}
        compat.detail(components_not_taken=sorted(set(pipe.components) - set(components)))
        return cls(**components)


def _setup(compat, scene_for, arch: str, way: str) -> tuple[Any, Any, Any, Any]:
    compat.param(arch=arch, derived_by=way, format="peft", scope="denoiser")
    scene = scene_for(arch)
    cls = _derive_class(compat, arch, way)
    built, ref = _adapter(scene)
    pipe = scene.fresh()
    compat.valid_input("a complete denoiser-only diffusers/PEFT file, then a documented derivation")
    with compat.library_call(names=built.stems()):
        pipe.load_lora_weights(dict(built.state_dict), adapter_name=A)
    return scene, pipe, derive(compat, cls, pipe, way), ref


@pytest.mark.parametrize("arch,way", CASES, ids=IDS)
def test_derived_effect(compat, scene_for, arch: str, way: str) -> None:
    """The derived pipeline computes with the adapter loaded into the original."""
    scene, _, derived, ref = _setup(compat, scene_for, arch, way)
    compat.detail(derived_class=type(derived).__name__)
    scene.expect_effect(compat, derived, ref, f"the pipeline derived by {way}", prefix="")


@pytest.mark.parametrize("arch,way", CASES, ids=IDS)
def test_derived_unload(compat, scene_for, arch: str, way: str) -> None:
    """``derived.unload_lora_weights()`` restores the pristine weights in both pipelines."""
    scene, pipe, derived, _ = _setup(compat, scene_for, arch, way)
    compat.require(
        callable(getattr(derived, "unload_lora_weights", None)),
        f"{type(derived).__name__} has no LoRA API in this version",
    )
    with compat.library_call():
        derived.unload_lora_weights()
    left = {name: scene.restore_diff(p) for name, p in (("derived", derived), ("original", pipe))}
    compat.detail(not_restored={k: dict(list(v.items())[:10]) for k, v in left.items() if v})
    stale = [
        f"{name} ({len(diff)} module(s), e.g. {next(iter(diff))})"
        for name, diff in left.items()
        if diff
    ]
    if stale:
        compat.finding(
            Outcome.STALE_STATE,
            "after unload_lora_weights() on the derived pipeline, not pristine: "
            + "; ".join(stale),
        )


@pytest.mark.parametrize("arch,way", CASES, ids=IDS)
def test_derived_set_adapters(compat, scene_for, arch: str, way: str) -> None:
    """Adapter weights set through one pipeline are what the other computes with."""
    scene, pipe, derived, ref = _setup(compat, scene_for, arch, way)
    missing = [p for p in (pipe, derived) if not callable(getattr(p, "set_adapters", None))]
    compat.require(
        not missing, f"{type(missing[0]).__name__} has no set_adapters" if missing else ""
    )
    with compat.library_call():
        derived.set_adapters([A], [0.5])
    scene.expect_effect(
        compat, pipe, ref, "original after derived.set_adapters([A], [0.5])", 0.5, prefix=""
    )
    with compat.library_call():
        pipe.set_adapters([A], [2.0])
    scene.expect_effect(
        compat, derived, ref, "derived after pipe.set_adapters([A], [2.0])", 2.0, prefix=""
    )
