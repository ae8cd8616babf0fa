"""Planted bugs for the XLabs single-block row (``load[flux-xlabs-with-single-blocks]``):
x-flux files trained with its ``single_blocks`` option carry
``single_blocks.N.processor.qkv_lora`` / ``proj_lora`` next to the double blocks, and the
row must turn red when the converter loses those keys without a word (DROPPED_KEYS) or
places their q/k/v rows in the wrong modules (WRONG_RESULT), while the double-block-only
``load[flux-xlabs-complete]`` stays green and the unpatched library passes both.

Runs the real suite rows in-process against a monkeypatched diffusers (this venv's).
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
SINGLE = "load[flux-xlabs-with-single-blocks]"
DOUBLE = "load[flux-xlabs-complete]"
ROWS = "test_load and (flux-xlabs-with-single-blocks or flux-xlabs-complete)"


def run_rows(tmp_path: Path) -> dict[str, dict]:
    records = run_checks(ROOT / "suites" / "lora" / "test_formats.py", ROWS, tmp_path / "x.jsonl")
    return {r["check_id"].split("::", 1)[1]: r for r in records}


def _wrap_converter(monkeypatch: pytest.MonkeyPatch, before: Callable, after: Callable) -> None:
    """Run ``before`` on the XLabs file, the real converter, then ``after`` on its output."""
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline._convert_xlabs_flux_lora_to_diffusers

    def convert(state_dict):
        return after(original(before(state_dict)))

    monkeypatch.setattr(lora_pipeline, "_convert_xlabs_flux_lora_to_diffusers", convert)


def plant_single_blocks_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The converter keeps the double blocks only (as if it had no single-block branch)."""
    _wrap_converter(
        monkeypatch,
        lambda sd: {k: v for k, v in sd.items() if "single_blocks." not in k},
        lambda out: out,
    )


def plant_single_qk_swapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The single-block q/k/v split hands the q rows to ``to_k`` and the k rows to ``to_q``."""

    def swap(out: dict) -> dict:
        swapped = {}
        for key, value in out.items():
            if "single_transformer_blocks." in key:
                key = key.replace(".to_q.", ".to_TMP.").replace(".to_k.", ".to_q.")
                key = key.replace(".to_TMP.", ".to_k.")
            swapped[key] = value
        return swapped

    _wrap_converter(monkeypatch, lambda sd: sd, swap)


PLANTS = {
    "dropped": (plant_single_blocks_dropped, "DROPPED_KEYS"),
    "qk-swapped": (plant_single_qk_swapped, "WRONG_RESULT"),
}


@pytest.fixture(scope="module")
def has_xlabs() -> None:
    from diffusers.loaders import lora_pipeline

    if not hasattr(lora_pipeline, "_convert_xlabs_flux_lora_to_diffusers"):
        pytest.skip("this diffusers has no XLabs converter")


def test_unpatched_library_passes(tmp_path: Path, has_xlabs: None) -> None:
    records = run_rows(tmp_path)
    assert set(records) == {SINGLE, DOUBLE}, sorted(records)
    assert all(r["verdict"] == "pass" for r in records.values()), json.dumps(
        list(records.values())[:1], indent=1
    )
    assert int(records[SINGLE]["details"]["modules_matched"]) > int(
        records[DOUBLE]["details"]["modules_matched"]
    ), "the single-block row must target more modules than the double-only file"


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_single_block_bug_turns_row_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_xlabs: None
) -> None:
    plant, outcome = PLANTS[key]
    plant(monkeypatch)
    records = run_rows(tmp_path)
    single, double = records[SINGLE], records[DOUBLE]
    assert (single["verdict"], single["observed"]) == ("regression", outcome), single
    assert "single_blocks" in single.get("message", "") or outcome == "WRONG_RESULT", single
    assert double["verdict"] == "pass", double
