"""Planted bugs: each LoRA check family must turn red when diffusers misbehaves the way the
check exists to catch, and stay green on the unpatched library (a check that cannot be shown to fail is not a check).

Runs the real suite checks in-process (``pytest.main`` on suites/lora with ``-k``) against a
monkeypatched diffusers (the newest cell's), then reads the verdicts from the records:

a. an all-or-none Q/K/V assertion in Flux's LoRA conversion (InvokeAI's partial Q/K/V crash)
b. a converter that silently drops a key
c. alpha ignored in the scaling
d. a loader that pops from the caller's dict
e. an unfuse that skips a module
f. a DoRA load that silently drops the magnitude vectors (plain LoRA applied)
g. a Flux Control LoRA load that skips widening ``x_embedder``
h. a Flux Control LoRA load that skips the norm scales
i. a clean, well-worded ValueError refusing a complete kohya SD1.5 file (REFUSED: a clear
   error on valid input is never a pass)
m. the model-level ``UNet2DConditionModel.disable_lora`` that leaves the adapter active
l. the converter drops one attention pair of a complete file and only warns generically
   ("No LoRA keys associated to FluxTransformer2DModel found ...", naming no key): a
   warned drop of valid input is DROPPED_KEYS, never a pass
k. ``fuse_lora`` that ignores ``lora_scale`` (fuses at full strength)
j. ``delete_adapters`` that leaves the name registered in the UNet's ``peft_config``, so a
   later load under the freed name is refused (reusing a deleted name is valid)

The hypothesis checks are narrowed to the transformer blocks (``ADAPTER_COMPAT_LORA_FOCUS``)
so the unpatched run is green in every cell that has these loaders (0.42's global-layer
drop and text-encoder-MLP rejection are real findings, shown by the suite, not here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "suites" / "lora"
BLOCKS = r"^transformer\.(double|single)_blocks\."

CHECKS = {
    "qkv": (
        "test_formats.py",
        "test_load and flux-peft-partial and not alpha and not bare and not base_model",
    ),
    "drop": ("test_formats.py", "test_load and flux-kohya-complete"),
    "alpha": ("test_formats.py", "test_load and flux-kohya-complete"),
    "refuse": ("test_formats.py", "test_load and sd15-kohya-complete"),
    "reuse": ("test_lifecycle.py", "test_name_reuse and sd15-after-delete"),
    "fusescale": ("test_lifecycle.py", "test_fuse_lora_scale and sd15 and not denoiser"),
    "modeldisable": ("test_lifecycle.py", "test_model_level and sd15-disable_enable"),
    "mutate": (
        "test_formats.py",
        "test_load_does_not_mutate_input and flux-peft and not alpha and not bare and not base_model",
    ),
    "unfuse": ("test_lifecycle.py", "test_fuse_unfuse and flux"),
    "dora": ("test_dora.py", "test_dora_load_matches_reference and flux-peft_dora"),
    "control": ("test_control.py", "test_control_load"),
}


#: Checks of other architectures than Flux: no focus on the transformer blocks.
UNFOCUSED = ("refuse", "reuse", "fusescale", "modeldisable")


def run_check(tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run one suite check in this process; returns its records."""
    if key not in UNFOCUSED:
        monkeypatch.setenv("ADAPTER_COMPAT_LORA_FOCUS", BLOCKS)
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "default")
    _pin_hypothesis_profile()
    module, expr = CHECKS[key]
    return run_checks(LORA / module, expr, tmp_path / f"{key}.jsonl")


def _pin_hypothesis_profile() -> None:
    """12 derandomized examples, as suites/conftest.py's "default" profile, whether or not
    an earlier in-process run already imported that conftest with another profile."""
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "lora-selftest",
        max_examples=12,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    settings.load_profile("lora-selftest")


def verdicts(records: list[dict]) -> dict[str, str]:
    return {r["check_id"]: f"{r['verdict']}:{r['observed']}" for r in records}


