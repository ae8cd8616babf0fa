"""InvokeAI's Flux LoRA converters as a loader under test.

The app reads a Flux LoRA in two steps, mirrored here: its probe decides the format
(``is_state_dict_likely_in_flux_diffusers_format`` -> diffusers, else kohya when
``..._kohya_format`` says so), then the model loader calls that format's converter
(``lora_model_from_flux_diffusers_state_dict(sd, alpha=None)`` - the app passes no alpha -
or ``lora_model_from_flux_kohya_state_dict(sd)``). The converters live in
``invokeai.backend.lora.conversions`` up to 5.4 and ``invokeai.backend.patches.
lora_conversions`` from 5.5.

Where the release's LoRA model loader (the app module that calls the converters) is
importable (recipe ``full``), it is imported first, as the app's process does before it
reads a LoRA: from 6.0 the converter modules are part of an import cycle that only
resolves in that order.

The result's layers are read with plain torch - each ``LoRALayer``'s ``up`` / ``down`` and
its ``scale()`` (alpha / rank, what the app's patcher multiplies by), each
``ConcatenatedLoRALayer``'s sub-layers stacked by rows, each ``MergedLayerPatch``'s
sub-layers at their ``ranges`` - never through the app's own merge. Names come out in BFL naming (``double_blocks.1.img_attn.qkv``) for the
transformer and module paths for CLIP, with InvokeAI's ``lora_transformer-`` /
``lora_clip-`` prefixes turned into components.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from harness.loaders.delta import WeightDelta

#: Where the converters live, newest first: (diffusers module, kohya module).
MODULE_PATHS = (
    (
        "invokeai.backend.patches.lora_conversions.flux_diffusers_lora_conversion_utils",
        "invokeai.backend.patches.lora_conversions.flux_kohya_lora_conversion_utils",
    ),
    (
        "invokeai.backend.lora.conversions.flux_diffusers_lora_conversion_utils",
        "invokeai.backend.lora.conversions.flux_kohya_lora_conversion_utils",
    ),
)
#: InvokeAI's layer-name prefixes -> our components.
PREFIXES = {"lora_transformer-": "transformer", "lora_clip-": "text_encoder"}
#: Imported before the converters when present (the app's own order; see the docstring).
APP_ENTRY = "invokeai.backend.model_manager.load.model_loaders.lora"
#: Rows of the fused Flux layers a ``MergedLayerPatch`` lands in. Its ``ranges`` place
#: each part; a part the file lacks has no range, so the rows past the last range come
#: from the converter's own Flux-dev widths (hidden 3072, MLP 4 x 3072).
MERGED_ROWS = {"qkv": 3 * 3072, "linear1": 3 * 3072 + 4 * 3072}


class InvokeAILoader:
    """One installed InvokeAI release's Flux LoRA path (probe + converter)."""

    def __init__(self) -> None:
        self.version = metadata.version("invokeai")
        _import_app_entry()
        errors = []
        for diffusers_path, kohya_path in MODULE_PATHS:
            try:
                self.diffusers = importlib.import_module(diffusers_path)
                self.kohya = importlib.import_module(kohya_path)
                break
            except ModuleNotFoundError as exc:
                if not (exc.name or "").startswith(diffusers_path.rsplit(".", 2)[0]):
                    raise  # the converter exists but needs something not installed
                errors.append(str(exc))
        else:
            raise ImportError(f"no Flux LoRA converters in invokeai {self.version}: {errors}")

    def detect(self, state_dict: Mapping[str, Any]) -> str | None:
        """The app's own probe order (``LoRACheckpointProbe``)."""
        if self.diffusers.is_state_dict_likely_in_flux_diffusers_format(state_dict):
            return "peft"
        if self.kohya.is_state_dict_likely_in_flux_kohya_format(state_dict):
            return "kohya"
        return None

    def convert(self, state_dict: Mapping[str, Any], alpha: float | None = None) -> Any:
        """Probe + converter, as the app runs them: returns InvokeAI's own model object."""
        fmt = self.detect(state_dict)
        if fmt == "peft":
            model = self.diffusers.lora_model_from_flux_diffusers_state_dict(
                state_dict=state_dict, alpha=alpha
            )
        elif fmt == "kohya":
            model = self.kohya.lora_model_from_flux_kohya_state_dict(state_dict=state_dict)
        else:
            # what the app's probe does with such a file: not a Flux LoRA it can read
            raise ValueError(
                "not recognised as a Flux LoRA by invokeai's probe "
                "(is_state_dict_likely_in_flux_diffusers_format / _kohya_format)"
            )
        return model

    def deltas(self, converted: Any) -> dict[str, WeightDelta]:
        """Read the converted layers (ours: a failure here is a harness error)."""
        return {
            _name(key): layer_delta(layer, MERGED_ROWS.get(key.rsplit(".", 1)[-1]))
            for key, layer in converted.layers.items()
        }


