"""The summary a maintainer reads first: one line per adapter format x architecture, per
IP-Adapter variant, per lifecycle operation..., one aggregated mark per diffusers version.

Why groups of rows: 700 rows x 17 cells do not answer "can I bump diffusers?" at a glance;
"kohya LoRAs on Flux lost support in 0.33" does. Each line is built from the rows it names
(a data table below says which parameters group each suite), and its marks link to those
rows in the grid. The mark of a grid cell is the most alarming state among its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.protocol.outcomes import Verdict
from harness.report.grid import STATE_CELL_FAILED, STATE_MISSING, Cell, CheckRow, ReportModel
from harness.report.order import OUTSIDE_LABEL, outside_adapter_loading

#: Pseudo parameters computed from the check id (not recorded as params).
OPERATION = "operation"  # the check's test function: ``unload_restores``

#: Group-by keys, looked up by module (``lora/lifecycle``) first, then by suite; a row
#: lacking one of the keys falls back to its operation.
GROUP_BY: dict[str, tuple[str, ...]] = {
    "lora": ("arch", "format"),
    "families": ("family",),
    "lora/lifecycle": (OPERATION,),
    "ip_adapter": ("arch", "variant"),
    "lifecycle": (OPERATION,),
    "shared": (OPERATION,),
    "robustness": (OPERATION,),
    "drift": (OPERATION,),
}
DEFAULT_GROUP_BY: tuple[str, ...] = (OPERATION,)

#: States from most to least alarming: a summary mark is the first one any row has.
SEVERITY: tuple[str, ...] = (
    Verdict.REGRESSION.value,
    Verdict.BROKEN.value,
    Verdict.HARNESS_ERROR.value,
    STATE_CELL_FAILED,
    Verdict.PASS.value,
    Verdict.SKIPPED.value,
    Verdict.UNSUPPORTED.value,
    STATE_MISSING,
)


@dataclass
class SummaryLine:
    """One line of the summary: a group of rows of one suite."""

    group: str  # stable id, used by the grid filter (``#group=...``)
    suite: str
    label: str  # "kohya · flux"
    outside: bool = False  # about code outside adapter loading (labelled, sorted last)
    by_operation: bool = False  # grouped by operation (listed after parameter groups)
    rows: list[CheckRow] = field(default_factory=list)
    #: cell name -> {state: count of rows}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def mark(self, cell: str) -> str:
        """The most alarming state among the rows in ``cell``."""
        counts = self.counts.get(cell, {})
        return next((s for s in SEVERITY if counts.get(s)), STATE_MISSING)

    def red(self, cell: str) -> int:
        counts = self.counts.get(cell, {})
        return counts.get(Verdict.REGRESSION.value, 0) + counts.get(Verdict.BROKEN.value, 0)

    def describe(self, cell: str) -> str:
        """``3 regression, 13 pass`` (most alarming first)."""
        counts = self.counts.get(cell, {})
        return ", ".join(f"{counts[s]} {s}" for s in SEVERITY if counts.get(s)) or "no rows"


def group_keys(row: CheckRow) -> tuple[str, ...]:
    module = row.check_id.split("::", 1)[0]
    keys = GROUP_BY.get(module) or GROUP_BY.get(row.suite) or DEFAULT_GROUP_BY
    if any(key != OPERATION and key not in row.params for key in keys):
        return DEFAULT_GROUP_BY
    return keys


def group_of(row: CheckRow) -> tuple[str, str]:
    """(group id, label) of a row."""
    values = [_value(row, key) for key in group_keys(row)]
    label = " · ".join(values)
    return f"{row.suite}:{'/'.join(values)}", label


def _value(row: CheckRow, key: str) -> str:
    if key == OPERATION:
        return row.check_id.split("::", 1)[-1].split("[", 1)[0]
    return str(row.params.get(key))


def build_summary(model: ReportModel) -> list[SummaryLine]:
    """Summary lines in suite order; within a suite, parameter groups by label, then
    operations in grid order, then rows about code outside adapter loading."""
    lines: dict[str, SummaryLine] = {}
    for row in model.checks:
        gid, label = group_of(row)
        line = lines.get(gid)
        if line is None:
            outside = outside_adapter_loading(row.suite, row.check_id)
            by_op = group_keys(row) == (OPERATION,)
            line = lines[gid] = SummaryLine(gid, row.suite, label, outside, by_op)
        line.rows.append(row)
    for line in lines.values():
        line.counts = {cell.name: _counts(line.rows, cell) for cell in model.cells}
    suites = model.suites
    order = {gid: n for n, gid in enumerate(lines)}
    return sorted(
        lines.values(),
        key=lambda s: (
            suites.index(s.suite),
            s.outside,
            s.by_operation,
            "" if s.by_operation else s.label,
            order[s.group],
        ),
    )


def _counts(rows: Sequence[CheckRow], cell: Cell) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        state = row.state(cell)
        counts[state] = counts.get(state, 0) + 1
    return counts


def line_label(line: SummaryLine) -> str:
    """The label with its scope when the rows are about code outside adapter loading."""
    return f"{line.label} ({OUTSIDE_LABEL})" if line.outside else line.label


def to_dicts(lines: Sequence[SummaryLine]) -> list[dict[str, Any]]:
    """Plain data (compat.json ``summary_groups``)."""
    return [
        {
            "group": line.group,
            "suite": line.suite,
            "label": line.label,
            "outside_adapter_loading": line.outside,
            "checks": [row.check_id for row in line.rows],
            "marks": {cell: line.mark(cell) for cell in line.counts},
            "counts": line.counts,
        }
        for line in lines
    ]
