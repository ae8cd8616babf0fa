"""The live line of a running cell counts what the cell has written so far, no more."""

from __future__ import annotations

import json

from harness.matrix import progress
from harness.matrix.progress import CellProgress, PlainDisplay


def check(verdict: str) -> str:
    return json.dumps({"kind": "check", "check_id": f"s/m::{verdict}", "verdict": verdict})


def test_counts_checks_verdicts_and_the_collected_total(tmp_path):
    results, log = tmp_path / "cell.jsonl", tmp_path / "cell.log"
    watch = CellProgress("cell-0.42.1", results, log, installing=True)
    assert watch.poll().phase == "installing" and "0/? checks" in watch.line()

    log.write_text("nox > Running session\n============ test session starts\ncollected 5 items\n")
    results.write_text(check("pass") + "\n" + check("regression") + "\n" + check("broken")[:20])
    watch.poll()
    assert (watch.done, watch.collected, watch.phase) == (2, 5, "running")
    assert "2/5 checks, 1 pass, 1 red" in watch.line()  # the torn third line is not counted

    with open(results, "a") as handle:  # the rest of the torn line, a cell record, a check
        handle.write(check("broken")[20:] + "\n")
        handle.write(json.dumps({"kind": "cell", "status": "ok"}) + "\n" + check("pass") + "\n")
    assert "4/5 checks, 2 pass, 2 red" in watch.poll().line()

    results.write_text(check("pass") + "\n")  # a fresh results file (the runner restarted it)
    assert "1/5 checks, 1 pass, 0 red" in watch.poll().line()


def test_xdist_header_gives_the_total(tmp_path):
    log = tmp_path / "cell.log"
    log.write_text("created: 2/2 workers\n2 workers [37 items]\n")
    assert CellProgress("c", tmp_path / "none.jsonl", log).poll().collected == 37


def test_plain_lines_are_throttled_per_cell(tmp_path, monkeypatch):
    lines: list[str] = []
    display = PlainDisplay(lines.append, every=30.0)
    watch = CellProgress("cell-x", tmp_path / "r.jsonl", tmp_path / "l.log")
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    watch.started = 1000.0
    display.update([watch])
    clock[0] += 10
    display.update([watch])
    assert lines == []  # nothing before the first interval
    clock[0] += 25
    display.update([watch])
    display.update([watch])
    assert len(lines) == 1 and lines[0].lstrip().startswith("cell-x") and "(35 s)" in lines[0]
    display.finished("[ 1/1] cell-x ok")
    assert lines[-1] == "[ 1/1] cell-x ok"
