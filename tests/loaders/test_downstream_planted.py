"""Planted bugs for the downstream-loader suite (``suites/invokeai``), through a fake app
(:mod:`tests.loaders.fake_flux_loader`, no InvokeAI needed): the partial Q/K/V rows must
turn red when the converter asserts all-or-none q/k/v (InvokeAI 5.4.0's bug), a kohya row
must turn red when the converter drops alphas, and the unpatched fake stays green.

Runs the real suite in-process (``pytest.main``) with ``ADAPTER_COMPAT_LOADER`` naming the
fake, then reads the verdicts from the records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inner_suite import run_checks
from tests.loaders import fake_flux_loader

ROOT = Path(__file__).resolve().parents[2]
ROWS = "peft-complete or peft-partial-double-no-to_k or peft-partial-single-no-proj_mlp or kohya-complete"


def run_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    monkeypatch.setenv("ADAPTER_COMPAT_LOADER", "tests.loaders.fake_flux_loader:SPEC")
    records = run_checks(ROOT / "suites" / "invokeai", ROWS, tmp_path / "fake.jsonl")
    return {r["check_id"].split("[", 1)[1].rstrip("]"): r for r in records}


def test_unpatched_fake_is_green(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = run_rows(tmp_path, monkeypatch)
    assert len(rows) == 4
    assert {k: r["verdict"] for k, r in rows.items()} == dict.fromkeys(rows, "pass")
    assert {r["observed"] for r in rows.values()} == {"OK"}
    assert all(r["params"]["target"] == "fake" for r in rows.values())
    assert rows["peft-partial-single-no-proj_mlp"]["details"]["modules_matched"] > 0


def test_all_or_none_assertion_turns_partial_rows_red(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(fake_flux_loader.PLANT, "all_or_none", True)
    rows = run_rows(tmp_path, monkeypatch)
    for partial in ("peft-partial-double-no-to_k", "peft-partial-single-no-proj_mlp"):
        assert rows[partial]["observed"] == "CRASH", rows[partial]
        assert rows[partial]["verdict"] == "regression"
    assert rows["peft-complete"]["verdict"] == "pass"
    assert rows["kohya-complete"]["verdict"] == "pass"


def test_dropped_alpha_turns_kohya_rows_red(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(fake_flux_loader.PLANT, "ignore_alpha", True)
    rows = run_rows(tmp_path, monkeypatch)
    assert rows["kohya-complete"]["observed"] == "WRONG_RESULT", rows["kohya-complete"]
    assert rows["kohya-complete"]["verdict"] == "regression"
    assert rows["peft-complete"]["verdict"] == "pass"  # no alphas in PEFT files
