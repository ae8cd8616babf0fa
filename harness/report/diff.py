"""What changed since a baseline report: the headline of every report.

Why per (check, cell) rather than per check: a regression that spreads to one more
diffusers version is news even when the check was already red elsewhere. The baseline is
a ``compat.json`` (schema 1 or 2): the previous run under ``reports/runs/`` by default, or
the previous night's artefact in CI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.protocol.outcomes import Verdict
from harness.report.grid import FAILED_CELL_STATUSES, STATE_CELL_FAILED, Cell, ReportModel

#: Schemas of compat.json this module can read as a baseline.
READABLE_SCHEMAS = (1, 2)

REGRESSION = Verdict.REGRESSION.value
BROKEN = Verdict.BROKEN.value
PASS = Verdict.PASS.value
RED = frozenset({REGRESSION, BROKEN})

#: Change kinds, in headline order.
NEW_REGRESSION = "new-regression"
FIXED = "fixed"
OTHER = "changed"


@dataclass(frozen=True)
class State:
    """One (check, cell) in one report: verdict (or ``cell-failed``) and what was seen."""

    verdict: str
    observed: str = ""
    exc_type: str | None = None

    def describe(self) -> str:
        if self.verdict in RED and self.observed:
            exc = f", {self.exc_type}" if self.exc_type else ""
            return f"{self.verdict} ({self.observed}{exc})"
        return self.verdict


@dataclass(frozen=True)
class Change:
    """One (check, cell) whose state differs from the baseline."""

    kind: str
    check_id: str
    suite: str
    cell: str
    label: str
    before: State | None  # None: no record in the baseline (new check or new cell)
    after: State | None  # None: no record now

    def describe(self) -> str:
        before = self.before.describe() if self.before else "no record"
        after = self.after.describe() if self.after else "no record"
        return f"{before} → {after}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "check_id": self.check_id,
            "suite": self.suite,
            "cell": self.cell,
            "label": self.label,
            "before": _state_dict(self.before),
            "after": _state_dict(self.after),
        }


@dataclass
class Baseline:
    """The parts of an earlier compat.json a comparison needs."""

    path: str
    generated_at: str
    run: str | None
    states: dict[tuple[str, str], State]
    cell_status: dict[str, str]
    check_ids: set[str]
    history: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    #: the earlier report's ``costs`` section (harness.report.costs), for run-over-run cost
    costs: dict[str, Any] = field(default_factory=dict)
    #: source cells of the earlier report: name -> {origin, ref, commit, ...}
    sources: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Changes:
    """The headline: new regressions, fixes and other changes since ``baseline``."""

    baseline: str
    baseline_generated_at: str
    baseline_run: str | None
    new_regressions: list[Change] = field(default_factory=list)
    fixes: list[Change] = field(default_factory=list)
    other: list[Change] = field(default_factory=list)
    new_checks: list[str] = field(default_factory=list)
    removed_checks: list[str] = field(default_factory=list)
    new_cells: list[str] = field(default_factory=list)
    removed_cells: list[str] = field(default_factory=list)
    cell_status: list[dict[str, str]] = field(default_factory=list)  # {cell, before, after}

    @property
    def quiet(self) -> bool:
        """Nothing a reader must act on changed."""
        return not (self.new_regressions or self.fixes or self.other or self.cell_status)

    def summary_line(self) -> str:
        parts = [
            _n(len(self.new_regressions), "new regression"),
            _n(len(self.fixes), "fix", "fixes"),
            _n(len(self.other), "other change"),
        ]
        if self.cell_status:
            parts.append(_n(len(self.cell_status), "cell status change"))
        if self.new_checks:
            parts.append(_n(len(self.new_checks), "new check"))
        if self.removed_checks:
            parts.append(_n(len(self.removed_checks), "removed check"))
        return ", ".join(parts)

    def changed_pairs(self) -> set[tuple[str, str]]:
        return {(c.check_id, c.cell) for c in (*self.new_regressions, *self.fixes, *self.other)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "baseline_generated_at": self.baseline_generated_at,
            "baseline_run": self.baseline_run,
            "summary": self.summary_line(),
            "new_regressions": [c.to_dict() for c in self.new_regressions],
            "fixes": [c.to_dict() for c in self.fixes],
            "other": [c.to_dict() for c in self.other],
            "new_checks": list(self.new_checks),
            "removed_checks": list(self.removed_checks),
            "new_cells": list(self.new_cells),
            "removed_cells": list(self.removed_cells),
            "cell_status": list(self.cell_status),
        }


# -- loading -------------------------------------------------------------------------------
def resolve_baseline_path(path: str | os.PathLike[str]) -> Path:
    """A compat.json, or a report folder holding one."""
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / "compat.json"
    if not candidate.is_file():
        raise UsageError(
            f"baseline {str(path)!r} is not a compat.json or a report folder holding one: "
            "pass --baseline with an earlier report (e.g. reports/runs/<ts>)"
        )
    return candidate


def read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read report {str(path)!r}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") not in READABLE_SCHEMAS:
        raise UsageError(
            f"{str(path)!r} is not an adapter-compat compat.json (schema "
            f"{'/'.join(map(str, READABLE_SCHEMAS))})"
        )
    return doc


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    file = resolve_baseline_path(path)
    return baseline_from_doc(read_doc(file), str(file))


def baseline_from_doc(doc: dict[str, Any], path: str) -> Baseline:
    cell_status = {str(c.get("name")): str(c.get("status") or "") for c in doc.get("cells", [])}
    failed = {name for name, status in cell_status.items() if status in FAILED_CELL_STATUSES}
    states: dict[tuple[str, str], State] = {}
    check_ids: set[str] = set()
    for check in doc.get("checks", []):
        check_id = str(check.get("check_id"))
        check_ids.add(check_id)
        results = check.get("results") or {}
        for cell in cell_status:
            res = results.get(cell)
            if isinstance(res, dict):
                states[(check_id, cell)] = State(
                    str(res.get("verdict") or ""),
                    str(res.get("observed") or ""),
                    res.get("exc_type") or None,
                )
            elif cell in failed:
                states[(check_id, cell)] = State(STATE_CELL_FAILED)
    totals = doc.get("totals")
    if not isinstance(totals, dict):
        totals = _totals_from_summary(doc.get("summary") or {})
    return Baseline(
        path=path,
        generated_at=str(doc.get("generated_at") or ""),
        run=doc.get("run") or Path(path).parent.name or None,
        states=states,
        cell_status=cell_status,
        check_ids=check_ids,
        history=[h for h in doc.get("history") or [] if isinstance(h, dict)],
        totals={str(k): int(v) for k, v in totals.items() if isinstance(v, int)},
        costs=doc.get("costs") if isinstance(doc.get("costs"), dict) else {},
        sources={
            str(c.get("name")): {str(k): str(v) for k, v in c["source"].items()}
            for c in doc.get("cells", [])
            if isinstance(c.get("source"), dict) and c["source"]
        },
    )


def previous_source_cell(cell: Cell, baseline: Baseline) -> str | None:
    """The baseline's column a new source cell continues: last night's cell of the same
    branch (origin and ref), so ``main`` moving to a new commit compares with main before
    it instead of counting every red row of the new column as news."""
    if not cell.from_source:
        return None
    key = (cell.source.get("origin"), cell.source.get("ref"))
    same = [
        name
        for name, source in baseline.sources.items()
        if (source.get("origin"), source.get("ref")) == key and name in baseline.cell_status
    ]
    return sorted(same, key=lambda n: baseline.sources[n].get("date", ""))[-1] if same else None


def _totals_from_summary(summary: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in summary.values():
        if isinstance(counts, dict):
            for key, value in counts.items():
                if isinstance(value, int):
                    total[key] = total.get(key, 0) + value
    return total


def previous_run(reports_root: Path, exclude: Iterable[Path] = ()) -> Path | None:
    """The newest ``<root>/runs/*/compat.json`` other than ``exclude`` (by folder name,
    which is a UTC timestamp)."""
    runs = Path(reports_root) / "runs"
    if not runs.is_dir():
        return None
    skip = {Path(p).resolve() for p in exclude}
    found = sorted(
        (p for p in runs.iterdir() if (p / "compat.json").is_file() and p.resolve() not in skip),
        key=lambda p: p.name,
    )
    return found[-1] / "compat.json" if found else None


# -- comparing -----------------------------------------------------------------------------
def current_states(model: ReportModel) -> dict[tuple[str, str], State]:
    states: dict[tuple[str, str], State] = {}
    for row in model.checks:
        for cell in model.cells:
            result = row.results.get(cell.name)
            if result is not None:
                states[(row.check_id, cell.name)] = State(
                    result.verdict, result.observed, result.exc_type
                )
            elif cell.failed:
                states[(row.check_id, cell.name)] = State(STATE_CELL_FAILED)
    return states


def compare(model: ReportModel, baseline: Baseline) -> Changes:
    """Every (check, cell) whose state differs from the baseline, classified.

    new regression: a regression now, and not the same regression (observed outcome and
    exception type) before: a pass, another verdict, no record, or another kind of failure.
    fixed: a regression before, a pass now. Everything else that differs is ``changed``.
    Cells only in one of the two reports are listed, not expanded per check."""
    changes = Changes(baseline.path, baseline.generated_at, baseline.run)
    labels = model.column_labels()
    now = current_states(model)
    current_cells = {c.name for c in model.cells}
    changes.new_cells = sorted(current_cells - set(baseline.cell_status))
    changes.removed_cells = sorted(set(baseline.cell_status) - current_cells)
    current_ids = {row.check_id for row in model.checks}
    changes.new_checks = sorted(current_ids - baseline.check_ids)
    changes.removed_checks = sorted(baseline.check_ids - current_ids)
    for cell in model.cells:
        before = baseline.cell_status.get(cell.name)
        if before is not None and (before in FAILED_CELL_STATUSES) != cell.failed:
            changes.cell_status.append({"cell": cell.name, "before": before, "after": cell.status})
    compared_cells = [c for c in model.cells if c.name in baseline.cell_status]
    new_cells = set(changes.new_cells)
    continues = {c.name: previous_source_cell(c, baseline) for c in model.cells}
    for row in model.checks:
        for cell in model.cells:
            after = now.get((row.check_id, cell.name))
            before_cell = continues.get(cell.name) if cell.name in new_cells else None
            if before_cell is not None:  # the same branch at a newer commit
                before = baseline.states.get((row.check_id, before_cell))
                kind = None if before == after else _kind(before, after)
                if kind is not None:
                    change = Change(
                        kind, row.check_id, row.suite, cell.name, labels[cell.name], before, after
                    )
                    {
                        NEW_REGRESSION: changes.new_regressions,
                        FIXED: changes.fixes,
                        OTHER: changes.other,
                    }[kind].append(change)
                continue
            if cell.name in new_cells:
                # A new column: only its regressions are headline news.
                if after is not None and after.verdict == REGRESSION:
                    changes.new_regressions.append(
                        Change(NEW_REGRESSION, row.check_id, row.suite, cell.name, labels[cell.name], None, after)
                    )  # fmt: skip
                continue
            if cell not in compared_cells:
                continue
            before = baseline.states.get((row.check_id, cell.name))
            if before == after:
                continue
            kind = _kind(before, after)
            if kind is None:
                continue
            change = Change(
                kind, row.check_id, row.suite, cell.name, labels[cell.name], before, after
            )
            {NEW_REGRESSION: changes.new_regressions, FIXED: changes.fixes, OTHER: changes.other}[
                kind
            ].append(change)
    return changes


def _kind(before: State | None, after: State | None) -> str | None:
    if after is not None and after.verdict in RED:
        if before is not None and before.verdict in RED and _same_failure(before, after):
            return None  # same failure; only the message (addresses, timings) moved
        if after.verdict == REGRESSION:
            return NEW_REGRESSION
        # broken: it never passed in an older cell; news only if it was something else here
        return OTHER if before is not None and before.verdict != after.verdict else None
    if before is not None and before.verdict in RED and after is not None:
        return FIXED if after.verdict == PASS else OTHER
    if before is None:
        # A check new to this cell: only a harness error (our bug) is news besides a
        # regression; new green / grey checks are counted in new_checks.
        return OTHER if after is not None and after.verdict == Verdict.HARNESS_ERROR.value else None
    if before.verdict == (after.verdict if after else None):
        return None  # e.g. an unsupported check whose message changed
    return OTHER


def _same_failure(a: State, b: State) -> bool:
    return (a.observed, a.exc_type) == (b.observed, b.exc_type)


def _state_dict(state: State | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {"verdict": state.verdict, "observed": state.observed, "exc_type": state.exc_type}


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"
