"""``compat.html``: the colour-coded grid people read (self-contained, works offline).

Why jinja2: the page is mostly markup, and a template with autoescaping on makes
"everything from records is escaped" the default rather than something each string must
remember. The renderer only prepares plain view data; the template decides layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness import __version__
from harness.outcomes import Verdict
from harness.report.model import (
    LEGEND,
    STATE_CELL_FAILED,
    STATE_MISSING,
    SYMBOLS,
    VERDICTS,
    Cell,
    CheckRow,
    ReportModel,
)

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "compat.html.j2"

#: Grid states in legend / summary order.
STATES: tuple[str, ...] = (*VERDICTS, STATE_CELL_FAILED, STATE_MISSING)


def environment() -> Environment:
    """Autoescape on for every template: record text is never trusted as markup."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = _pretty
    return env


def render_html(model: ReportModel) -> str:
    return environment().get_template(TEMPLATE_NAME).render(**view(model))


def write_html(model: ReportModel, path: Path) -> None:
    path.write_text(render_html(model), encoding="utf-8")


# -- view data -----------------------------------------------------------------------------
def view(model: ReportModel) -> dict[str, Any]:
    """Plain data for the template: columns, per-suite rows of ready-made grid cells."""
    labels = model.column_labels()
    summary = model.summary()
    totals = model.totals()
    columns = [_column(cell, labels[cell.name], summary[cell.name]) for cell in model.cells]
    suites = []
    for suite in model.suites:
        rows = model.checks_in(suite)
        suites.append(
            {
                "name": suite,
                "rows": [_row(row, model.cells, labels) for row in rows],
                "counts": [_suite_counts(rows, cell) for cell in model.cells],
            }
        )
    return {
        "version": __version__,
        "generated_at": model.generated_at,
        "inputs": model.inputs,
        "warnings": model.warnings,
        "n_checks": len(model.checks),
        "n_cells": len(model.cells),
        "n_failed_cells": sum(1 for c in model.cells if c.failed),
        "totals": totals,
        "columns": columns,
        "suites": suites,
        "legend": [
            {"state": s, "symbol": SYMBOLS[s], "text": LEGEND[s], "css": _css(s)} for s in STATES
        ],
        "states": [{"state": s, "symbol": SYMBOLS[s], "css": _css(s)} for s in STATES[:-1]],
    }


def _css(state: str) -> str:
    return "s-" + "".join(ch if ch.isalnum() else "-" for ch in state)


def _column(cell: Cell, label: str, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "name": cell.name,
        "label": label,
        "diffusers": cell.diffusers or "?",
        "torch": cell.torch or "?",
        "status": cell.status,
        "failed": cell.failed,
        "message": cell.message,
        "exit_code": cell.exit_code,
        "duration_s": cell.duration_s,
        "phase_seconds": cell.phase_seconds,
        "versions": cell.versions,
        "counts": counts,
    }


def _suite_counts(rows: list[CheckRow], cell: Cell) -> list[dict[str, Any]]:
    counts = dict.fromkeys(STATES, 0)
    for row in rows:
        counts[row.state(cell)] = counts.get(row.state(cell), 0) + 1
    return [
        {"state": s, "symbol": SYMBOLS[s], "css": _css(s), "n": counts[s]}
        for s in STATES
        if counts[s] and s != STATE_MISSING
    ]


def _row(row: CheckRow, cells: list[Cell], labels: dict[str, str]) -> dict[str, Any]:
    grid = []
    for cell in cells:
        state = row.state(cell)
        result = row.results.get(cell.name)
        grid.append(
            {
                "state": state,
                "symbol": SYMBOLS.get(state, "?"),
                "css": _css(state),
                "label": labels[cell.name],
                "cell": cell.name,
                "cell_status": cell.status,
                "cell_message": cell.message,
                "cell_exit_code": cell.exit_code,
                "result": result,
                "open_traceback": state in (Verdict.REGRESSION.value, Verdict.HARNESS_ERROR.value),
            }
        )
    return {
        "check_id": row.check_id,
        "params": row.params,
        "first_pass": row.first_pass,
        "first_pass_cell": row.first_pass_cell,
        "first_regression": row.first_regression,
        "first_regression_cell": row.first_regression_cell,
        "regressed_in": row.regressed_in,
        "non_pass": any(r.verdict != Verdict.PASS.value for r in row.results.values()),
        "grid": grid,
    }


def _pretty(value: Any) -> str:
    """JSON-ish dump for params/details panels (escaped later by autoescape)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
