"""``compat.json``: the machine-readable grid (schema 2).

Why a schema of its own rather than the raw records: consumers (the nightly diff, issue
drafting, dashboards) want merged, ordered, deduplicated data with first-pass /
first-regression already computed, and a version number to key on. Bump ``SCHEMA`` on any
incompatible change; adding fields is compatible.

Schema history: 1 = the grid. 2 = 1 plus ``run``, ``totals``, ``changes`` (the headline),
``history`` (trend), ``drift``, per-check ``breaks`` / ``last_good`` / ``first_bad`` and
per-result ``repro``. Every schema-1 field keeps its name and meaning, so a schema-1
reader can read schema 2 by ignoring what it does not know; the baseline reader
(``harness.report.diff``) reads both.

Top-level fields::

    schema        int    2
    generator     str    "adapter-compat <version>"
    generated_at  str    UTC, ISO 8601 ("2025-01-31T12:00:00Z")
    run           str | null  report folder name (runs/<run>/), null for --out elsewhere
    inputs        [str]  record files read, in reading order (later files win duplicates)
    records_read  int    records read (check + cell)
    warnings      [str]  torn/corrupt lines skipped and other oddities met while reading
    cells         [obj]  columns, ordered by diffusers version then torch version:
        name           cell name ("cell-0.26.3")
        diffusers      diffusers version (from recorded versions, else the cell name) | null
        torch          torch version | null
        label          short column header used by the Markdown/HTML grids
        status         ok | failed | crashed | timeout | install_failed | unknown
                       (unknown: check records but no cell record)
        failed         true for install_failed / crashed / timeout: checks without a
                       record in this cell did not run because the cell failed
        message        the cell record's message (install log tail, crash reason)
        exit_code      int | null
        duration_s     float, whole cell
        phase_seconds  {"install": s, "import": s, "suite": s}
        started_at     float, epoch seconds
        versions       {"diffusers": ..., "torch": ..., "peft": ..., ...}
        source         a source cell's commit facts {commit, date, subject,
                       declared_version, origin, ref, companions_of, ...}; {} for a release
    summary       {cell name: {pass, regression, unsupported, harness-error, skipped,
                   missing, cell-failed, total}}   counts per cell; ``total`` = records
    totals        the same counts summed over all cells
    changes       null without a baseline, else the headline:
        baseline, baseline_generated_at, baseline_run   which report was compared
        summary          "1 new regression, 0 fixes, 0 other changes"
        new_regressions  [change]  regression now; before: pass, other verdict, no
                                   record, or a regression with another observed
                                   outcome / exception type
        fixes            [change]  regression before, pass now
        other            [change]  any other verdict change (e.g. pass -> harness-error)
            change = {kind, check_id, suite, cell, label,
                      before: {verdict, observed, exc_type} | null,
                      after:  {verdict, observed, exc_type} | null}
        new_checks, removed_checks   [check_id]
        new_cells, removed_cells     [cell name]
        cell_status      [{cell, before, after}]  cells that started / stopped failing
    main_vs_release  [obj]  one per source cell built at or after the newest release
                  (harness/report/main_vs_release.py), newest commit first:
        name, headline       "main", "main vs the newest release: 2 rows newly red"
        source_cell, source  the source cell and its commit facts
        release_cell, release, good_ref   the newest release cell, its version, "v0.42.1"
        newly_red, bisected  how many rows pass in the release and are red here; how
                             many of them have a bisect record
        rows  [{check_id, verdict, observed, message, nodeid,
                status: found | no-first-bad | error | not-bisected,
                first_bad_commit: {sha, short, date, subject, pr, files, could_be} | null,
                note, steps, seconds, bisect: the commit bisect command line}]
    history       [{run, generated_at, totals}]  earlier runs then this one, oldest
                  first (at most 60): the trend chart's data, carried from report to
                  report so CI keeps a trend without a reports/runs folder
    drift         null, or the API drift timeline as {source, columns, rows, note}
    costs         {suites: {suite: s}, families: {check family: s} (the costliest),
                   cells: {cell: {wall_s, import_s, checks_s, overhead_s}}}: sums of the
                   records' durations; the next report compares its own with these
    suites        [str]  suite names in grid order
    checks        [obj]  rows, ordered by suite (harness/report/order.py: LoRA, IP-Adapter,
                         lifecycle, shared, robustness, drift, then others), then rows
                         outside adapter loading last, then check_id:
        check_id, suite, params
        first_pass             lowest diffusers version where it passes | null
        first_pass_cell        the cell of that pass | null
        first_regression       first diffusers version (ascending) with a regression
                               after a pass at an earlier version | null
        first_regression_cell  the cell of that regression | null
        regressed_in           [str] every diffusers version with a regression
        breaks                 [{last_good, last_good_cell, first_bad, first_bad_cell}]
                               every pass -> regression step between consecutive tested
                               versions (per torch axis), ascending
        last_good, first_bad   of the last break (the breakage still present) | null
        bisected_first_bad     the release ``adapter-compat bisect`` found (cached on the
                               machine that wrote the report) | null
        results                {cell name: {observed, verdict, expected, message,
                               exc_type, duration_s, traceback, nodeid, device, dtype,
                               versions, details, started_at, repro}}
                               a cell absent here has no record for the check; when
                               that cell's ``failed`` is true the check never ran.
                               repro (non-pass results only, else null):
                               {id, kind: standalone | rerun, file: "repro/<id>.py",
                               command: "adapter-compat repro <id>"}
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import __version__
from harness.report.costs import costs_for
from harness.report.grid import ReportModel
from harness.report.main_vs_release import compare
from harness.report.render_html import finite_json

SCHEMA = 2


def to_dict(model: ReportModel) -> dict[str, Any]:
    """The schema-2 document as plain data."""
    labels = model.column_labels()
    return {
        "schema": SCHEMA,
        "generator": f"adapter-compat {__version__}",
        "generated_at": model.generated_at,
        "run": model.run,
        "inputs": list(model.inputs),
        "records_read": model.records_read,
        "warnings": list(model.warnings),
        "cells": [
            {
                "name": c.name,
                "diffusers": c.diffusers,
                "torch": c.torch,
                "label": labels[c.name],
                "status": c.status,
                "failed": c.failed,
                "message": c.message,
                "exit_code": c.exit_code,
                "duration_s": c.duration_s,
                "phase_seconds": dict(c.phase_seconds),
                "started_at": c.started_at,
                "versions": dict(c.versions),
                "source": dict(c.source),
            }
            for c in model.cells
        ],
        "summary": model.summary(),
        "totals": model.totals(),
        "changes": model.changes.to_dict() if model.changes is not None else None,
        "main_vs_release": [comparison.to_dict() for comparison in compare(model)],
        "history": [point.to_dict() for point in model.history],
        "drift": model.drift.to_dict() if model.drift is not None else None,
        "costs": costs_for(model).to_dict(),
        "suites": model.suites,
        "checks": [
            {
                "check_id": row.check_id,
                "suite": row.suite,
                "params": row.params,
                "first_pass": row.first_pass,
                "first_pass_cell": row.first_pass_cell,
                "first_regression": row.first_regression,
                "first_regression_cell": row.first_regression_cell,
                "regressed_in": list(row.regressed_in),
                "breaks": [asdict(b) for b in row.breaks],
                "last_good": row.current_break.last_good if row.current_break else None,
                "first_bad": row.current_break.first_bad if row.current_break else None,
                "bisected_first_bad": model.bisected.get(row.check_id),
                "results": {
                    cell.name: _result(model, row.check_id, cell.name, row.results[cell.name])
                    for cell in model.cells
                    if cell.name in row.results
                },
            }
            for row in model.checks
        ],
    }


def _result(model: ReportModel, check_id: str, cell: str, result: Any) -> dict[str, Any]:
    data = asdict(result)
    repro = model.repro(check_id, cell)
    data["repro"] = repro.to_dict() if repro is not None else None
    return data


def render_json(model: ReportModel) -> str:
    # strict JSON: NaN / inf details become strings (jq, JSON.parse refuse bare NaN)
    data = finite_json(to_dict(model))
    return json.dumps(data, indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"


def write_json(model: ReportModel, path: Path) -> None:
    path.write_text(render_json(model), encoding="utf-8")
