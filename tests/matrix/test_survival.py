"""A cell that dies or hangs is recorded as such; what it wrote before is kept and reports."""

import subprocess
import sys
import textwrap

import pytest

from harness.protocol.records import read_records
from harness.report.write import write_report

SUITE = """
import os, signal, time
import pytest

def test_first(compat):
    pass

def test_second(compat):
    {mode}

def test_third(compat):
    pass
"""
CONFTEST = """
import pytest
pytest_plugins = ["harness.cell.plugin"]

@pytest.fixture(autouse=True)
def _check(compat):
    return compat
"""


def run_cell(
    tmp_path, mode: str, timeout: float = 120
) -> tuple[list[dict], subprocess.CompletedProcess]:
    suite = tmp_path / "suites" / "planted"
    suite.mkdir(parents=True)
    (tmp_path / "suites" / "conftest.py").write_text(CONFTEST)
    (suite / "test_planted.py").write_text(SUITE.format(mode=mode))
    results = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cell.run", "--cell", "cell-planted", "--results", str(results),
         "--timeout", str(timeout), "--", str(tmp_path / "suites"), "-p", "no:randomly"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return list(read_records([results])), proc


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        ("os.abort()", "crashed", "SIGABRT"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "crashed", "out-of-memory"),
    ],
)
def test_killed_cell_keeps_its_records_and_reports(tmp_path, mode, status, message):
    records, proc = run_cell(tmp_path, mode)
    checks = [r for r in records if r["kind"] == "check"]
    (cell,) = [r for r in records if r["kind"] == "cell"]
    assert [c["check_id"] for c in checks] == ["planted/planted::first"]
    assert cell["status"] == status and message in cell["message"]
    assert proc.returncode == 1
    out = write_report(
        [tmp_path / "results.jsonl"], tmp_path / "report", update_latest=False, baseline=None
    )
    assert "crashed" in (out / "compat.md").read_text()


def test_hung_cell_is_killed_and_recorded_as_timeout(tmp_path):
    records, _ = run_cell(tmp_path, "time.sleep(600)", timeout=20)
    (cell,) = [r for r in records if r["kind"] == "cell"]
    assert cell["status"] == "timeout"
    assert [r["check_id"] for r in records if r["kind"] == "check"] == ["planted/planted::first"]


def test_oom_in_a_memory_limited_cell_is_recorded(tmp_path):
    """A real allocation failure under a small address-space limit (no OOM killer needed)."""
    mode = (
        textwrap.dedent(
            """
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 * 1024**3, 4 * 1024**3))
        blocks = [bytearray(1024**3) for _ in range(8)]
        """
        )
        .strip()
        .replace("\n", "\n    ")
    )
    records, _ = run_cell(tmp_path, mode)
    checks = {r["check_id"]: r for r in records if r["kind"] == "check"}
    # MemoryError raised in our own check body: recorded, the cell goes on to the third check
    assert checks["planted/planted::second"]["exc_type"] == "MemoryError"
    assert "planted/planted::third" in checks
