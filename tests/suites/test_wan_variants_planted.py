"""Planted bugs in what Wan loads beyond text-to-video: the rows built for them must turn
red, while the unpatched library (the newest cell's diffusers) keeps them green.

Runs the real checks of ``suites/families`` in-process against a monkeypatched diffusers
(where the mixins look the converters up, ``diffusers.loaders.lora_pipeline``):

* ``i2v-image-branch``: the original-name Wan converter loses the I2V cross-attention's
  image projections (``cross_attn.k_img`` / ``v_img`` -> ``attn2.add_k_proj`` /
  ``add_v_proj``): the I2V layout's valid rows DROPPED_KEYS, while the I2V musubi file
  and the T2V original file stay green;
* ``transformer_2-ignored``: ``load_lora_weights`` drops ``load_into_transformer_2`` (the
  LoRA lands in the first expert): ``load_into[wan22-transformer_2]`` WRONG_RESULT, the
  default row green;
* ``diff_b-dropped``: the converter loses every ``.diff_b`` it mapped to ``lora_B.bias``:
  the ``with-diff_b`` / ``with-head-diff`` rows DROPPED_KEYS (biases that did not move, no
  word), the complete rows green;
* ``t2v-padding``: the mixin pads a T2V file's image branch with the text key / value
  pairs instead of zeros: both ``t2v_into_i2v`` rows WRONG_RESULT (the image projections
  move), the two-expert default row green.

Norm ``.diff`` keys (``norm_diffs[...]``): every release with the converter drops them
(0.42.1 pops them at ``logger.debug``), so there the unpatched rows with random
differences are red (DROPPED_KEYS, naming the keys) and the all-zero row green. The
self-test plants a release that applies them (the converter hands each norm difference to
the parameter diffusers names it by, ``load_lora_weights`` adds it after the load): both
random rows turn green; the same release losing the ``norm3`` keys (``converter-drops-norm3``)
or swapping ``norm_q`` / ``norm_k`` turns them red again (DROPPED_KEYS / WRONG_RESULT),
the zero row green throughout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS_SUITE = ROOT / "suites" / "families" / "test_layouts.py"
VARIANTS_SUITE = ROOT / "suites" / "families" / "test_wan_variants.py"
WAN_ORIGINAL = "_convert_non_diffusers_wan_lora_to_diffusers"


def verdicts(records: list[dict]) -> dict[str, str]:
    return {r["check_id"].split("::")[-1]: f"{r['verdict']}:{r['observed']}" for r in records}


def _drop_converted(monkeypatch: pytest.MonkeyPatch, *markers: str) -> None:
    """The Wan original-name converter's output less every key containing a marker."""
    from diffusers.loaders import lora_pipeline

    original = getattr(lora_pipeline, WAN_ORIGINAL)

    def converter(state_dict, *args, **kwargs):
        out = original(state_dict, *args, **kwargs)
        return {k: v for k, v in out.items() if not any(m in k for m in markers)}

    monkeypatch.setattr(lora_pipeline, WAN_ORIGINAL, converter)


def plant_drops_image_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    _drop_converted(monkeypatch, ".add_k_proj.", ".add_v_proj.")


def plant_drops_diff_b(monkeypatch: pytest.MonkeyPatch) -> None:
    _drop_converted(monkeypatch, ".lora_B.bias")


def plant_ignores_load_into_transformer_2(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.loaders import lora_pipeline

    mixin = lora_pipeline.WanLoraLoaderMixin
    original = mixin.load_lora_weights

    def load_lora_weights(self, *args, **kwargs):
        kwargs.pop("load_into_transformer_2", None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mixin, "load_lora_weights", load_lora_weights)


def plant_pads_image_branch_with_text_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.loaders import lora_pipeline

    mixin = lora_pipeline.WanLoraLoaderMixin
    original = mixin._maybe_expand_t2v_lora_for_i2v.__func__

    def expand(cls, transformer, state_dict):
        had = set(state_dict)
        out = original(cls, transformer=transformer, state_dict=state_dict)
        for key in set(out) - had:  # the padding: copy attn2.to_k / to_v instead of zeros
            text = key.replace(".add_k_proj.", ".to_k.").replace(".add_v_proj.", ".to_v.")
            out[key] = out[text].clone()
        return out

    monkeypatch.setattr(mixin, "_maybe_expand_t2v_lora_for_i2v", classmethod(expand))


#: plant -> (install, suite, -k of the rows it must turn red, their outcome, -k of rows of
#: the same suite it must leave green).
PLANTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], Path, str, str, str]] = {
    "i2v-image-branch": (
        plant_drops_image_branch,
        LAYOUTS_SUITE,
        "wan-i2v-original-downup and (complete or no-alpha or with-diff_b)",
        "DROPPED_KEYS",
        "wan-i2v-musubi-complete or wan-original-downup-complete",
    ),
    "transformer_2-ignored": (
        plant_ignores_load_into_transformer_2,
        VARIANTS_SUITE,
        "wan22-transformer_2",
        "WRONG_RESULT",
        "wan22-transformer and not transformer_2",
    ),
    "diff_b-dropped": (
        plant_drops_diff_b,
        LAYOUTS_SUITE,
        "with-diff_b or with-head-diff",
        "DROPPED_KEYS",
        "wan-original-downup-complete or wan-i2v-original-downup-complete",
    ),
    "t2v-padding": (
        plant_pads_image_branch_with_text_pairs,
        VARIANTS_SUITE,
        "t2v_into_i2v",
        "WRONG_RESULT",
        "wan22-transformer and not transformer_2",
    ),
}


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_bug_turns_its_rows_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, suite, red, outcome, green = PLANTS[key]
    clean = run_checks(suite, red, tmp_path / f"{key}-clean.jsonl")
    shown = json.dumps(verdicts(clean), indent=1)
    assert clean and all(r["verdict"] == "pass" for r in clean), shown
    plant(monkeypatch)
    flipped = run_checks(suite, red, tmp_path / f"{key}.jsonl")
    shown = json.dumps(verdicts(flipped), indent=1)
    assert len(flipped) == len(clean), shown
    assert all(r["verdict"] == "regression" for r in flipped), shown
    assert {r["observed"] for r in flipped} == {outcome}, shown
    others = run_checks(suite, green, tmp_path / f"{key}-others.jsonl")
    shown = json.dumps(verdicts(others), indent=1)
    assert others and all(r["verdict"] == "pass" for r in others), shown


