"""Real-width layer shapes of a family's denoiser, for converters that hard-code widths.

Some converters split a fused original layer by numbers, not by the model (HunyuanVideo's
single-block ``linear1`` at 3072 rows per part, Lumina2's ``attention.qkv`` at
2304 / 768 / 768): a file written for the tiny model cannot be read by them at all. For
those layouts (:attr:`Layout.real_config`) the denoiser is built from the family's tiny
config overlaid with the published widths, with its parameters on the meta device (no
memory, milliseconds), and only its layer shapes are read: the ``view`` rows compare what
``lora_state_dict`` hands back, never load it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from harness.inputs.checkpoints.lora.layouts import Layer, layout_of
from harness.inputs.families.layouts import Layout
from harness.inputs.families.pipelines import family_classes
from harness.inputs.families.table import FAMILIES
from harness.inputs.models.build import filter_kwargs


@contextlib.contextmanager
def _empty_weights() -> Iterator[None]:
    """Parameters on the meta device, buffers real (rope tables are computed in
    ``__init__``): accelerate's ``init_empty_weights`` where installed, else meta for all."""
    try:
        from accelerate import init_empty_weights
    except ImportError:
        with torch.device("meta"):
            yield
        return
    with init_empty_weights():
        yield


def real_width_layers(layout: Layout) -> tuple[dict[str, Layer], type]:
    """(layer shapes by diffusers path, the family's pipeline class) of the real-width
    denoiser; Unsupported where the release lacks the family."""
    if not layout.real_config:
        raise ValueError(f"{layout.row} has no real-width config")
    family = FAMILIES[layout.family]
    _, pipeline_cls, denoiser_cls = family_classes(family)
    config: dict[str, Any] = {**family.config, **dict(layout.real_config)}
    kwargs, _ = filter_kwargs(denoiser_cls.__init__, config)
    with _empty_weights():
        model = denoiser_cls(**kwargs)
    return layout_of(model).layers, pipeline_cls
