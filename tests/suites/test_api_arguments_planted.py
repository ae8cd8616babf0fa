"""Planted bugs for the argument rows of suites/shared/test_api_arguments.py: each flips
its row (sd15) to "regression", and the unpatched library (the newest cell's) passes.

Planted in the installed diffusers, in this process, one per kind of row:

- a valid call that does not do what it says: ``set_adapters`` (pipeline and model) that
  ignores a scalar weight, the folder's weight-name guess that picks nothing, a deprecated
  ``fuse_text_encoder`` keyword that makes ``fuse_lora`` do nothing, ``delete_adapters``
  that iterates a plain string as names;
- an invalid call accepted: an unknown adapter dropped silently by ``set_adapters``, a
  weights list cut to length, ``components=[]`` read as "all", an existing adapter name
  replaced, ``disable_adapters`` with no adapter a no-op, metadata dropped when saving
  without safetensors, ``save_lora_adapter`` of an unknown name saving another adapter;
- a refusal that leaves a change behind: ``set_adapters`` with an unknown name that
  switches the denoiser to the known names before its clear error.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

TARGET = Path(__file__).resolve().parents[2] / "suites" / "shared" / "test_api_arguments.py"

CHECKS: dict[str, str] = {
    "scalar": "test_set_adapters_scalar_weight and sd15",
    "guess": "test_load_folder_guesses_weight_name and sd15",
    "deprecated": "test_deprecated_fuse_keywords and sd15",
    "unknown": "test_set_adapters_unknown_name and sd15",
    "partial": "test_set_adapters_unknown_name and sd15",
    "length": "test_set_adapters_wrong_length and sd15",
    "components": "test_fuse_bad_components and sd15 and empty and fuse_lora and not unfuse",
    "savemeta": "test_save_metadata_without_safetensors and sd15",
    "mscalar": "test_model_set_adapters_scalar_weight and sd15",
    "mlength": "test_model_set_adapters_wrong_length and sd15",
    "existing": "test_model_add_existing_name and sd15",
    "noadapter": "test_model_no_adapter_loaded and sd15 and disable_adapters",
    "mdelete": "test_model_delete_adapters_string and sd15",
    "msave": "test_model_save_unknown_adapter and sd15",
}


def run(tmp_path: Path, key: str) -> list[dict]:
    return run_checks(TARGET, CHECKS[key], tmp_path / f"{key}.jsonl")


def verdicts(records: list[dict]) -> str:
    return json.dumps({r["check_id"]: f"{r['verdict']}:{r['observed']}" for r in records})


def _pipe_mixin() -> Any:
    from diffusers.loaders.lora_base import LoraBaseMixin

    return LoraBaseMixin


def _model_mixin() -> Any:
    from diffusers.loaders.peft import PeftAdapterMixin

    return PeftAdapterMixin


def _wrap(mp: pytest.MonkeyPatch, owner: Any, name: str, make: Any) -> None:
    mp.setattr(owner, name, make(getattr(owner, name)))


# -- valid calls that do not do what they say -----------------------------------------------
def plant_scalar_ignored(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def set_adapters(self: Any, adapter_names: Any, adapter_weights: Any = None) -> None:
            if not isinstance(adapter_weights, list):
                adapter_weights = None
            original(self, adapter_names, adapter_weights)

        return set_adapters

    _wrap(mp, _pipe_mixin(), "set_adapters", make)


def plant_model_scalar_ignored(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def set_adapters(self: Any, adapter_names: Any, weights: Any = None) -> None:
            original(self, adapter_names, weights if isinstance(weights, list) else None)

        return set_adapters

    _wrap(mp, _model_mixin(), "set_adapters", make)


def plant_guess_picks_nothing(mp: pytest.MonkeyPatch) -> None:
    import diffusers.loaders.lora_base as lora_base

    mp.setattr(lora_base, "_best_guess_weight_name", lambda *a, **k: None)


def plant_deprecated_keyword_noop(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def fuse_lora(self: Any, *args: Any, **kwargs: Any) -> None:
            if "fuse_text_encoder" in kwargs:
                return None
            return original(self, *args, **kwargs)

        return fuse_lora

    _wrap(mp, _pipe_mixin(), "fuse_lora", make)


def plant_delete_iterates_string(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def delete_adapters(self: Any, adapter_names: Any) -> None:
            original(self, list(adapter_names))

        return delete_adapters

    _wrap(mp, _model_mixin(), "delete_adapters", make)


# -- invalid calls accepted ---------------------------------------------------------------
def plant_unknown_dropped(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def set_adapters(self: Any, adapter_names: Any, adapter_weights: Any = None) -> None:
            known = {n for names in self.get_list_adapters().values() for n in names}
            original(self, [n for n in adapter_names if n in known], adapter_weights)

        return set_adapters

    _wrap(mp, _pipe_mixin(), "set_adapters", make)


def plant_refusal_after_change(mp: pytest.MonkeyPatch) -> None:
    """The denoiser switched to the known names first, then the clear error: a refusal
    that leaves a half-done change behind."""

    def make(original: Any) -> Any:
        def set_adapters(self: Any, adapter_names: Any, adapter_weights: Any = None) -> None:
            known = {n for names in self.get_list_adapters().values() for n in names}
            self.unet.set_adapters([n for n in adapter_names if n in known])
            original(self, adapter_names, adapter_weights)

        return set_adapters

    _wrap(mp, _pipe_mixin(), "set_adapters", make)


def plant_weights_cut(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def set_adapters(self: Any, adapter_names: Any, adapter_weights: Any = None) -> None:
            if isinstance(adapter_weights, list):
                adapter_weights = adapter_weights[: len(adapter_names)]
            original(self, adapter_names, adapter_weights)

        return set_adapters

    _wrap(mp, _pipe_mixin(), "set_adapters", make)


def plant_model_weights_padded(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def set_adapters(self: Any, adapter_names: Any, weights: Any = None) -> None:
            if isinstance(weights, list):
                weights = (weights * len(adapter_names))[: len(adapter_names)]
            original(self, adapter_names, weights)

        return set_adapters

    _wrap(mp, _model_mixin(), "set_adapters", make)


def plant_empty_components_all(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def fuse_lora(self: Any, components: Any = (), **kwargs: Any) -> None:
            original(self, list(components) or list(self._lora_loadable_modules), **kwargs)

        return fuse_lora

    _wrap(mp, _pipe_mixin(), "fuse_lora", make)


def plant_existing_name_replaced(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def add_adapter(self: Any, adapter_config: Any, adapter_name: str = "default") -> None:
            if adapter_name in getattr(self, "peft_config", {}):
                self.delete_adapters(adapter_name)
            original(self, adapter_config, adapter_name)

        return add_adapter

    _wrap(mp, _model_mixin(), "add_adapter", make)


def plant_disable_without_adapter_noop(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def disable_adapters(self: Any) -> None:
            if self._hf_peft_config_loaded:
                original(self)

        return disable_adapters

    _wrap(mp, _model_mixin(), "disable_adapters", make)


def plant_metadata_dropped(mp: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionPipeline

    original = StableDiffusionPipeline.save_lora_weights  # bound to the class

    @functools.wraps(original.__func__)  # keeps the signature the row probes
    def save_lora_weights(cls: Any, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("safe_serialization", True):
            kwargs.pop("unet_lora_adapter_metadata", None)
        original(*args, **kwargs)

    mp.setattr(StableDiffusionPipeline, "save_lora_weights", classmethod(save_lora_weights))


def plant_save_other_adapter(mp: pytest.MonkeyPatch) -> None:
    def make(original: Any) -> Any:
        def save_lora_adapter(self: Any, save_directory: Any, adapter_name: Any = None, **k: Any):
            if adapter_name not in self.peft_config:
                adapter_name = next(iter(self.peft_config))
            return original(self, save_directory, adapter_name=adapter_name, **k)

        return save_lora_adapter

    _wrap(mp, _model_mixin(), "save_lora_adapter", make)


PLANTS = {
    "scalar": (plant_scalar_ignored, {"WRONG_RESULT"}),
    "mscalar": (plant_model_scalar_ignored, {"WRONG_RESULT"}),
    "guess": (plant_guess_picks_nothing, {"REFUSED", "CRASH"}),
    "deprecated": (plant_deprecated_keyword_noop, {"WRONG_RESULT"}),
    "mdelete": (plant_delete_iterates_string, {"STALE_STATE", "WRONG_RESULT"}),
    "unknown": (plant_unknown_dropped, {"OK"}),
    "partial": (plant_refusal_after_change, {"STALE_STATE"}),
    "length": (plant_weights_cut, {"OK"}),
    "mlength": (plant_model_weights_padded, {"OK"}),
    "components": (plant_empty_components_all, {"OK"}),
    "existing": (plant_existing_name_replaced, {"OK"}),
    "noadapter": (plant_disable_without_adapter_noop, {"OK"}),
    "savemeta": (plant_metadata_dropped, {"OK"}),
    "msave": (plant_save_other_adapter, {"OK"}),
}


@pytest.mark.parametrize("key", list(CHECKS))
def test_unpatched_library_passes(key: str, tmp_path: Path) -> None:
    records = run(tmp_path, key)
    assert all(r["verdict"] == "pass" for r in records), verdicts(records)


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_bug_turns_row_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, outcomes = PLANTS[key]
    plant(monkeypatch)
    records = run(tmp_path, key)
    assert all(r["verdict"] == "regression" for r in records), verdicts(records)
    assert {r["observed"] for r in records} <= outcomes, verdicts(records)
