"""The report's data model: JSONL records in, one ordered check x cell grid out.

Every renderer (JSON, Markdown, HTML) reads only this model, so the three outputs can never
disagree about ordering, merging or the first-pass / first-regression logic. Runs in the
outer environment (needs ``packaging``), never inside a matrix cell.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from harness.errors import UsageError
from harness.protocol.outcomes import Verdict
from harness.protocol.records import KIND_CELL, KIND_CHECK, read_records
from harness.report.order import row_sort_key

#: Verdicts in display order.
VERDICTS: tuple[str, ...] = tuple(v.value for v in Verdict)

#: Cell statuses meaning the cell's suite did not (fully) run: checks without a record in
#: such a cell show as "cell failed" rather than as an empty grid cell.
FAILED_CELL_STATUSES = frozenset({"install_failed", "crashed", "timeout", "interrupted"})

#: Name prefix of source cells (``harness.matrix.source``): ``cell-src-<sha7>``.
SOURCE_CELL_PREFIX = "cell-src-"
#: Downstream apps with cells of their own (``harness.matrix.targets``).
DOWNSTREAM_TARGETS = ("invokeai",)

#: Status of a cell seen only through check records (its runner wrote no cell record).
UNKNOWN_STATUS = "unknown"

#: Record kinds that carry no grid data and are skipped quietly (the plugin's per-session
#: import / suite timings, already folded into the cell record by the cell runner).
KNOWN_OTHER_KINDS = frozenset({"session"})

#: Record kind of a finished commit bisect of a newly red row (``bisect --newly-red``,
#: :mod:`harness.report.main_vs_release` reads them): kept apart from the grid.
KIND_BISECT = "bisect"

#: Reading warnings kept (and printed) at most; the rest are counted.
MAX_WARNINGS = 20

#: Verdicts that are red: the library did not do what the check expects.
RED_VERDICTS = frozenset({Verdict.REGRESSION.value, Verdict.BROKEN.value})

#: Grid states that are not verdicts.
STATE_MISSING = "missing"  # no record for this check in this cell
STATE_CELL_FAILED = "cell-failed"  # no record, and the cell failed to install / crashed

#: One symbol per grid state, shared by the Markdown and HTML grids.
SYMBOLS: dict[str, str] = {
    Verdict.PASS.value: "✅",
    Verdict.REGRESSION.value: "❌",
    Verdict.BROKEN.value: "⛔",
    Verdict.UNSUPPORTED.value: "➖",
    Verdict.HARNESS_ERROR.value: "⚠️",
    Verdict.SKIPPED.value: "⏭",
    STATE_CELL_FAILED: "💥",
    STATE_MISSING: "—",
}

LEGEND: dict[str, str] = {
    Verdict.PASS.value: "pass",
    Verdict.REGRESSION.value: "regression (not the expected outcome, where an older version passed: support lost)",
    Verdict.BROKEN.value: "broken (not the expected outcome, and no older version passed either)",
    Verdict.UNSUPPORTED.value: "unsupported (the API does not exist in this version)",
    Verdict.HARNESS_ERROR.value: "harness error (a bug in the harness, not a library finding)",
    Verdict.SKIPPED.value: "skipped (a prerequisite is missing here, e.g. CUDA or a real checkpoint)",
    STATE_CELL_FAILED: "cell failed to install / crashed / timed out / was interrupted: the check did not run",
    STATE_MISSING: "no record for this check in this cell",
}

_VERSION_IN_NAME = re.compile(r"(\d+\.\d+(?:\.\d+)?(?:(?:\.?dev|rc|a|b)\d*)?)")
_TORCH_IN_NAME = re.compile(r"torch-?(\d+\.\d+(?:\.\d+)?)")


@dataclass
class CellResult:
    """One check's record in one cell (the last record wins when duplicated)."""

    observed: str
    verdict: str
    expected: list[str]
    message: str = ""
    exc_type: str | None = None
    duration_s: float = 0.0
    traceback: str = ""
    nodeid: str = ""
    device: str = ""
    dtype: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0