def _import_app_entry() -> None:
    """Import the app's LoRA model loader first, unless the cell lacks its stack
    (``no-deps``: a missing third-party module); anything else it raises is the release's
    import error."""
    try:
        importlib.import_module(APP_ENTRY)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "invokeai":
            raise


def _name(key: str) -> str:
    for prefix, component in PREFIXES.items():
        if key.startswith(prefix):
            return f"{component}.{key[len(prefix) :]}"
    return key


def layer_delta(layer: Any, merged_rows: int | None = None) -> WeightDelta:
    """A layer's effective delta from its factors: ``scale() * up @ down`` per LoRA layer,
    a concatenated layer's sub-layers stacked by rows (times its own scale), a merged
    layer's sub-layers at their ranges in ``merged_rows`` rows (the fused module's)."""
    subs = getattr(layer, "lora_layers", None)
    if subs is not None and hasattr(layer, "ranges"):
        return _merged_delta(subs, layer.ranges, merged_rows)
    if subs is not None:
        if getattr(layer, "concat_axis", 0) != 0:
            raise NotImplementedError(f"concatenation along axis {layer.concat_axis}")
        outer = float(layer.scale())
        out = WeightDelta(
            sum(s.up.shape[0] for s in subs),
            subs[0].down.reshape(subs[0].down.shape[0], -1).shape[1],
        )
        start = 0
        for sub in subs:
            _check_plain(sub)
            out.add(start, sub.up, sub.down, outer * float(sub.scale()))
            start += sub.up.shape[0]
        out.dtype = subs[0].up.dtype
        return out
    _check_plain(layer)
    down = layer.down.reshape(layer.down.shape[0], -1)
    out = WeightDelta(layer.up.shape[0], down.shape[1], dtype=layer.up.dtype)
    out.add(0, layer.up, layer.down, float(layer.scale()))
    return out


def _merged_delta(subs: Any, ranges: Any, merged_rows: int | None) -> WeightDelta:
    """``MergedLayerPatch`` (5.6+): the app zero-fills the module's rows and adds each
    sub-layer's delta at its range (the sub-layers carry their own scale)."""
    ends = [r.end for r in ranges]
    if not subs:
        raise NotImplementedError("a merged layer without sub-layers")
    columns = subs[0].down.reshape(subs[0].down.shape[0], -1).shape[1]
    out = WeightDelta(max([*ends, merged_rows or 0]), columns, dtype=subs[0].up.dtype)
    for sub, span in zip(subs, ranges, strict=True):
        _check_plain(sub)
        if sub.up.shape[0] != span.end - span.start:
            raise ValueError(f"sub-layer of {sub.up.shape[0]} rows in range {span}")
        out.add(span.start, sub.up, sub.down, float(sub.scale()))
    return out


def _check_plain(layer: Any) -> None:
    if not hasattr(layer, "up") or not hasattr(layer, "down"):
        raise NotImplementedError(f"{type(layer).__name__} is not a down/up LoRA layer")
    if getattr(layer, "mid", None) is not None:
        raise NotImplementedError("LoRA layers with a mid (LoCon) tensor")


def make_loader() -> InvokeAILoader:
    return InvokeAILoader()
