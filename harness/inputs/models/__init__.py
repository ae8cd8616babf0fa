"""The tiny pipeline zoo: offline, deterministic, few-layer diffusers pipelines and encoders.

Why tiny and local: no machine of the matrix reaches the hub, and every suite needs a
pipeline per architecture in every cell within a second or two. Real widths only where a
converter hard-codes them (those checks build their own models).

This module stays import-light (no torch / diffusers at import time) so the outer tool can
read the name tables; ``run_step`` and ``Zoo`` are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: Zoo pipeline name -> diffusers pipeline class name. Which diffusers version first has a
#: class is *probed* (``hasattr(diffusers, name)``), never hard-coded.
PIPELINES: dict[str, str] = {
    "sd15": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
}

#: Zoo encoder name -> transformers model class name (IP-Adapter image encoders).
ENCODERS: dict[str, str] = {
    "clip-vision-1024": "CLIPVisionModelWithProjection",
    "clip-vision-1280": "CLIPVisionModelWithProjection",
    "siglip": "SiglipVisionModel",
}

if TYPE_CHECKING:
    from harness.inputs.models.run import run_step
    from harness.inputs.models.zoo import Zoo

__all__ = ["ENCODERS", "PIPELINES", "Zoo", "pipeline_exists", "run_step"]


def pipeline_exists(name: str) -> bool:
    """Whether the installed diffusers has the pipeline class behind zoo name ``name``."""
    import diffusers

    return hasattr(diffusers, PIPELINES[name])


def __getattr__(attr: str) -> Any:
    """Lazy exports: importing the tables must not import torch."""
    if attr == "run_step":
        from harness.inputs.models.run import run_step

        return run_step
    if attr == "Zoo":
        from harness.inputs.models.zoo import Zoo

        return Zoo
    raise AttributeError(f"module 'harness.inputs.models' has no attribute {attr!r}")
