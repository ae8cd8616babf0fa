"""Run real suite checks inside a self-test's process (``pytest.main``), so a bug planted
with ``monkeypatch`` in this process is what the checks meet; read back their records."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.protocol.records import read_records


def run_checks(target: Path, selector: str, results: Path) -> list[dict]:
    """The check records of ``target`` (a suite file or folder) narrowed by ``-k selector``."""
    _forget_suite_modules()
    code = pytest.main(
        [str(target), "-q", "-p", "no:cacheprovider", "-k", selector,
         "--compat-results", str(results), "--compat-cell", "selftest"]
    )  # fmt: skip
    assert code in (0, 1), f"inner pytest failed to run ({code})"
    records = [r for r in read_records([results]) if r.get("kind") == "check"]
    assert records, "the checks wrote no record"
    return records


def _forget_suite_modules() -> None:
    """An earlier in-process run left its suite modules in ``sys.modules`` under their bare
    names (``test_byo``); a suite with a file of the same name would then fail to collect
    ("import file mismatch"). A cell never meets this: it collects once per process."""
    suites = str(Path(__file__).resolve().parents[1] / "suites")
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(suites):
            del sys.modules[name]
