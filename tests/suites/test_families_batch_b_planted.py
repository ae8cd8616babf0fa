"""Planted bugs in the batch-B families (Ideogram4, MiniMax-H3, ACE-Step, Anima, Flux3,
RFD4-Proteina; issue #20): the rows each bug touches must turn red, the unpatched library
(the newest cell's diffusers) keeps them green, and rows the bug does not touch stay green.

Runs the real checks of ``suites/families`` in-process (``pytest.main`` with ``-k``)
against a monkeypatched diffusers and reads the verdicts from the records:

* ``ideogram4-ffn``: ``_convert_non_diffusers_ideogram4_lora_to_diffusers`` (looked up by
  the mixin in ``diffusers.loaders.lora_pipeline``) loses the blocks' ``feed_forward``
  layers, no word: the Ideogram4 layout rows DROPPED_KEYS, MiniMax-H3's stay green;
* ``minimax-h3-fc1``: ``_convert_non_diffusers_minimax_h3_lora_to_diffusers`` leaves the
  SwiGLU ``mlp.fc1`` halves in the original ``[gate; value]`` order (the swap undone): the
  MiniMax-H3 layout rows WRONG_RESULT, Ideogram4's stay green;
* ``minimax-h3-ref-refiner``: the mixin's ``load_lora_into_transformer_ref`` (the second
  partition's loader, reached only through the modular pipeline's ``ref2va`` workflow)
  drops the text refiner's keys: the ``minimax-h3-ref`` family rows that load a valid
  file turn red, the ``minimax-h3`` (``transformer``) rows stay green.
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
SUITE = ROOT / "suites" / "families"
LAYOUTS_SUITE = SUITE / "test_layouts.py"

#: -k selector of a family's diffusers/PEFT rows whose file is valid (complete, no-alpha and
#: the four lifecycle rows); ``{f}`` is the family id as it appears in the row ids.
FAMILY_VALID_ROWS = (
    "(test_load or test_unload or test_fuse or test_set_adapters or test_save) and {f} "
    "and not partial and not stray and not test_layouts"
)


def verdicts(records: list[dict]) -> dict[str, str]:
    return {r["check_id"].split("::")[-1]: f"{r['verdict']}:{r['observed']}" for r in records}


def _wrap_converter(monkeypatch: pytest.MonkeyPatch, name: str, after: Callable) -> None:
    """Replace converter ``name`` where the mixins look it up, editing its output."""
    from diffusers.loaders import lora_pipeline

    original = getattr(lora_pipeline, name)

    def converter(state_dict, *args, **kwargs):
        return after(original(state_dict, *args, **kwargs))

    monkeypatch.setattr(lora_pipeline, name, converter)


def plant_ideogram4_drops_ffn(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap_converter(
        monkeypatch,
        "_convert_non_diffusers_ideogram4_lora_to_diffusers",
        lambda sd: {k: v for k, v in sd.items() if ".feed_forward." not in k},
    )


def plant_minimax_h3_keeps_fc1_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the converter's ``[gate; value]`` -> ``[value; gate]`` swap of ``fc1``."""

    import torch

    def unswap(sd: dict) -> dict:
        out = dict(sd)
        for key in [k for k in sd if k.endswith(".ff.net.0.proj.lora_B.weight")]:
            value, gate = sd[key].chunk(2, dim=0)
            out[key] = torch.cat([gate, value], dim=0).contiguous()
        return out

    _wrap_converter(monkeypatch, "_convert_non_diffusers_minimax_h3_lora_to_diffusers", unswap)


def plant_minimax_h3_ref_drops_refiner(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.loaders import lora_pipeline

    mixin = lora_pipeline.MiniMaxH3LoraLoaderMixin
    original = mixin.load_lora_into_transformer_ref.__func__

    def load_lora_into_transformer_ref(cls, state_dict, *args, **kwargs):
        kept = {k: v for k, v in state_dict.items() if ".token_refiner." not in k}
        return original(cls, kept, *args, **kwargs)

    monkeypatch.setattr(
        mixin, "load_lora_into_transformer_ref", classmethod(load_lora_into_transformer_ref)
    )


#: plant -> (install, suite, -k of the rows it must turn red, their outcomes, -k of rows
#: it must leave green).
PLANTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], Path, str, set[str], str]] = {
    "ideogram4-ffn": (
        plant_ideogram4_drops_ffn,
        LAYOUTS_SUITE,
        "ideogram4 and (complete or no-alpha or partial)",
        {"DROPPED_KEYS"},
        "minimax-h3-aitoolkit-complete",
    ),
    "minimax-h3-fc1": (
        plant_minimax_h3_keeps_fc1_order,
        LAYOUTS_SUITE,
        "minimax-h3 and (complete or no-alpha)",
        {"WRONG_RESULT"},
        "ideogram4-aitoolkit-complete",
    ),
    "minimax-h3-ref-refiner": (
        plant_minimax_h3_ref_drops_refiner,
        SUITE,
        FAMILY_VALID_ROWS.format(f="minimax-h3-ref"),
        {"DROPPED_KEYS", "REFUSED"},
        FAMILY_VALID_ROWS.format(f="minimax-h3 and not minimax-h3-ref"),
    ),
}


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_bug_turns_its_rows_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, suite, red, outcomes, green = PLANTS[key]
    clean = run_checks(suite, red, tmp_path / f"{key}-clean.jsonl")
    shown = json.dumps(verdicts(clean), indent=1)
    assert all(r["verdict"] == "pass" and r["observed"] == "OK" for r in clean), shown
    plant(monkeypatch)
    flipped = run_checks(suite, red, tmp_path / f"{key}.jsonl")
    shown = json.dumps(verdicts(flipped), indent=1)
    assert len(flipped) == len(clean), shown
    assert all(r["verdict"] == "regression" for r in flipped), shown
    assert {r["observed"] for r in flipped} <= outcomes, shown
    others = run_checks(suite, green, tmp_path / f"{key}-others.jsonl")
    shown = json.dumps(verdicts(others), indent=1)
    assert others and all(r["verdict"] == "pass" for r in others), shown
