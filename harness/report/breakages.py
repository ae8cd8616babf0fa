"""The first-bad-version table: breakages, each with every row it explains.

Why grouped: forty rows breaking between 0.32.2 and 0.33.1 with the same KeyError in the
same converter are one breakage to bisect and one bug to file, not forty lines. A
breakage = the same last good / first bad version of the matrix and the same root cause
(:mod:`harness.report.causes`) at the first bad version. Largest first: the breakage that
explains most rows is the one to look at. A row that passes again in the newest version is
kept, with the version that fixed it (``fixed in X``), so nobody files it as open.

Each breakage also lists the packages whose pins differ at its boundary
(:mod:`harness.report.boundaries`) and the ``bisect --blame`` command that asks which of
them, put back alone, turns the row green; a boundary into a source cell gets the commit
bisect command instead (only diffusers moved there).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.protocol.outcomes import Verdict
from harness.report.boundaries import PinChange, blame_command, commit_bisect_command, pin_changes
from harness.report.causes import Cause, cause_of
from harness.report.grid import Cell, CheckRow, ReportModel, _columns, _version_key
from harness.report.main_vs_release import FOUND, latest_bisects

PASS = Verdict.PASS.value
RED = frozenset({Verdict.REGRESSION.value, Verdict.BROKEN.value})


@dataclass
class Breakage:
    """Rows that broke between the same two versions for the same root cause."""

    last_good: str
    first_bad: str
    cause: Cause
    fixed_in: str | None  # the version where they pass again (None: still broken)
    rows: list[CheckRow] = field(default_factory=list)
    first_bad_cells: dict[str, str] = field(default_factory=dict)  # check id -> cell name
    bisected: dict[str, str] = field(default_factory=dict)  # check id -> bisected release
    #: packages whose recorded pins differ between the first row's last good and first bad
    #: cells, and the commands that ask which one breaks it (None: does not apply)
    pins: list[PinChange] = field(default_factory=list)
    blame: str | None = None
    commit_bisect: str | None = None

    @property
    def check_ids(self) -> list[str]:
        return [row.check_id for row in self.rows]

    def bisect_command(self) -> str:
        """Shell-quoted (check ids hold ``[`` ``]``): narrows the first row's breakage (to
        a release, or to a commit when the first bad cell is a source cell)."""
        if self.commit_bisect:
            return self.commit_bisect
        return shlex.join(
            [
                "adapter-compat",
                "bisect",
                self.rows[0].check_id,
                "--good",
                self.last_good,
                "--bad",
                self.first_bad,
            ]
        )


def fixed_in(row: CheckRow, cells: Sequence[Cell], first_bad_cell: str) -> str | None:
    """The first version after ``first_bad_cell`` where ``row`` passes, when it still passes
    in the newest version that judged it (pass or red) on that torch axis; else None."""
    for column in _columns(cells):
        names = [c.name for c in column]
        if first_bad_cell not in names:
            continue
        later = column[names.index(first_bad_cell) + 1 :]
        judged = [
            (c, row.results[c.name].verdict)
            for c in later
            if c.name in row.results and row.results[c.name].verdict in RED | {PASS}
        ]
        if not judged or judged[-1][1] != PASS:
            return None
        fixed = None
        for cell, verdict in judged:
            if verdict == PASS and fixed is None:
                fixed = cell.version_label
            elif verdict != PASS:
                fixed = None
        return fixed
    return None


def build_breakages(model: ReportModel) -> list[Breakage]:
    """Every row's current breakage, grouped; most rows first, then by first bad version."""
    groups: dict[tuple[str, str, str, str | None], Breakage] = {}
    commits = latest_bisects(model.bisections)  # first bad commits into source cells
    for row in model.checks:
        brk = row.current_break
        if brk is None:
            continue
        result = row.results[brk.first_bad_cell]
        cause = cause_of(
            row.check_id, result.observed, result.exc_type, result.message, result.traceback
        )
        fixed = fixed_in(row, model.cells, brk.first_bad_cell)
        good, bad = model.cell(brk.last_good_cell), model.cell(brk.first_bad_cell)
        commit = bad.source.get("commit", "") if bad is not None and bad.from_source else ""
        first_bad = f"{brk.first_bad} @{commit[:7]}" if commit else brk.first_bad
        key = (brk.last_good, first_bad, cause.key, fixed)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Breakage(brk.last_good, first_bad, cause, fixed)
            if good is not None and bad is not None:
                group.pins = pin_changes(good, bad)
                group.blame = blame_command(row.check_id, bad)
                group.commit_bisect = commit_bisect_command(row.check_id, good, bad)
        group.rows.append(row)
        group.first_bad_cells[row.check_id] = brk.first_bad_cell
        if row.check_id in model.bisected and not commit:
            group.bisected[row.check_id] = model.bisected[row.check_id]
        found = commits.get((row.check_id, commit)) if commit else None
        if found is not None and found.get("status") == FOUND and found.get("first_bad"):
            group.bisected[row.check_id] = f"commit {str(found['first_bad'].get('sha'))[:7]}"
    return sorted(
        groups.values(),
        key=lambda g: (
            g.fixed_in is not None,
            -len(g.rows),
            _version_key(g.first_bad),
            g.cause.describe(),
        ),
    )
