"""Planted bug for the SD3 LoRA rows (newest cell, in-process).

An SD3 loader that silently drops one block type: ``SD3LoraLoaderMixin.lora_state_dict``
loses every ``ff_context`` pair (the text stream's feed-forward) and says nothing. The
format row, the full-scale detector row and the end-to-end lifecycle row must turn red;
the unpatched library passes all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "suites" / "lora"
SELECTOR = (
    "test_load and sd3-peft-complete or test_detector_full_scale and sd3-peft and not bare"
    " and not base_model and not dora or test_output_matches_patched and sd3-denoiser-only"
)
ROWS = (
    "load[sd3-peft-complete]",
    "detector_full_scale[sd3-peft]",
    "output_matches_patched[sd3-denoiser-only]",
)
#: The block type the planted loader drops (present in every SD3 block but the last).
DROPPED = ".ff_context."


def plant_drop_block_type(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.loaders.lora_pipeline import SD3LoraLoaderMixin

    original = SD3LoraLoaderMixin.lora_state_dict.__func__

    def lora_state_dict(cls: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        for key in [k for k in sd if DROPPED in k]:
            del sd[key]
        return out

    monkeypatch.setattr(SD3LoraLoaderMixin, "lora_state_dict", classmethod(lora_state_dict))


def _by_row(records: list[dict]) -> dict[str, dict]:
    out = {}
    for row in ROWS:
        found = [r for r in records if r["check_id"].endswith("::" + row)]
        assert len(found) == 1, (row, [r["check_id"] for r in records])
        out[row] = found[0]
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    results = tmp_path_factory.mktemp("sd3-clean") / "clean.jsonl"
    return _by_row(run_checks(LORA, SELECTOR, results))


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    results = tmp_path_factory.mktemp("sd3-planted") / "planted.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        plant_drop_block_type(mp)
        return _by_row(run_checks(LORA, SELECTOR, results))


@pytest.mark.parametrize("row", ROWS)
def test_unpatched_sd3_rows_pass(clean: dict[str, dict], row: str) -> None:
    assert clean[row]["verdict"] == "pass", clean[row].get("message")


@pytest.mark.parametrize("row", ROWS)
def test_sd3_loader_dropping_a_block_type_is_caught(planted: dict[str, dict], row: str) -> None:
    record = planted[row]
    assert record["verdict"] == "regression", record.get("message")
    assert record["observed"] in ("DROPPED_KEYS", "WRONG_RESULT"), record
    if record["observed"] == "DROPPED_KEYS":
        assert "ff_context" in record["message"], record["message"]