# --------------------------------------------------------------------------- norm differences
NORM_ROWS = "norm_diffs"
NORM_RANDOM = (
    "norm_diffs[wan-original-downup-with-norm-diff]",
    "norm_diffs[wan-i2v-original-downup-with-norm-diff]",
)
NORM_ZERO = "norm_diffs[wan-original-downup-with-zero-norm-diff]"
#: How a fixed release would name Wan's norm parameters (diffusers' single-file Wan
#: conversion: ``norm3`` is diffusers' ``norm2``; written here, not imported, as a plant).
_NORM_RENAMES = (
    (".self_attn.", ".attn1."),
    (".cross_attn.", ".attn2."),
    (".norm_k_img.", ".norm_added_k."),
    (".norm3.", ".norm2."),
)


def _norm_param(key: str, swap_qk: bool) -> str:
    name = key.removeprefix("diffusion_model.")
    name = name.removesuffix(".diff_b") + ".bias" if name.endswith(".diff_b") else name
    name = name.removesuffix(".diff") + ".weight" if name.endswith(".diff") else name
    for old, new in _NORM_RENAMES:
        name = name.replace(old, new)
    if swap_qk:
        name = name.replace(".norm_q.", ".norm_TMP.").replace(".norm_k.", ".norm_q.")
        name = name.replace(".norm_TMP.", ".norm_k.")
    return name


def plant_applies_norm_diffs(
    monkeypatch: pytest.MonkeyPatch, skip: tuple[str, ...] = (), swap_qk: bool = False
) -> None:
    """A release that applies norm differences: the converter keeps each one (less keys
    containing a ``skip`` marker) for the parameter it names, and ``load_lora_weights``
    adds them to the transformer after the LoRA load."""
    import torch
    from diffusers.loaders import lora_pipeline

    pending: dict[str, torch.Tensor] = {}
    original_converter = getattr(lora_pipeline, WAN_ORIGINAL)

    def converter(state_dict, *args, **kwargs):
        for key, value in state_dict.items():
            is_norm_diff = "norm" in key and key.endswith((".diff", ".diff_b"))
            if is_norm_diff and not any(m in key for m in skip):
                pending[_norm_param(key, swap_qk)] = value.detach().clone()
        return original_converter(state_dict, *args, **kwargs)

    mixin = lora_pipeline.WanLoraLoaderMixin
    original_load = mixin.load_lora_weights

    def load_lora_weights(self, *args, **kwargs):
        pending.clear()
        original_load(self, *args, **kwargs)
        params = dict(self.transformer.named_parameters())
        with torch.no_grad():
            for path, diff in pending.items():
                params[path].add_(diff.to(params[path].dtype))

    monkeypatch.setattr(lora_pipeline, WAN_ORIGINAL, converter)
    monkeypatch.setattr(mixin, "load_lora_weights", load_lora_weights)


#: plant -> (install, outcome of the random rows: "pass" or the red outcome).
NORM_PLANTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "applied": (plant_applies_norm_diffs, "pass"),
    "converter-drops-norm3": (
        lambda mp: plant_applies_norm_diffs(mp, skip=(".norm3.",)),
        "DROPPED_KEYS",
    ),
    "applied-q-k-swapped": (lambda mp: plant_applies_norm_diffs(mp, swap_qk=True), "WRONG_RESULT"),
}


def _norm_records(tmp_path: Path, name: str) -> dict[str, dict]:
    records = run_checks(VARIANTS_SUITE, NORM_ROWS, tmp_path / f"{name}.jsonl")
    return {r["check_id"].split("::")[-1]: r for r in records}


def test_norm_diffs_unpatched_dropped_silently(tmp_path: Path) -> None:
    """The library finding, as 0.42.1 has it: random norm differences dropped without a
    warning (named in the verdict), all-zero ones harmless."""
    records = _norm_records(tmp_path, "norm-clean")
    shown = json.dumps({k: f"{r['verdict']}:{r['observed']}" for k, r in records.items()})
    assert set(records) == {*NORM_RANDOM, NORM_ZERO}, shown
    assert records[NORM_ZERO]["verdict"] == "pass", shown
    for row in NORM_RANDOM:
        assert (records[row]["verdict"], records[row]["observed"]) == (
            "regression",
            "DROPPED_KEYS",
        ), shown
        message = records[row]["message"]
        assert "norm3.diff" in message and "norm difference" in message, message


@pytest.mark.parametrize("key", list(NORM_PLANTS))
def test_planted_norm_diff_release(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, outcome = NORM_PLANTS[key]
    plant(monkeypatch)
    records = _norm_records(tmp_path, f"norm-{key}")
    shown = json.dumps({k: f"{r['verdict']}:{r['observed']}" for k, r in records.items()})
    assert records[NORM_ZERO]["verdict"] == "pass", shown
    for row in NORM_RANDOM:
        got = records[row]["verdict"] if outcome == "pass" else records[row]["observed"]
        assert got == outcome, shown
        if outcome != "pass":
            assert records[row]["verdict"] == "regression", shown