@dataclass
class Cell:
    """One matrix cell (one column of the grid)."""

    name: str
    status: str = UNKNOWN_STATUS
    message: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    exit_code: int | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    has_cell_record: bool = False
    #: a source cell's commit facts (commit, date, subject, declared_version, origin, ref,
    #: companions_of); empty for a release
    source: dict[str, str] = field(default_factory=dict)

    @property
    def diffusers(self) -> str | None:
        """diffusers version: from recorded versions, else guessed from the cell name (a
        downstream app's cell: the app's version, the one its column stands for)."""
        value = _known(self.versions.get(self.target))
        if value:
            return value
        match = _VERSION_IN_NAME.search(self.name)
        return match.group(1) if match else None

    @property
    def torch(self) -> str | None:
        value = _known(self.versions.get("torch"))
        if value:
            return value
        match = _TORCH_IN_NAME.search(self.name)
        return match.group(1) if match else None

    @property
    def failed(self) -> bool:
        """True when the cell did not get to run its checks (install failed, crash, timeout)."""
        return self.status in FAILED_CELL_STATUSES

    @property
    def version_label(self) -> str:
        """The diffusers version this column stands for (the cell name when unknown);
        a downstream app's cell says whose version (``invokeai 5.4.1``)."""
        if self.target != "diffusers":
            return f"{self.target} {self.diffusers or self.name}"
        return self.diffusers or self.name

    @property
    def target(self) -> str:
        """Whose loader the column tests: ``diffusers``, or a downstream app
        (``harness.matrix.targets``: its cells are named ``<app>-<version>`` and record the
        app's version)."""
        for app in DOWNSTREAM_TARGETS:
            if self.name.startswith(f"{app}-") or _known(self.versions.get(app)):
                return app
        return "diffusers"

    @property
    def from_source(self) -> bool:
        """A cell built from a diffusers commit (``adapter-compat run --source``)."""
        return self.name.startswith(SOURCE_CELL_PREFIX)

    def sort_key(self) -> tuple[Any, ...]:
        # source cells test what comes after the releases: they sort after all of them
        # a downstream app's cells form their own group, after every diffusers cell
        return (
            self.target != "diffusers",
            self.target,
            self.from_source,
            _version_key(self.diffusers),
            _version_key(self.torch),
            self.name,
        )


@dataclass(frozen=True)
class Break:
    """A pass in ``last_good`` followed (next tested version) by a regression in
    ``first_bad``: the released versions a bisection narrows down between."""

    last_good: str
    last_good_cell: str
    first_bad: str
    first_bad_cell: str


@dataclass
class CheckRow:
    """One check (one row of the grid) with its per-cell results."""

    check_id: str
    suite: str
    params: dict[str, Any] = field(default_factory=dict)
    results: dict[str, CellResult] = field(default_factory=dict)
    first_pass: str | None = None
    first_pass_cell: str | None = None
    first_regression: str | None = None
    first_regression_cell: str | None = None
    regressed_in: list[str] = field(default_factory=list)
    #: Every pass -> regression step along the matrix (per torch axis), ascending: the
    #: last passing and the first failing released version around each breakage.
    breaks: list[Break] = field(default_factory=list)

    @property
    def current_break(self) -> Break | None:
        """The breakage still present in the newest failing version (the one to bisect)."""
        return self.breaks[-1] if self.breaks else None

    def state(self, cell: Cell) -> str:
        """Verdict in ``cell``, or ``missing`` / ``cell-failed`` when there is no record."""
        result = self.results.get(cell.name)
        if result is not None:
            return result.verdict
        return STATE_CELL_FAILED if cell.failed else STATE_MISSING

    def all_pass(self, cells: Sequence[Cell]) -> bool:
        return all(self.state(c) == Verdict.PASS.value for c in cells)


