"""A fake downstream app's Flux LoRA converter (no InvokeAI needed), for the self-tests.

It reads PEFT-named (``transformer.<module>.lora_A/B.weight``) and kohya-named files the
way an app like InvokeAI does - into BFL layers, q/k/v(/proj_mlp) concatenated by rows -
with plain torch. Two switches plant the bugs the suite exists for:

* ``PLANT["all_or_none"]``: assert that q, k and v (and proj_mlp) are all present, as
  InvokeAI 5.4.0 did (partial files crash with a bare AssertionError);
* ``PLANT["ignore_alpha"]``: drop kohya alphas (scale 1 instead of alpha / rank).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.inputs.checkpoints.lora.formats import FORMATS, stems_of
from harness.inputs.checkpoints.lora.layouts import flux_groups
from harness.loaders.delta import WeightDelta
from harness.loaders.judge import flux_layout
from harness.loaders.spec import Claim, LoaderSpec

PLANT = {"all_or_none": False, "ignore_alpha": False}

SPEC = LoaderSpec(
    name="fake",
    description="self-test stand-in for an app's Flux LoRA converter",
    distribution="pytest",  # any installed distribution: its version is the "release"
    implementation="tests.loaders.fake_flux_loader:FakeLoader",
    naming="bfl",
    claims=(
        Claim("0", "flux", {"peft": ("transformer",), "kohya": ("transformer", "text_encoder")}),
    ),
)

ROLES = {
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    ".lora_down.weight": "down",
    ".lora_up.weight": "up",
    ".alpha": "alpha",
}


class FakeLoader:
    version = "1.0"

    def detect(self, state_dict: Mapping[str, Any]) -> str | None:
        if all(k.startswith("transformer.") for k in state_dict):
            return "peft"
        if all(k.startswith("lora_") for k in state_dict):
            return "kohya"
        return None

    def convert(self, state_dict: Mapping[str, Any], alpha: float | None = None) -> Any:
        fmt = self.detect(state_dict)
        if fmt is None:
            raise ValueError("not a Flux LoRA")
        table = stems_of(FORMATS[fmt], "flux", flux_layout())
        pairs: dict[str, dict[str, Any]] = {}
        for key, value in state_dict.items():
            stem, role = next(
                ((key[: -len(s)], r) for s, r in ROLES.items() if key.endswith(s)), (key, "")
            )
            if stem not in table:
                raise ValueError(f"unknown LoRA key {key!r}")
            pairs.setdefault(stem, {})[role] = value
        return self._layers({table[stem]: roles for stem, roles in pairs.items()})

    def deltas(self, converted: Any) -> dict[str, WeightDelta]:
        return converted  # the app's own result is already a delta per layer

    def _layers(self, by_group: dict[Any, dict[str, Any]]) -> dict[str, WeightDelta]:
        """The app's conversion (planted bugs live here, inside the library call)."""
        out: dict[str, WeightDelta] = {}
        fused = {p: g for g in flux_groups(flux_layout()["transformer"]) for p in g.parts}
        for group, roles in by_group.items():
            down, up = roles["down"], roles["up"]
            alpha = roles.get("alpha")
            scale = 1.0
            if alpha is not None and not PLANT["ignore_alpha"]:
                scale = float(alpha) / down.shape[0]
            part = group.parts[0]
            if group.component == "transformer" and not group.fused and part in fused:
                bfl = fused[part]  # a diffusers module inside a fused BFL layer
                name = f"transformer.{bfl.native}"
                if name not in out:
                    present = [p for p in bfl.parts if any(p in g.parts for g in by_group)]
                    if PLANT["all_or_none"]:
                        assert len(present) == len(bfl.parts)
                    out[name] = WeightDelta(bfl.out_features, bfl.in_features)
                out[name].add(bfl.row_slices()[part].start, up, down, scale)
                continue
            name = f"{group.component}.{group.native}"
            delta = WeightDelta(group.out_features, group.in_features)
            delta.add(0, up, down, scale)
            out[name] = delta
        return out
