"""diffusers as a loader under test: the conversion step of today's path.

``load_lora_weights`` first calls the pipeline class's ``lora_state_dict`` (format
detection and conversion to diffusers/PEFT names, kohya alphas folded into the weights),
then lets peft inject the result. This adapter runs that first step -
``FluxLoraLoaderMixin.lora_state_dict`` - and reads the converted ``lora_A`` / ``lora_B``
pairs as deltas in diffusers naming; the injection and everything after it is what
``suites/lora`` checks through a real pipeline, so it is not repeated here.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from harness.drivers.probe import accepts
from harness.loaders.delta import WeightDelta

SUFFIXES = {".lora_A.weight": "down", ".lora_B.weight": "up", ".alpha": "alpha"}


class DiffusersLoader:
    def __init__(self) -> None:
        from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

        self.version = metadata.version("diffusers")
        self.mixin = FluxLoraLoaderMixin

    def detect(self, state_dict: Mapping[str, Any]) -> str | None:
        return None  # diffusers converts by key patterns inside lora_state_dict

    def convert(self, state_dict: Mapping[str, Any], alpha: float | None = None) -> Any:
        if accepts(self.mixin.lora_state_dict, "return_alphas"):
            return self.mixin.lora_state_dict(state_dict, return_alphas=True)
        return self.mixin.lora_state_dict(state_dict)

    def deltas(self, converted: Any) -> dict[str, WeightDelta]:
        state_dict, alphas = converted if isinstance(converted, tuple) else (converted, {})
        roles: dict[str, dict[str, Any]] = {}
        for key, value in {**state_dict, **(alphas or {})}.items():
            for suffix, role in SUFFIXES.items():
                if key.endswith(suffix):
                    roles.setdefault(key[: -len(suffix)], {})[role] = value
        out = {}
        for module, parts in roles.items():
            down, up = parts["down"], parts["up"]
            rank = down.shape[0]
            scale = float(parts["alpha"]) / rank if "alpha" in parts else 1.0
            delta = WeightDelta(up.shape[0], down.reshape(rank, -1).shape[1], dtype=up.dtype)
            delta.add(0, up, down, scale)
            out[module] = delta
        return out


def make_loader() -> DiffusersLoader:
    return DiffusersLoader()