@dataclass
class ReportModel:
    """Everything a renderer needs, already ordered."""

    generated_at: str
    inputs: list[str]
    cells: list[Cell]
    checks: list[CheckRow]
    warnings: list[str] = field(default_factory=list)
    records_read: int = 0
    #: Filled by :func:`harness.report.write.write_report`, not by :func:`build_model`: the
    #: report folder's name, the comparison with a baseline report, the trend history,
    #: the API drift timeline and the repro scripts of non-passing results.
    run: str | None = None
    changes: Any = None  # harness.report.diff.Changes | None
    history: list[Any] = field(default_factory=list)  # [harness.report.trend.Point]
    drift: Any = None  # harness.report.drift.DriftSection | None
    repros: dict[tuple[str, str], Any] = field(default_factory=dict)  # (check, cell) -> Repro
    #: check id -> first bad release found by ``adapter-compat bisect`` on this machine
    #: (read by the caller, passed to ``write_report(first_bad=...)``).
    bisected: dict[str, str] = field(default_factory=dict)
    #: ``bisect`` records read with the grid's (first bad commits of newly red rows), in
    #: reading order: a later record for the same row and commit wins.
    bisections: list[dict[str, Any]] = field(default_factory=list)
    #: seconds per suite / family / cell, compared with the baseline's (filled by ``enrich``;
    #: renderers compute it without a baseline when it is None)
    costs: Any = None  # harness.report.costs.Costs | None

    def repro(self, check_id: str, cell: str) -> Any:
        return self.repros.get((check_id, cell))

    def cell(self, name: str) -> Cell | None:
        return next((c for c in self.cells if c.name == name), None)

    @property
    def suites(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.checks:
            seen.setdefault(row.suite, None)
        return list(seen)

    def checks_in(self, suite: str) -> list[CheckRow]:
        return [row for row in self.checks if row.suite == suite]

    def summary(self) -> dict[str, dict[str, int]]:
        """Per cell: count of each verdict, plus ``missing`` / ``cell-failed`` / ``total``."""
        out: dict[str, dict[str, int]] = {}
        for cell in self.cells:
            counts = dict.fromkeys(VERDICTS, 0)
            counts[STATE_MISSING] = 0
            counts[STATE_CELL_FAILED] = 0
            for row in self.checks:
                state = row.state(cell)
                counts[state] = counts.get(state, 0) + 1
            counts["total"] = sum(1 for row in self.checks if cell.name in row.results)
            out[cell.name] = counts
        return out

    def totals(self) -> dict[str, int]:
        """Counts over the whole grid (all cells), same keys as :meth:`summary`."""
        total: dict[str, int] = {}
        for counts in self.summary().values():
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
        return total

    def column_labels(self) -> dict[str, str]:
        """Short column header per cell: ``0.26.3``; adds torch when two cells share a
        diffusers version; falls back to the cell name when still ambiguous."""
        labels: dict[str, str] = {}
        by_diffusers: dict[str, int] = {}
        for cell in self.cells:
            by_diffusers[cell.version_label] = by_diffusers.get(cell.version_label, 0) + 1
        for cell in self.cells:
            label = cell.version_label
            if cell.from_source:  # the declared version alone would pass for a release
                label = f"{label} @{cell.name.removeprefix(SOURCE_CELL_PREFIX)}"
            elif by_diffusers[label] > 1 and cell.torch:
                label = f"{label} / torch {cell.torch}"
            labels[cell.name] = label
        if len(set(labels.values())) != len(labels):
            counts: dict[str, int] = {}
            for label in labels.values():
                counts[label] = counts.get(label, 0) + 1
            labels = {name: (name if counts[lab] > 1 else lab) for name, lab in labels.items()}
        return labels


# -- loading -------------------------------------------------------------------------------
def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """RESULTS arguments -> record files. A folder contributes every ``*.jsonl`` below it
    (sorted, so merges are reproducible); a missing path is a usage error."""
    files: list[Path] = []
    given = [Path(p) for p in paths]
    if not given:
        raise UsageError("no RESULTS given: pass one or more .jsonl files or folders holding them")
    for path in given:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.jsonl") if p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(
                f"results path {str(path)!r} does not exist: pass .jsonl record files or "
                "folders holding them (e.g. the results folder a `nox` run wrote)"
            )
    return files


