"""Planted bugs for the adapter-API reach rows (suites/shared/test_model_api.py,
test_attn_procs.py, suites/ip_adapter/test_modular.py): each flips its row to
"regression", and the unpatched library (the newest cell's) passes.

Planted in the installed diffusers, in this process:

a. ``add_adapter`` that forgets one of the config's target modules
b. ``set_adapter`` that leaves the previously active adapter on
c. ``active_adapters`` that names every added adapter, active or not (a stale name)
d. ``disable_adapters`` that leaves the LoRA active
e. ``get_active_adapters`` that names every loaded adapter, whatever ``set_adapters`` chose
f. ``unfuse_lora`` that leaves ``fused_loras`` / ``num_fused_loras`` as they were
l. ``unscale_lora_layers`` that does nothing: ``cross_attention_kwargs={"scale": s}``
   outlives the call
g. ``save_attn_procs`` that drops one layer's trained projection
h. ``load_attn_procs`` that returns without loading an attention-processor LoRA (the
   0.26-0.27 behaviour) where the newest release refuses it clearly
i. the modular ``set_ip_adapter_scale`` that treats a per-block dict as scale 1 everywhere
j. the modular ``unload_ip_adapter`` that forgets the image projection
k. an IP-Adapter weight load that skips one processor's ``to_k_ip`` / ``to_v_ip``

Two rows are red on the unpatched 0.42.1 because of the library (suites/shared/README.md
explains them): the model-level ``fuse_lora(lora_scale) -> unfuse_lora`` (the scaling is
never undone) and ``load_attn_procs`` of a Custom Diffusion file (processors are only set
when the private ``_pipeline`` is passed, diffusers#9320). For those, the self-test shows
the verdict is the library's: the planted *fix* turns them green, and a bug planted on top
of the fix turns them red again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "suites" / "shared"
IPA = ROOT / "suites" / "ip_adapter"

CHECKS: dict[str, tuple[Path, str]] = {
    "add": (SHARED / "test_model_api.py", "test_add_adapter and sd15"),
    "set": (SHARED / "test_model_api.py", "test_set_adapter and sd15"),
    "active": (SHARED / "test_model_api.py", "test_active_adapters and sd15"),
    "disable": (SHARED / "test_model_api.py", "test_disable_enable_adapters and sd15"),
    "getactive": (SHARED / "test_model_api.py", "test_get_active_adapters and sd15"),
    "fused": (SHARED / "test_model_api.py", "test_fused_loras and sd15"),
    "callscale": (SHARED / "test_model_api.py", "test_attention_kwargs_scale and sd15"),
    "modelfuse": (SHARED / "test_model_api.py", "test_model_fuse_unfuse and sd15"),
    "cdsave": (SHARED / "test_attn_procs.py", "test_custom_diffusion_save and sd15"),
    "cdload": (SHARED / "test_attn_procs.py", "test_custom_diffusion_load and sd15-bin"),
    "procslora": (SHARED / "test_attn_procs.py", "test_attn_procs_lora and sd15"),
    "mload": (IPA / "test_modular.py", "test_modular_load"),
    "mscale": (IPA / "test_modular.py", "test_modular_scale"),
    "munload": (IPA / "test_modular.py", "test_modular_unload"),
}

#: Rows red on the unpatched newest release because of the library: their observed class.
LIBRARY_RED = {"modelfuse": "STALE_STATE", "cdload": "SILENT_NOOP"}


def run(tmp_path: Path, key: str, tag: str = "") -> list[dict]:
    target, expr = CHECKS[key]
    return run_checks(target, expr, tmp_path / f"{key}{tag}.jsonl")


def verdicts(records: list[dict]) -> str:
    return json.dumps({r["check_id"]: f"{r['verdict']}:{r['observed']}" for r in records})


# -- plants ------------------------------------------------------------------------------
def _peft_mixin() -> Any:
    from diffusers.loaders.peft import PeftAdapterMixin

    return PeftAdapterMixin


def plant_add_forgets_target(mp: pytest.MonkeyPatch) -> None:
    mixin = _peft_mixin()
    original = mixin.add_adapter

    def add_adapter(self: Any, adapter_config: Any, adapter_name: str = "default") -> None:
        adapter_config.target_modules = set(sorted(adapter_config.target_modules)[:-1])
        original(self, adapter_config, adapter_name)

    mp.setattr(mixin, "add_adapter", add_adapter)


def plant_set_keeps_previous(mp: pytest.MonkeyPatch) -> None:
    mixin = _peft_mixin()
    original = mixin.set_adapter

    def set_adapter(self: Any, adapter_name: Any) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        before = self.active_adapters()
        before = [before] if isinstance(before, str) else list(before or [])
        original(self, sorted(set(before) | set(names)))

    mp.setattr(mixin, "set_adapter", set_adapter)


def plant_active_stale(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(_peft_mixin(), "active_adapters", lambda self: list(self.peft_config))


def plant_disable_noop(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(_peft_mixin(), "disable_adapters", lambda self: None)


def plant_get_active_stale(mp: pytest.MonkeyPatch) -> None:
    from diffusers.loaders.lora_base import LoraBaseMixin

    def get_active_adapters(self: Any) -> list[str]:
        model = getattr(self, "unet", None) or self.transformer
        return list(model.peft_config)

    mp.setattr(LoraBaseMixin, "get_active_adapters", get_active_adapters)


def plant_fused_stale(mp: pytest.MonkeyPatch) -> None:
    from diffusers.loaders.lora_base import LoraBaseMixin

    original = LoraBaseMixin.unfuse_lora

    def unfuse_lora(self: Any, components: Any = None, **kwargs: Any) -> None:
        before = set(self._merged_adapters)
        original(self, components, **kwargs)
        self._merged_adapters = before

    mp.setattr(LoraBaseMixin, "unfuse_lora", unfuse_lora)


def plant_unfuse_unscales(mp: pytest.MonkeyPatch) -> None:
    """The fix: model-level unfuse also divides the fuse's ``lora_scale`` back out."""
    mixin = _peft_mixin()
    original = mixin.unfuse_lora

    def unfuse_lora(self: Any) -> None:
        original(self)
        scale = getattr(self, "lora_scale", 1.0)
        if scale != 1.0:
            from peft.tuners.tuners_utils import BaseTunerLayer

            for module in self.modules():
                if isinstance(module, BaseTunerLayer):
                    module.unscale_layer(scale)
            self.lora_scale = 1.0

    mp.setattr(mixin, "unfuse_lora", unfuse_lora)


