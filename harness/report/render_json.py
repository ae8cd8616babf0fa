"""``compat.json``: the machine-readable grid (schema 1).

Why a schema of its own rather than the raw records: consumers (the nightly diff, issue
drafting, dashboards) want merged, ordered, deduplicated data with first-pass /
first-regression already computed, and a version number to key on. Bump ``SCHEMA`` on any
incompatible change; adding fields is compatible.

Top-level fields::

    schema        int    always 1 for this layout
    generator     str    "adapter-compat <version>"
    generated_at  str    UTC, ISO 8601 ("2025-01-31T12:00:00Z")
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
    summary       {cell name: {pass, regression, unsupported, harness-error, skipped,
                   missing, cell-failed, total}}   counts per cell; ``total`` = records
    suites        [str]  suite names in grid order
    checks        [obj]  rows, ordered by suite then check_id:
        check_id, suite, params
        first_pass             lowest diffusers version where it passes | null
        first_pass_cell        the cell of that pass | null
        first_regression       first diffusers version (ascending) with a regression
                               after a pass at an earlier version | null
        first_regression_cell  the cell of that regression | null
        regressed_in           [str] every diffusers version with a regression
        results                {cell name: {observed, verdict, expected, message,
                               exc_type, duration_s, traceback, nodeid, device, dtype,
                               versions, details, started_at}}
                               a cell absent here has no record for the check; when
                               that cell's ``failed`` is true the check never ran.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import __version__
from harness.report.model import ReportModel

SCHEMA = 1


def to_dict(model: ReportModel) -> dict[str, Any]:
    """The schema-1 document as plain data."""
    labels = model.column_labels()
    return {
        "schema": SCHEMA,
        "generator": f"adapter-compat {__version__}",
        "generated_at": model.generated_at,
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
            }
            for c in model.cells
        ],
        "summary": model.summary(),
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
                "results": {
                    cell.name: asdict(row.results[cell.name])
                    for cell in model.cells
                    if cell.name in row.results
                },
            }
            for row in model.checks
        ],
    }


def render_json(model: ReportModel) -> str:
    return json.dumps(to_dict(model), indent=2, sort_keys=False, default=str) + "\n"


def write_json(model: ReportModel, path: Path) -> None:
    path.write_text(render_json(model), encoding="utf-8")
