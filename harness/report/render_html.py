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
from markupsafe import Markup

from harness import __version__
from harness.protocol.outcomes import Verdict
from harness.report import trend
from harness.report.grid import (
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

#: Parameter keys offered as filters first (then the most widely used others).
PREFERRED_PARAMS = ("arch", "architecture", "pipeline", "model", "format", "fmt", "variant")

#: A parameter becomes a filter when it has between 2 and this many distinct values...
MAX_FILTER_VALUES = 40

#: ... and at most this many parameter filters are shown (the bar must stay one line).
MAX_PARAM_FILTERS = 5

#: Verdicts whose panels embed the repro script (others link to the file).
_FINDING_STATES = (Verdict.REGRESSION.value, Verdict.BROKEN.value, Verdict.HARNESS_ERROR.value)


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
    changed = model.changes.changed_pairs() if model.changes is not None else set()
    suites = []
    for suite in model.suites:
        rows = model.checks_in(suite)
        suites.append(
            {
                "name": suite,
                "rows": [_row(model, row, labels, changed) for row in rows],
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
        "changes": _changes(model),
        "trend_svg": Markup(trend.render_svg(model.history)),
        "n_runs": len(model.history),
        "first_bad": _first_bad(model),
        "filters": _filters(model),
        "verdict_options": [
            {"value": s, "text": f"{SYMBOLS[s]} has {s}"} for s in (*VERDICTS, STATE_CELL_FAILED)
        ],
        "has_baseline": model.changes is not None,
        "drift": model.drift,
        "run": model.run,
    }


def _changes(model: ReportModel) -> dict[str, Any] | None:
    changes = model.changes
    if changes is None:
        return None
    rows = {row.check_id: row for row in model.checks}

    def items(group: list[Any]) -> list[dict[str, Any]]:
        out = []
        for change in group:
            row = rows.get(change.check_id)
            result = row.results.get(change.cell) if row is not None else None
            out.append(
                {
                    "check_id": change.check_id,
                    "label": change.label,
                    "cell": change.cell,
                    "describe": change.describe(),
                    "message": result.message if result is not None else "",
                    "anchor": _anchor(change.check_id, change.cell),
                }
            )
        return out

    return {
        "baseline": changes.baseline_run or changes.baseline,
        "baseline_generated_at": changes.baseline_generated_at,
        "summary": changes.summary_line(),
        "quiet": changes.quiet,
        "new_regressions": items(changes.new_regressions),
        "fixes": items(changes.fixes),
        "other": items(changes.other),
        "cell_status": changes.cell_status,
        "new_cells": changes.new_cells,
        "removed_cells": changes.removed_cells,
        "new_checks": changes.new_checks,
        "removed_checks": changes.removed_checks,
    }


def _first_bad(model: ReportModel) -> list[dict[str, Any]]:
    out = []
    for row in model.checks:
        brk = row.current_break
        if brk is None:
            continue
        out.append(
            {
                "check_id": row.check_id,
                "last_good": brk.last_good,
                "first_bad": brk.first_bad,
                "anchor": _anchor(row.check_id, brk.first_bad_cell),
                "regressed_in": row.regressed_in,
                "bisected": model.bisected.get(row.check_id),
                "bisect": f"adapter-compat bisect {row.check_id} --good {brk.last_good} "
                f"--bad {brk.first_bad}",
            }
        )
    return out


def _filters(model: ReportModel) -> list[dict[str, Any]]:
    """One select per parameter worth filtering on: the preferred keys (architecture,
    format...), then the keys most rows carry; each with 2..MAX_FILTER_VALUES values."""
    values: dict[str, set[str]] = {}
    coverage: dict[str, int] = {}
    for row in model.checks:
        for key, value in row.params.items():
            values.setdefault(str(key), set()).add(_param_text(value))
            coverage[str(key)] = coverage.get(str(key), 0) + 1
    usable = [k for k in values if 2 <= len(values[k]) <= MAX_FILTER_VALUES]
    keys = [k for k in PREFERRED_PARAMS if k in usable]
    keys += sorted((k for k in usable if k not in keys), key=lambda k: (-coverage[k], k))
    return [{"key": key, "options": sorted(values[key])} for key in keys[:MAX_PARAM_FILTERS]]


def _param_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _anchor(check_id: str, cell: str) -> str:
    """Element id of a grid cell (stable, safe in a URL fragment)."""
    import hashlib

    return "c-" + hashlib.sha256(f"{check_id}@{cell}".encode()).hexdigest()[:12]


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


def _row(
    model: ReportModel,
    row: CheckRow,
    labels: dict[str, str],
    changed: set[tuple[str, str]],
) -> dict[str, Any]:
    grid = []
    for cell in model.cells:
        state = row.state(cell)
        result = row.results.get(cell.name)
        repro = model.repro(row.check_id, cell.name)
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
                "open_traceback": state in _FINDING_STATES,
                "anchor": _anchor(row.check_id, cell.name),
                "changed": (row.check_id, cell.name) in changed,
                "repro": repro,
                "embed_repro": repro is not None and state in _FINDING_STATES,
            }
        )
    states = sorted({g["state"] for g in grid if g["state"] != STATE_MISSING})
    return {
        "check_id": row.check_id,
        "params": row.params,
        "first_pass": row.first_pass,
        "first_pass_cell": row.first_pass_cell,
        "first_regression": row.first_regression,
        "first_regression_cell": row.first_regression_cell,
        "regressed_in": row.regressed_in,
        "breaks": row.breaks,
        "non_pass": any(r.verdict != Verdict.PASS.value for r in row.results.values()),
        "grid": grid,
        "states": " ".join(states),
        "params_json": json.dumps(
            {str(k): _param_text(v) for k, v in row.params.items()}, sort_keys=True
        ),
        "changed": any(g["changed"] for g in grid),
    }


def _pretty(value: Any) -> str:
    """JSON-ish dump for params/details panels (escaped later by autoescape)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
