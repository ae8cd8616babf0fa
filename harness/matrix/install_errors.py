"""Say why a cell could not be installed or started, in the tool's own words.

nox reports a failed install as "Returned code 1", which tells the user nothing; uv's output
says what is wrong ("there is no version of transformers==99.0.0", "not found in the
provided package locations"). These helpers pull that reason out of uv's output or a cell
log, for the cell record, the console line and the report. Stdlib-only (the noxfile
imports it before any venv exists).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

#: Longest reason kept (a resolver explanation can run to pages).
MAX_REASON_CHARS = 600

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# uv's tree decorations ("  × ", "  ╰─▶ ", "  │ ", "help: ") and leading blanks
_DECORATION = re.compile(r"^[\s×╰─▶│├┬┴┤┼└┘┐┌╭╮╯·>|-]+")
# labels uv puts before a line of its explanation
_LABEL = re.compile(r"^(?:error|caused by|cause):\s*", re.IGNORECASE)
# where uv's explanation starts: "error: ...", "  × No solution found ..."
_START = re.compile(r"^\s*(?:error:|×)", re.IGNORECASE)
# nox's own summary of a failed session: "nox > Session cell-x failed." / "nox > error: ..."
_NOX_LINE = re.compile(r"^nox > (.*(?:error|failed|not found|Python interpreter).*)$", re.I)


def clean(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")


def uv_reason(output: str) -> str:
    """uv's explanation of a failed ``uv pip install`` as one line; '' when none is found.

    uv prints the cause after ``error:`` or a ``×`` line, often across an indented tree
    ("╰─▶ Because there is no version of ..."): those lines are joined, decorations and
    colour codes removed, and hints (``hint:`` / ``help:``) dropped."""
    lines = clean(output).splitlines()
    start = next((i for i, line in enumerate(lines) if _START.match(line)), None)
    if start is None:
        return ""
    parts: list[str] = []
    for line in lines[start:]:
        if line.lstrip().lower().startswith(("hint:", "help:", "nox >")):
            break
        text = _DECORATION.sub("", line.strip()).strip()
        text = _LABEL.sub("", text).strip()
        if text:
            parts.append(text)
    if not parts:
        return ""
    head, rest = parts[0].rstrip(":"), " ".join(parts[1:])
    reason = f"{head}: {rest}" if rest else head  # "No solution found ...: Because ..."
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1].rstrip() + "…"
    return reason


def nox_failure(returncode: int | None, log: Path, program: str = "nox") -> str:
    """Why a cell child (``program``: nox, or the cell runner) ended without writing a cell
    record: its signal, or uv's reason / nox's last error line in its log, else its exit
    code."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the cell process was killed by {name}"
    try:
        text = clean(log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        text = ""
    reason = uv_reason(text)
    if reason:
        return f"{program} exited with {returncode}: {reason}"
    found = [m.group(1).strip() for m in map(_NOX_LINE.match, text.splitlines()) if m]
    if found:
        return f"{program} exited with {returncode}: {found[-1]}"
    return f"{program} exited with {returncode}"
