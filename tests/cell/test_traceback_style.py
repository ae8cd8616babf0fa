"""A cell's pytest reports red rows in one line unless the caller chose a style: the
record keeps the full traceback, and the long style cost 0.3 s and more per red row."""

from __future__ import annotations

from pathlib import Path

from harness.cell.run import parse_args, pytest_command


def _command(*pytest_args: str) -> list[str]:
    args, rest = parse_args(["--cell", "cell-x", "--results", "r.jsonl", "--", *pytest_args])
    return pytest_command(args, rest)


def test_one_line_by_default_and_the_callers_choice_otherwise(tmp_path: Path) -> None:
    assert "--tb=line" in _command()
    assert "--tb=line" in _command("-k", "sd15")
    for chosen in (["--tb=long"], ["--tb", "native"], ["--full-trace"]):
        command = _command(*chosen)
        assert "--tb=line" not in command and command[-len(chosen) :] == chosen