# ----------------------------------------------------------------------------- plants
def plant_qkv_all_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """InvokeAI's converter asserted that a block has all of q/k/v or none of them."""
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.FluxLoraLoaderMixin.lora_state_dict.__func__

    def lora_state_dict(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        blocks: dict[str, set[str]] = {}
        for key in sd:
            m = re.match(r"(transformer\..*blocks\.\d+)\.attn\.(to_q|to_k|to_v)\.", key)
            if m:
                blocks.setdefault(m.group(1), set()).add(m.group(2))
        for found in blocks.values():
            assert len(found) in (0, 3), "q, k and v must all be present"
        return out

    monkeypatch.setattr(
        lora_pipeline.FluxLoraLoaderMixin, "lora_state_dict", classmethod(lora_state_dict)
    )


def _wrap_kohya(monkeypatch: pytest.MonkeyPatch, before=None, after=None) -> None:
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline._convert_kohya_flux_lora_to_diffusers

    def convert(state_dict):
        if before:
            state_dict = before(state_dict)
        out = original(state_dict)
        return after(out) if after else out

    monkeypatch.setattr(lora_pipeline, "_convert_kohya_flux_lora_to_diffusers", convert)


def plant_silent_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The converter loses one attention pair (as a key renamed so that it no longer
    matches would) and says nothing; it keeps at least one pair, so the load succeeds."""

    def drop_one(out: dict) -> dict:
        stems = sorted({k.rsplit(".lora_", 1)[0] for k in out if ".lora_A." in k})
        victims = [s for s in stems if ".attn." in s and bool(out[s + ".lora_B.weight"].any())]
        if not victims or len(stems) < 2:
            return out
        return {k: v for k, v in out.items() if not k.startswith(victims[0] + ".")}

    _wrap_kohya(monkeypatch, after=drop_one)


def plant_generic_warning_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the silent drop, plus the generic warning diffusers prints for a component it
    found nothing for (it names the class, no key of the file)."""
    from diffusers.utils import logging as dlogging

    logger = dlogging.get_logger("diffusers.loaders.lora_base")

    def drop_one(out: dict) -> dict:
        stems = sorted({k.rsplit(".lora_", 1)[0] for k in out if ".lora_A." in k})
        victims = [s for s in stems if ".attn." in s and bool(out[s + ".lora_B.weight"].any())]
        if not victims or len(stems) < 2:
            return out
        logger.warning(
            "No LoRA keys associated to FluxTransformer2DModel found with the "
            "prefix='transformer'. This is safe to ignore if LoRA state dict didn't "
            "originally have any FluxTransformer2DModel related params."
        )
        return {k: v for k, v in out.items() if not k.startswith(victims[0] + ".")}

    _wrap_kohya(monkeypatch, after=drop_one)


def plant_alpha_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The converter throws the alphas away (scale 1 instead of alpha / rank)."""
    _wrap_kohya(
        monkeypatch, before=lambda sd: {k: v for k, v in sd.items() if not k.endswith(".alpha")}
    )


def plant_pop_from_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_lora_weights pops a key from the dict the caller passed."""
    cls = diffusers.FluxPipeline
    original = cls.load_lora_weights

    def load_lora_weights(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, dict) and state_dict:
            copy = dict(state_dict)
            state_dict.pop(next(iter(state_dict)))
            return original(self, copy, *args, **kwargs)
        return original(self, state_dict, *args, **kwargs)

    monkeypatch.setattr(cls, "load_lora_weights", load_lora_weights)


def plant_unfuse_skips_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """unfuse_lora leaves the first fused layer of the transformer fused."""
    cls = diffusers.FluxPipeline
    original = cls.unfuse_lora

    def unfuse_lora(self, *args, **kwargs):
        for module in self.transformer.modules():
            if getattr(module, "merged_adapters", None):
                module.merged_adapters = []
                break
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "unfuse_lora", unfuse_lora)


def plant_dora_magnitude_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flux's lora_state_dict loses the ``lora_magnitude_vector`` keys without a word, so
    the adapter is built as a plain LoRA."""
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.FluxLoraLoaderMixin.lora_state_dict.__func__

    def lora_state_dict(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        for key in [k for k in sd if "lora_magnitude_vector" in k]:
            del sd[key]
        return out

    monkeypatch.setattr(
        lora_pipeline.FluxLoraLoaderMixin, "lora_state_dict", classmethod(lora_state_dict)
    )


def plant_control_no_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader no longer widens the transformer's input layer for a control LoRA."""
    from diffusers.loaders import lora_pipeline

    monkeypatch.setattr(
        lora_pipeline.FluxLoraLoaderMixin,
        "_maybe_expand_transformer_param_shape_or_error_",
        classmethod(lambda cls, *args, **kwargs: False),
    )


