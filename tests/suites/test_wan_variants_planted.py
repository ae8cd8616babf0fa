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
