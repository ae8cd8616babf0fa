"""`run` / `report` / `bisect` refuse bad input in one line before any cell runs or installs,
and `run` ends with a summary read back from the report it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.matrix import summary
from harness.protocol.records import CellRecord, CheckRecord, write_record
from harness.report.write import write_report


@pytest.fixture
def no_cells_run(monkeypatch):
    """Any attempt to run a cell or start a bisection fails the test."""

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a cell ran / a bisection started before the input was checked")

    monkeypatch.setattr("harness.matrix.runner.run_matrix", forbidden)
    monkeypatch.setattr("harness.triage.bisect.run_bisect", forbidden)
    monkeypatch.setattr("harness.triage.bisect.pypi_json", forbidden)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_empty_cells_is_an_error_not_the_default_set(no_cells_run, capsys):
    assert main(["run", "--cells", ""]) == 2
    assert "no cells selected (--cells is empty)" in error_line(capsys)
    assert main(["run", "--cells", " , "]) == 2


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_run_out_is_checked_before_any_cell_runs(no_cells_run, capsys, tmp_path, where):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "report"
    assert main(["run", "--cells", "default", "--out", str(out)]) == 2
    assert "--out" in error_line(capsys)


def test_report_out_is_checked_before_reading(no_cells_run, capsys, tmp_path):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("x")
    assert main(["report", str(tmp_path / "no-such-results"), "--out", str(blocker)]) == 2
    assert "is a file, not a folder" in error_line(capsys)


def test_bisect_unknown_check_says_so_before_installing(no_cells_run, capsys, tmp_path):
    report = tmp_path / "compat.json"
    report.write_text(json.dumps({"checks": [{"check_id": "lora/formats::load[kohya]"}]}))
    base = ["--good", "0.30.3", "--bad", "0.33.1", "--report", str(report)]
    assert main(["bisect", "lora/formats::no_such_check", *base]) == 2
    assert "defines no test_no_such_check" in error_line(capsys)
    assert main(["bisect", "lora/formats::load[no-such-format]", *base]) == 2
    assert "the report knows lora/formats::load only as [kohya]" in error_line(capsys)


def test_bisect_known_check_gets_past_the_check(monkeypatch, tmp_path):
    class Started(Exception):
        pass

    def started(*_args, **_kwargs):
        raise Started

    monkeypatch.setattr("harness.triage.bisect.run_bisect", started)
    with pytest.raises(Started):
        main(["bisect", "lora/formats::load[kohya]", "--good", "0.30.3", "--bad", "0.33.1",
              "--report", str(tmp_path / "none.json")])  # fmt: skip


def test_closing_summary_reads_regressions_and_first_bad_from_the_report(tmp_path: Path):
    results = tmp_path / "results.jsonl"
    for cell, verdict in (("cell-0.30.3", "pass"), ("cell-0.31.0", "regression")):
        for check_id, suite in (("lora/formats::load[a]", "lora"), ("ip/load::x", "ip")):
            verdict_here = verdict if suite == "lora" else "pass"
            write_record(
                results,
                CheckRecord(check_id, suite, ["pass"], verdict_here, verdict_here, cell=cell),
            )
        write_record(results, CellRecord(cell=cell, status="ok"))
    out = write_report([results], tmp_path / "report", update_latest=False, baseline=None)
    lines = summary.closing_summary(["ok", "ok"], out, not_started=["cell-0.32.2"])
    text = "\n".join(lines)
    assert "cells: 2 ok, 1 not started" in text
    assert "regressions by suite: lora 1" in text
    assert "lora/formats::load[a]: 0.31.0 (last good 0.30.3)" in text
    assert "ip/load::x" not in text
    assert f"compat.html: {out / 'compat.html'}" in text
    assert f"compat.md:   {out / 'compat.md'}" in text