def plant_control_no_norms(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader sorts out the norm scales but never writes them into the transformer."""
    from diffusers.loaders import lora_pipeline

    monkeypatch.setattr(
        lora_pipeline.FluxLoraLoaderMixin,
        "_load_norm_into_transformer",
        classmethod(lambda cls, *args, **kwargs: {}),
    )


def plant_refuse_complete_kohya(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release drops kohya support for SD1.5 with a clean, well-worded ValueError that
    even names the file's first key: clear, but a complete valid file refused."""
    cls = diffusers.StableDiffusionPipeline
    original = cls.load_lora_weights

    def load_lora_weights(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, dict):
            kohya = [k for k in state_dict if k.startswith("lora_unet_")]
            if kohya:
                raise ValueError(f"kohya-style LoRA keys are no longer supported: {kohya[0]}")
        return original(self, state_dict, *args, **kwargs)

    monkeypatch.setattr(cls, "load_lora_weights", load_lora_weights)


def plant_name_left_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """delete_adapters removes the layers but leaves the name in the UNet's peft_config."""
    cls = diffusers.StableDiffusionPipeline
    original = cls.delete_adapters

    def delete_adapters(self, adapter_names, *args, **kwargs):
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        kept = {n: self.unet.peft_config[n] for n in names if n in self.unet.peft_config}
        out = original(self, adapter_names, *args, **kwargs)
        self.unet.peft_config.update(kept)
        return out

    monkeypatch.setattr(cls, "delete_adapters", delete_adapters)


def plant_fuse_ignores_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """fuse_lora drops its lora_scale and fuses at full strength."""
    cls = diffusers.StableDiffusionPipeline
    original = cls.fuse_lora

    def fuse_lora(self, *args, lora_scale: float = 1.0, **kwargs):
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "fuse_lora", fuse_lora)


def plant_model_disable_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The UNet's own disable_lora returns without disabling anything."""
    monkeypatch.setattr(diffusers.UNet2DConditionModel, "disable_lora", lambda self: None)


PLANTS = {
    "qkv": (plant_qkv_all_or_none, {"CRASH"}),
    "drop": (plant_silent_drop, {"DROPPED_KEYS"}),
    "drop-generic": (plant_generic_warning_drop, {"DROPPED_KEYS"}),
    "alpha": (plant_alpha_ignored, {"WRONG_RESULT"}),
    "mutate": (plant_pop_from_caller, {"INPUT_MUTATED"}),
    "unfuse": (plant_unfuse_skips_module, {"STALE_STATE"}),
    "dora": (plant_dora_magnitude_dropped, {"SILENT_NOOP"}),
    # a complete control file the loader can no longer place: refused (clearly or not) or a crash
    "control-expand": (plant_control_no_expansion, {"REFUSED", "CRASH"}),
    "control-norms": (plant_control_no_norms, {"DROPPED_KEYS"}),
    "refuse": (plant_refuse_complete_kohya, {"REFUSED"}),
    # the second load fails on the stale name: refused (clearly or not), never a pass
    "reuse": (plant_name_left_registered, {"REFUSED", "UNCLEAR", "CRASH"}),
    "fusescale": (plant_fuse_ignores_scale, {"WRONG_RESULT"}),
    "modeldisable": (plant_model_disable_noop, {"WRONG_RESULT", "STALE_STATE"}),
}


@pytest.fixture(scope="module")
def flux_available() -> None:
    if not hasattr(diffusers, "FluxPipeline"):
        pytest.skip("this diffusers has no FluxPipeline")


@pytest.mark.parametrize(
    "key",
    [
        "qkv",
        "drop",
        "mutate",
        "unfuse",
        "dora",
        "control",
        "refuse",
        "reuse",
        "fusescale",
        "modeldisable",
    ],
)  # "alpha" runs the "drop" check
def test_unpatched_library_passes(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flux_available: None
) -> None:
    records = run_check(tmp_path, key, monkeypatch)
    assert all(r["verdict"] == "pass" for r in records), json.dumps(verdicts(records), indent=1)


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_bug_turns_check_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flux_available: None
) -> None:
    plant, outcomes = PLANTS[key]
    plant(monkeypatch)
    records = run_check(tmp_path, key.split("-")[0], monkeypatch)
    assert all(r["verdict"] == "regression" for r in records), json.dumps(
        verdicts(records), indent=1
    )
    assert {r["observed"] for r in records} <= outcomes, json.dumps(verdicts(records), indent=1)


def test_generic_warning_does_not_excuse_a_drop_of_valid_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flux_available: None
) -> None:
    """The drop is caught *as a warned drop*: the warning was seen and did not count."""
    plant_generic_warning_drop(monkeypatch)
    records = run_check(tmp_path, "drop", monkeypatch)
    messages = " ".join(r.get("message") or "" for r in records)
    assert "the only warning names none of them" in messages, json.dumps(verdicts(records))
