"""What a cell runs: ``suites`` unless the caller named paths, node ids or pytest's
``@file`` of them (how a benchmark replays the rows of an earlier run)."""

from __future__ import annotations

from pathlib import Path

from harness.cell.run import parse_args, pytest_command

ROOT = Path(__file__).resolve().parents[2]


def _selection(*pytest_args: str) -> list[str]:
    args, rest = parse_args(["--cell", "cell-x", "--results", "r.jsonl", "--", *pytest_args])
    command = pytest_command(args, rest)
    start = command.index("harness.cell.pytest_main") + 1
    return [a for a in command[start:] if a == "suites" or a.startswith(("@", "suites/"))]


def test_suites_unless_the_caller_selected(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert _selection() == ["suites"]
    assert _selection("-k", "sd15") == ["suites"]
    assert _selection("suites/smoke") == ["suites/smoke"]
    rows = tmp_path / "rows.txt"
    rows.write_text("suites/smoke/test_pipelines.py::test_builds[sd15]\n")
    assert _selection(f"@{rows}") == [f"@{rows}"]
    # a missing @file is not a selection: pytest will say so, over the default suites
    assert _selection(f"@{tmp_path / 'missing.txt'}") == ["suites", f"@{tmp_path / 'missing.txt'}"]
