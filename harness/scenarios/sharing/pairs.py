"""Two pipelines sharing modules, built from the tiny zoo.

Pairs, as data (``PAIRS``):

* ``refiner``: an SDXL base (``zoo.get("sdxl")``) and an SDXL refiner
  (``StableDiffusionXLImg2ImgPipeline`` with no first text encoder, its own UNet built from
  the zoo's SDXL UNet config with the refiner's changes: ``cross_attention_dim`` = the
  second encoder's width, ``requires_aesthetics_score`` so the time embedding takes 5
  numbers instead of 6) sharing the *objects* ``vae``, ``text_encoder_2`` and
  ``tokenizer_2``, as in diffusers' documented base + refiner recipe;
* ``<arch>-components``: a txt2img pipeline and ``Img2ImgPipeline(**txt2img.components)``
  (every module shared; works in every version);
* ``<arch>-from_pipe``: the same made with ``Img2ImgPipeline.from_pipe(txt2img)``
  (``DiffusionPipeline.from_pipe`` exists from diffusers 0.28; UNSUPPORTED before).

The zoo lacks a refiner, so it is built here (``build_refiner_unet``) with the zoo's own
builder (seeded, so identical in every process and cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.cell.classify import Unsupported
from harness.inputs.models.build import build_component, filter_kwargs, resolve, seed_for
from harness.inputs.models.specs import PIPELINE_SPECS, Component

#: Refiner UNet = the zoo's SDXL UNet with these config changes (SDXL refiner 1.0 facts:
#: cross-attention on text_encoder_2 only, aesthetic score instead of the target size).
REFINER_UNET_CHANGES: dict[str, Any] = {
    "cross_attention_dim": 32,  # text_encoder_2 hidden width (the zoo's CLIP is 32 wide)
    "projection_class_embeddings_input_dim": 5 * 8 + 32,  # 5 time ids * 8 + pooled width
}

#: Image-to-image counterpart of each zoo text-to-image pipeline.
IMG2IMG: dict[str, str] = {
    "sd15": "StableDiffusionImg2ImgPipeline",
    "sdxl": "StableDiffusionXLImg2ImgPipeline",
}

#: Components the refiner takes from the base (the same objects).
REFINER_SHARED = ("vae", "text_encoder_2", "tokenizer_2")


@dataclass(frozen=True)
class PairSpec:
    """How the second pipeline of a pair is made from the first."""

    name: str
    arch: str  # zoo pipeline of the first member
    how: str  # "refiner" | "components" | "from_pipe"


PAIRS: dict[str, PairSpec] = {
    p.name: p
    for p in (
        PairSpec("refiner", "sdxl", "refiner"),
        PairSpec("sd15-components", "sd15", "components"),
        PairSpec("sd15-from_pipe", "sd15", "from_pipe"),
        PairSpec("sdxl-components", "sdxl", "components"),
        PairSpec("sdxl-from_pipe", "sdxl", "from_pipe"),
    )
}


@dataclass
class Pair:
    """Two pipelines; ``shared`` / ``own_b`` name the module components of ``b`` that are
    (are not) the very same object as ``a``'s."""

    spec: PairSpec
    a: Any
    b: Any

    @property
    def shared(self) -> list[str]:
        return [n for n, m in modules(self.b).items() if m is getattr(self.a, n, None)]

    @property
    def own_b(self) -> list[str]:
        return [n for n, m in modules(self.b).items() if m is not getattr(self.a, n, None)]


def modules(pipe: Any) -> dict[str, torch.nn.Module]:
    """The ``nn.Module`` components of a pipeline (None slots left out)."""
    return {k: v for k, v in pipe.components.items() if isinstance(v, torch.nn.Module)}


def has_from_pipe() -> bool:
    import diffusers

    return callable(getattr(diffusers.DiffusionPipeline, "from_pipe", None))


def build_refiner_unet(zoo: Any) -> torch.nn.Module:
    """The refiner's own UNet: the zoo's SDXL UNet config with ``REFINER_UNET_CHANGES``,
    built and placed like a zoo component (seeded)."""
    base = PIPELINE_SPECS["sdxl"].components["unet"]
    comp = Component(base.library, base.cls, {**base.config, **REFINER_UNET_CHANGES})
    unet = build_component(comp, seed_for("sdxl-refiner", "unet", base=zoo.seed)).obj
    return unet.to(device=zoo.device, dtype=zoo.dtype)


def build_refiner(zoo: Any, base: Any, unet: torch.nn.Module) -> Any:
    """A refiner pipeline around ``unet`` sharing ``REFINER_SHARED`` with ``base``."""
    cls = resolve("diffusers", IMG2IMG["sdxl"])
    parts = {
        "vae": base.vae,
        "text_encoder": None,
        "text_encoder_2": base.text_encoder_2,
        "tokenizer": None,
        "tokenizer_2": base.tokenizer_2,
        "unet": unet,
        "scheduler": type(base.scheduler).from_config(base.scheduler.config),
        "image_encoder": None,
        "feature_extractor": None,
        "requires_aesthetics_score": True,
        "force_zeros_for_empty_prompt": False,
        "add_watermarker": False,
    }
    kwargs, _ = filter_kwargs(cls.__init__, parts)
    pipe = cls(**kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_pair(zoo: Any, name: str, refiner_unet: torch.nn.Module | None = None) -> Pair:
    """A fresh pair (pristine copies from the zoo). Raises Unsupported where the version
    lacks a class or ``from_pipe``. ``refiner_unet``: a pristine refiner UNet to copy."""
    from harness.inputs.models.zoo import deep_copy

    spec = PAIRS[name]
    if spec.how == "from_pipe" and not has_from_pipe():
        import diffusers

        raise Unsupported(
            f"DiffusionPipeline.from_pipe does not exist in diffusers {diffusers.__version__}"
        )
    a = zoo.get(spec.arch)
    if spec.how == "refiner":
        unet = deep_copy(refiner_unet) if refiner_unet is not None else build_refiner_unet(zoo)
        return Pair(spec, a, build_refiner(zoo, a, unet))
    cls = resolve("diffusers", IMG2IMG[spec.arch])
    if spec.how == "components":
        kwargs, _ = filter_kwargs(cls.__init__, a.components)
        b = cls(**kwargs)
    else:
        b = cls.from_pipe(a)
    b.set_progress_bar_config(disable=True)
    return Pair(spec, a, b)


def init_image(size: int = 32, seed: int = 0) -> Any:
    """A seeded RGB image for the img2img member."""
    import numpy as np
    from PIL import Image

    pixels = np.random.RandomState(seed).randint(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def run_member(pipe: Any, seed: int = 0, **kw: Any) -> Any:
    """One seeded step of either member: text-to-image at 32 px, or image-to-image with
    two steps at strength 0.5 (one denoising step; a single step at the default strength
    would run none)."""
    from harness.inputs.models.run import run_step

    if "image" in _params(pipe):
        kw = {"image": init_image(), "num_inference_steps": 2, "strength": 0.5, **kw}
    return run_step(pipe, seed=seed, **kw)


def _params(pipe: Any) -> set[str]:
    from harness.inputs.models.build import accepted_parameters

    return accepted_parameters(type(pipe).__call__)[0]
