"""The closing lines of ``adapter-compat run``: what the matrix found, and where to look.

Read back from the compat.json just written (the report's own model, so the console can
never disagree with the report): how each cell ended, regressions per suite, the first bad
version of each check that broke, main vs the newest release (rows newly red on a source
cell, with their first bad commits), and the paths of compat.html / compat.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Checks listed under "first bad versions" before the rest is only counted.
MAX_FIRST_BAD = 10


def cell_line(statuses: Sequence[str], not_started: Sequence[str] = ()) -> str:
    counts = Counter(statuses)
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if not_started:
        text += f"{', ' if text else ''}{len(not_started)} not started"
    return f"cells: {text or 'none'}"


def closing_summary(
    statuses: Sequence[str], report_dir: Path | None, not_started: Sequence[str] = ()
) -> list[str]:
    """Lines to print after a run (``report_dir`` None: no report was written)."""
    lines = ["", "summary:", f"  {cell_line(statuses, not_started)}"]
    if not_started:
        shown = ", ".join(not_started[:8]) + (" ..." if len(not_started) > 8 else "")
        lines.append(
            f"  not started: {shown} (run the same command again: finished cells are reused)"
        )
    if report_dir is None:
        return lines
    doc = _read(report_dir / "compat.json")
    checks: list[dict[str, Any]] = doc.get("checks") or []
    regressed = [c for c in checks if c.get("regressed_in")]
    by_suite = Counter(str(c.get("suite") or "?") for c in regressed)
    if by_suite:
        per_suite = ", ".join(f"{suite} {n}" for suite, n in sorted(by_suite.items()))
        lines.append(f"  regressions by suite: {per_suite}")
    else:
        lines.append("  regressions by suite: none")
    broke = [c for c in checks if c.get("first_bad") or c.get("bisected_first_bad")]
    if broke:
        lines.append("  first bad versions:")
        for check in broke[:MAX_FIRST_BAD]:
            lines.append(f"    {check['check_id']}: {_first_bad(check)}")
        if len(broke) > MAX_FIRST_BAD:
            lines.append(f"    ... and {len(broke) - MAX_FIRST_BAD} more (see compat.md)")
    from harness.report.main_vs_release import console_lines  # the report's own headline

    lines += [f"  {line}" for line in console_lines(doc)]
    lines.append(f"  compat.html: {report_dir / 'compat.html'}")
    lines.append(f"  compat.md:   {report_dir / 'compat.md'}")
    return lines


def _first_bad(check: dict[str, Any]) -> str:
    grid = check.get("first_bad")
    bisected = check.get("bisected_first_bad")
    text = f"{grid} (last good {check.get('last_good')})" if grid else "?"
    if bisected and bisected != grid:
        text += f"; bisected: {bisected}"
    return text


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