def load_records(files: Sequence[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """All records in reading order, plus the warnings (torn lines...) met on the way."""
    records: list[dict[str, Any]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in files:
            try:
                records.extend(read_records([path]))
            except OSError as exc:
                raise UsageError(
                    f"cannot read results file {str(path)!r}: {exc.strerror or exc}; "
                    "check the path and its permissions"
                ) from exc
    notes = [str(w.message) for w in caught]
    if len(notes) > MAX_WARNINGS:  # a binary or foreign file would otherwise flood the report
        extra = len(notes) - MAX_WARNINGS
        notes = notes[:MAX_WARNINGS] + [f"... and {extra} more unreadable line(s)"]
    return records, notes


def build_model(
    records: Iterable[dict[str, Any]],
    inputs: Sequence[str] = (),
    warnings_seen: Sequence[str] = (),
    generated_at: str | None = None,
) -> ReportModel:
    """Merge records into the grid: duplicates of one (cell, check) -> the last one wins;
    cells ordered by diffusers then torch version; checks by suite (in
    :data:`harness.report.order.SUITE_ORDER`) then check id."""
    notes = list(warnings_seen)
    cells: dict[str, Cell] = {}
    check_versions: dict[str, dict[str, str]] = {}
    rows: dict[str, CheckRow] = {}
    bisections: list[dict[str, Any]] = []
    count = 0
    skipped_unknown = 0
    for rec in records:
        count += 1
        kind = rec.get("kind") or (KIND_CHECK if "check_id" in rec else None)
        if kind == KIND_CELL and rec.get("cell"):
            _merge_cell_record(cells, rec)
        elif kind == KIND_BISECT and rec.get("check_id"):
            bisections.append(rec)
        elif kind == KIND_CHECK and rec.get("check_id"):
            cell_name = str(rec.get("cell") or "unnamed-cell")
            cells.setdefault(cell_name, Cell(name=cell_name))
            versions = _str_dict(rec.get("versions"))
            if versions:
                check_versions.setdefault(cell_name, {}).update(versions)
            _merge_check_record(rows, cell_name, rec, versions)
        elif kind not in KNOWN_OTHER_KINDS:
            skipped_unknown += 1
    if skipped_unknown:
        notes.append(f"ignored {skipped_unknown} record(s) that are neither a check nor a cell")
    for name, versions in check_versions.items():
        # What the checks saw installed beats what the runner meant to install.
        merged = dict(cells[name].versions)
        merged.update({k: v for k, v in versions.items() if _known(v)})
        cells[name].versions = merged
    ordered_cells = sorted(cells.values(), key=Cell.sort_key)
    ordered_rows = sorted(rows.values(), key=row_sort_key)
    for row in ordered_rows:
        _broken_until_passed(row, ordered_cells)
        _first_pass_and_regression(row, ordered_cells)
        _breaks(row, ordered_cells)
    return ReportModel(
        generated_at=generated_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        inputs=[str(p) for p in inputs],
        cells=ordered_cells,
        checks=ordered_rows,
        warnings=notes,
        records_read=count,
        bisections=bisections,
    )


def load_model(paths: Iterable[str | os.PathLike[str]]) -> ReportModel:
    """RESULTS arguments -> model; a usage error when they hold no records at all."""
    files = expand_inputs(paths)
    records, notes = load_records(files)
    if not records:
        where = ", ".join(str(p) for p in files) or "the given folder(s)"
        raise UsageError(
            f"no records found in {where}: run the suites first (e.g. `nox`) or point "
            "RESULTS at the .jsonl files they wrote"
        )
    for note in notes:  # surfaced to callers (the CLI prints them) and kept in the report
        warnings.warn(note, UserWarning, stacklevel=2)
    return build_model(records, inputs=[str(f) for f in files], warnings_seen=notes)


# -- helpers -------------------------------------------------------------------------------
def _merge_cell_record(cells: dict[str, Cell], rec: dict[str, Any]) -> None:
    name = str(rec["cell"])
    cell = cells.setdefault(name, Cell(name=name))
    cell.status = str(rec.get("status") or UNKNOWN_STATUS)
    cell.message = str(rec.get("message") or "")
    cell.versions.update({k: v for k, v in _str_dict(rec.get("versions")).items() if _known(v)})
    cell.duration_s = _float(rec.get("duration_s"))
    exit_code = rec.get("exit_code")
    cell.exit_code = exit_code if isinstance(exit_code, int) else None
    phases = rec.get("phase_seconds")
    cell.phase_seconds = (
        {str(k): _float(v) for k, v in phases.items()} if isinstance(phases, dict) else {}
    )
    cell.started_at = _float(rec.get("started_at"))
    cell.has_cell_record = True
    source = _str_dict(rec.get("source"))
    if source:
        cell.source = source


def _merge_check_record(
    rows: dict[str, CheckRow], cell_name: str, rec: dict[str, Any], versions: dict[str, str]
) -> None:
    check_id = str(rec["check_id"])
    suite = str(rec.get("suite") or check_id.split("/", 1)[0] or "misc")
    row = rows.setdefault(check_id, CheckRow(check_id=check_id, suite=suite))
    params = rec.get("params")
    if isinstance(params, dict) and params:
        row.params = params
    expected = rec.get("expected")
    row.results[cell_name] = CellResult(
        observed=str(rec.get("observed") or ""),
        verdict=str(rec.get("verdict") or Verdict.HARNESS_ERROR.value),
        expected=[str(e) for e in expected] if isinstance(expected, list) else [],
        message=str(rec.get("message") or ""),
        exc_type=rec.get("exc_type") or None,
        duration_s=_float(rec.get("duration_s")),
        traceback=str(rec.get("traceback") or ""),
        nodeid=str(rec.get("nodeid") or ""),
        device=str(rec.get("device") or ""),
        dtype=str(rec.get("dtype") or ""),
        versions=versions,
        details=rec.get("details") if isinstance(rec.get("details"), dict) else {},
        started_at=_float(rec.get("started_at")),
    )


def _columns(cells: Sequence[Cell]) -> list[list[Cell]]:
    """Cells per torch axis, each in ascending diffusers order."""
    by_torch: dict[str | None, list[Cell]] = {}
    for cell in cells:
        by_torch.setdefault(cell.torch, []).append(cell)
    return list(by_torch.values())


def _broken_until_passed(row: CheckRow, cells: Sequence[Cell]) -> None:
    """Cells record every red result as ``regression``; only a row that passed in an
    older cell of the same torch axis has regressed. Before its first pass it is
    ``broken`` (red, but nothing was lost)."""
    for column in _columns(cells):
        passed = False
        for cell in column:
            result = row.results.get(cell.name)
            if result is None:
                continue
            if result.verdict == Verdict.PASS.value:
                passed = True
            elif result.verdict == Verdict.REGRESSION.value and not passed:
                result.verdict = Verdict.BROKEN.value


def promote_with_baseline(model: ReportModel, passed_before: set[tuple[str, str]]) -> int:
    """A ``broken`` result whose (check, cell) passed in the baseline report has regressed
    since: make it a ``regression``. Returns how many were promoted."""
    promoted = 0
    for row in model.checks:
        changed = False
        for cell_name, result in row.results.items():
            if (
                result.verdict == Verdict.BROKEN.value
                and (row.check_id, cell_name) in passed_before
            ):
                result.verdict = Verdict.REGRESSION.value
                changed = promoted = promoted + 1
        if changed:
            row.first_pass = row.first_pass_cell = None
            row.first_regression = row.first_regression_cell = None
            row.regressed_in = []
            _first_pass_and_regression(row, model.cells)
            _breaks(row, model.cells)
    return promoted


def _breaks(row: CheckRow, cells: Sequence[Cell]) -> None:
    """pass -> regression transitions between consecutive *tested* versions, per torch
    axis (cells with other verdicts, e.g. unsupported, are stepped over)."""
    found: list[Break] = []
    for column in _columns(cells):
        previous: tuple[str, Cell] | None = None
        for cell in column:
            result = row.results.get(cell.name)
            if result is None or result.verdict not in (
                Verdict.PASS.value,
                Verdict.REGRESSION.value,
            ):
                continue
            if (
                result.verdict == Verdict.REGRESSION.value
                and previous is not None
                and previous[0] == Verdict.PASS.value
            ):
                good = previous[1]
                found.append(Break(good.version_label, good.name, cell.version_label, cell.name))
            previous = (result.verdict, cell)
    found.sort(key=lambda b: (_version_key(b.first_bad), b.first_bad_cell))
    row.breaks = found


def _first_pass_and_regression(row: CheckRow, cells: Sequence[Cell]) -> None:
    """first_pass: lowest version where the check passes. first_regression: first version
    (ascending) with a regression (red after a pass in an earlier column). regressed_in:
    every version where it is a regression (``broken`` cells are not)."""
    passed_before = False
    for cell in cells:
        result = row.results.get(cell.name)
        if result is None:
            continue
        if result.verdict == Verdict.REGRESSION.value:
            if cell.version_label not in row.regressed_in:
                row.regressed_in.append(cell.version_label)
            if passed_before and row.first_regression is None:
                row.first_regression = cell.version_label
                row.first_regression_cell = cell.name
        elif result.verdict == Verdict.PASS.value:
            if row.first_pass is None:
                row.first_pass = cell.version_label
                row.first_pass_cell = cell.name
            passed_before = True


def _version_key(text: str | None) -> tuple[int, Any]:
    """Sortable key: real versions first in version order, then unparsable names."""
    if not text:
        return (2, "")
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def _known(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text if text and text not in {"absent", "?", "unknown"} else None


def _str_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