def plant_unfuse_skips_module(mp: pytest.MonkeyPatch) -> None:
    """On top of the fix: unfuse leaves the first LoRA layer merged."""
    plant_unfuse_unscales(mp)
    mixin = _peft_mixin()
    fixed = mixin.unfuse_lora

    def unfuse_lora(self: Any) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        first = next(m for m in self.modules() if isinstance(m, BaseTunerLayer))
        saved = first.unmerge
        first.unmerge = lambda *a, **k: None
        try:
            fixed(self)
        finally:
            first.unmerge = saved

    mp.setattr(mixin, "unfuse_lora", unfuse_lora)


def plant_unscale_noop(mp: pytest.MonkeyPatch) -> None:
    """The call's ``scale`` is applied but never taken back (outlives the call)."""
    import diffusers.utils.peft_utils as peft_utils

    mp.setattr(peft_utils, "unscale_lora_layers", lambda model, weight=None: None)


def _unet_mixin() -> Any:
    from diffusers.loaders.unet import UNet2DConditionLoadersMixin

    return UNet2DConditionLoadersMixin


def plant_save_drops_layer(mp: pytest.MonkeyPatch) -> None:
    mixin = _unet_mixin()
    original = mixin._get_custom_diffusion_state_dict

    def state_dict(self: Any) -> dict[str, Any]:
        out = original(self)
        del out[sorted(k for k in out if k.endswith("to_v_custom_diffusion.weight"))[-1]]
        return out

    mp.setattr(mixin, "_get_custom_diffusion_state_dict", state_dict)


class _NoOffloadPipeline:
    """What ``load_attn_procs`` reads of ``_pipeline``: no components, no device map."""

    components: dict[str, Any] = {}
    hf_device_map = None


