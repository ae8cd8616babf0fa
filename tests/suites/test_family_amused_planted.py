"""Planted bugs in ``AmusedLoraLoaderMixin``'s classmethods: the Amused rows must turn red,
while the unpatched library (the newest cell's diffusers) keeps the rows green that the
library gets right.

Runs the real checks of ``suites/families/test_amused.py`` in-process against a
monkeypatched mixin and reads the verdicts from the records:

* ``transformer-layers``: ``load_lora_into_transformer`` drops the keys of the
  ``transformer_layers.`` blocks (one block type gone, no word) -> ``load[amused-transformer]``
  and ``save_reload[amused-alpha-eq-rank]`` DROPPED_KEYS, ``load[amused-text_encoder]`` green;
* ``save-text-encoder``: ``save_lora_weights`` writes the transformer's layers only ->
  ``save_reload[amused-alpha-eq-rank]`` DROPPED_KEYS, both load rows green.

Unpatched, ``save_reload[amused-alpha-ne-rank]`` is a library finding (WRONG_RESULT, twice
the trained effect: the mixin's ``save_lora_weights`` has no channel for the adapter's
alpha), asserted as such so a change there is noticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "families" / "test_amused.py"
GREEN = "not alpha-ne-rank"


def verdicts(records: list[dict]) -> dict[str, str]:
    return {
        r["check_id"]: f"{r['verdict']}:{r['observed']}:{r.get('message', '')}" for r in records
    }


def _mixin():
    from diffusers.loaders import AmusedLoraLoaderMixin

    return AmusedLoraLoaderMixin


def plant_drops_transformer_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    mixin = _mixin()
    original = mixin.load_lora_into_transformer.__func__

    def load_lora_into_transformer(cls, state_dict, *args, **kwargs):
        kept = {k: v for k, v in state_dict.items() if ".transformer_layers." not in k}
        return original(cls, kept, *args, **kwargs)

    monkeypatch.setattr(
        mixin, "load_lora_into_transformer", classmethod(load_lora_into_transformer)
    )


def plant_saves_transformer_only(monkeypatch: pytest.MonkeyPatch) -> None:
    mixin = _mixin()
    original = mixin.save_lora_weights.__func__

    def save_lora_weights(cls, *args, text_encoder_lora_layers=None, **kwargs):
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(mixin, "save_lora_weights", classmethod(save_lora_weights))


#: plant -> (rows that must turn DROPPED_KEYS, rows that must stay green, marker in the message)
PLANTS = {
    "transformer-layers": (
        plant_drops_transformer_layers,
        {"load[amused-transformer]", "save_reload[amused-alpha-eq-rank]"},
        {"load[amused-text_encoder]"},
        ".transformer_layers.",
    ),
    "save-text-encoder": (
        plant_saves_transformer_only,
        {"save_reload[amused-alpha-eq-rank]"},
        {"load[amused-transformer]", "load[amused-text_encoder]"},
        "text_encoder.",
    ),
}


def _row(record: dict) -> str:
    return record["check_id"].split("::")[1]


def test_unpatched_library(tmp_path: Path) -> None:
    records = run_checks(SUITE, "amused", tmp_path / "unpatched.jsonl")
    by_row = {_row(r): r for r in records}
    shown = json.dumps(verdicts(records), indent=1)
    assert len(by_row) == 4, shown
    finding = by_row.pop("save_reload[amused-alpha-ne-rank]")
    assert all(r["verdict"] == "pass" and r["observed"] == "OK" for r in by_row.values()), shown
    assert finding["observed"] == "WRONG_RESULT", shown
    assert finding["details"]["effect_over_trained"] == pytest.approx(2.0, abs=1e-3), shown


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_bug_turns_amused_rows_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, red, green, marker = PLANTS[key]
    plant(monkeypatch)
    records = run_checks(SUITE, GREEN, tmp_path / f"{key}.jsonl")
    by_row = {_row(r): r for r in records}
    shown = json.dumps(verdicts(records), indent=1)
    assert set(by_row) == red | green, shown
    for row in red:
        assert by_row[row]["verdict"] == "regression", shown
        assert by_row[row]["observed"] == "DROPPED_KEYS", shown
        assert marker in by_row[row]["message"], shown
    assert all(by_row[row]["verdict"] == "pass" for row in green), shown