def plant_load_sets_processors(mp: pytest.MonkeyPatch) -> None:
    """The fix of diffusers#9320: processors set for every caller."""
    mixin = _unet_mixin()
    original = mixin.load_attn_procs

    def load_attn_procs(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("_pipeline", _NoOffloadPipeline())
        original(self, *args, **kwargs)

    mp.setattr(mixin, "load_attn_procs", load_attn_procs)


def plant_load_swaps_kv(mp: pytest.MonkeyPatch) -> None:
    """On top of the fix: the value projection loaded into the key slot and back."""
    plant_load_sets_processors(mp)
    mixin = _unet_mixin()
    original = mixin._process_custom_diffusion

    def process(self: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
        swapped = {}
        for key, value in state_dict.items():
            if "to_k_custom_diffusion" in key:
                key = key.replace("to_k_", "to_v_")
            elif "to_v_custom_diffusion" in key:
                key = key.replace("to_v_", "to_k_")
            swapped[key] = value
        return original(self, swapped)

    mp.setattr(mixin, "_process_custom_diffusion", process)


def plant_attn_procs_lora_silent(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(_unet_mixin(), "load_attn_procs", lambda self, *a, **k: None)


def _modular_mixin() -> Any:
    from diffusers.loaders.ip_adapter import ModularIPAdapterMixin

    return ModularIPAdapterMixin


def plant_modular_scale_ignores_dict(mp: pytest.MonkeyPatch) -> None:
    mixin = _modular_mixin()
    original = mixin.set_ip_adapter_scale

    def set_ip_adapter_scale(self: Any, scale: Any) -> None:
        original(self, 1.0 if isinstance(scale, dict) else scale)

    mp.setattr(mixin, "set_ip_adapter_scale", set_ip_adapter_scale)


def plant_modular_unload_keeps_projection(mp: pytest.MonkeyPatch) -> None:
    mixin = _modular_mixin()
    original = mixin.unload_ip_adapter

    def unload_ip_adapter(self: Any) -> None:
        projection = self.unet.encoder_hid_proj
        original(self)
        self.unet.encoder_hid_proj = projection

    mp.setattr(mixin, "unload_ip_adapter", unload_ip_adapter)


def plant_ip_load_skips_processor(mp: pytest.MonkeyPatch) -> None:
    mixin = _unet_mixin()
    original = mixin._load_ip_adapter_weights

    def load(self: Any, state_dicts: list[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
        original(self, state_dicts, *args, **kwargs)
        for proc in self.attn_processors.values():
            layers = getattr(proc, "to_k_ip", None)
            if layers is not None:  # re-initialise the first processor's IP layers
                for layer in (*layers, *proc.to_v_ip):
                    layer.reset_parameters()
                return

    mp.setattr(mixin, "_load_ip_adapter_weights", load)


PLANTS = {
    "add": (plant_add_forgets_target, {"DROPPED_KEYS"}),
    "set": (plant_set_keeps_previous, {"WRONG_RESULT"}),
    "active": (plant_active_stale, {"STALE_STATE"}),
    "disable": (plant_disable_noop, {"SILENT_NOOP"}),
    "getactive": (plant_get_active_stale, {"STALE_STATE"}),
    "fused": (plant_fused_stale, {"STALE_STATE"}),
    "callscale": (plant_unscale_noop, {"STALE_STATE"}),
    "cdsave": (plant_save_drops_layer, {"DROPPED_KEYS"}),
    "procslora": (plant_attn_procs_lora_silent, {"SILENT_NOOP"}),
    "mscale": (plant_modular_scale_ignores_dict, {"WRONG_RESULT"}),
    "munload": (plant_modular_unload_keeps_projection, {"STALE_STATE"}),
    "mload": (plant_ip_load_skips_processor, {"WRONG_RESULT"}),
}
FIXES = {"modelfuse": plant_unfuse_unscales, "cdload": plant_load_sets_processors}
BUGS_ON_FIX = {
    "modelfuse": (plant_unfuse_skips_module, {"STALE_STATE"}),
    "cdload": (plant_load_swaps_kv, {"WRONG_RESULT"}),
}


def _needs_modular(key: str) -> None:
    if key.startswith("m") and key != "modelfuse" and not hasattr(diffusers, "ComponentSpec"):
        pytest.skip("this diffusers has no modular pipelines")


@pytest.mark.parametrize("key", [k for k in CHECKS if k not in LIBRARY_RED])
def test_unpatched_library_passes(key: str, tmp_path: Path) -> None:
    _needs_modular(key)
    records = run(tmp_path, key)
    assert all(r["verdict"] == "pass" for r in records), verdicts(records)


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_bug_turns_row_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_modular(key)
    plant, outcomes = PLANTS[key]
    plant(monkeypatch)
    records = run(tmp_path, key)
    assert all(r["verdict"] == "regression" for r in records), verdicts(records)
    assert {r["observed"] for r in records} <= outcomes, verdicts(records)


@pytest.mark.parametrize("key", list(LIBRARY_RED))
def test_library_red_rows_are_the_library(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpatched: red with the documented class; with the fix planted: green."""
    records = run(tmp_path, key)
    assert {(r["verdict"], r["observed"]) for r in records} == {("regression", LIBRARY_RED[key])}, (
        verdicts(records)
    )
    FIXES[key](monkeypatch)
    records = run(tmp_path, key, "-fixed")
    assert all(r["verdict"] == "pass" for r in records), verdicts(records)


@pytest.mark.parametrize("key", list(BUGS_ON_FIX))
def test_bug_on_the_fix_turns_row_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, outcomes = BUGS_ON_FIX[key]
    plant(monkeypatch)
    records = run(tmp_path, key)
    assert all(r["verdict"] == "regression" for r in records), verdicts(records)
    assert {r["observed"] for r in records} <= outcomes, verdicts(records)
