"""``compat.html``: the colour-coded grid people read (self-contained, works offline).

Why jinja2: the page is mostly markup, and a template with autoescaping on makes
"everything from records is escaped" the default rather than something each string must
remember. The renderer only prepares plain view data; the template decides layout.

Why details load on demand: messages, tracebacks, params and versions of 700 rows x 17
cells are ~60 MB as markup. They travel once, as gzip-compressed JSON in base64 inside the
page (``<script type="application/octet-stream" id="details">``; works from ``file://``,
no side request), and the page's script unpacks them when a grid cell is first opened and
builds its panel with ``textContent`` (record text never becomes markup). The grid, the
summary and the first-bad table stay plain markup. :func:`read_details` unpacks the blob
for tests and tools.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness import __version__
from harness.protocol.outcomes import Verdict
from harness.report import costs, trend
from harness.report.boundaries import describe as describe_pins
from harness.report.breakages import Breakage, build_breakages
from harness.report.causes import exception_text, outcome_name, trim_traceback
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
from harness.report.main_vs_release import FOUND, compare, older_sources
from harness.report.order import OUTSIDE_LABEL, outside_adapter_loading
from harness.report.summary import SummaryLine, build_summary, group_of, line_label

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

#: Verdicts whose panels open the traceback by default.
_FINDING_STATES = (Verdict.REGRESSION.value, Verdict.BROKEN.value, Verdict.HARNESS_ERROR.value)

#: Grid states whose cells carry no element id (nothing links to them; the page stays
#: small): the headline links changed cells, the first-bad table red ones.
_QUIET_STATES = frozenset(
    {Verdict.PASS.value, Verdict.UNSUPPORTED.value, Verdict.SKIPPED.value, STATE_MISSING}
)

#: Element id of the compressed details blob.
DETAILS_ID = "details"

#: details keys left out of the blob: the repro body is in repro/<id>.py already.
_DETAILS_SKIP = frozenset({"repro"})


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
    index = 0
    for suite in model.suites:
        rows = model.checks_in(suite)
        views = []
        for row in rows:
            views.append(_row(model, row, labels, changed, index))
            index += 1
        suites.append(
            {
                "name": suite,
                "rows": views,
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
        "main_vs_release": _main_vs_release(model),
        "older_sources": [
            {"cell": source.name, "declares": source.diffusers or "?", "release": rel.diffusers}
            for source, rel in older_sources(model)
        ],
        "summary": _summary(model, labels),
        "details_blob": details_blob(model),
        "details_id": DETAILS_ID,
        "outside_label": OUTSIDE_LABEL,
        "filters": _filters(model),
        "verdict_options": [
            {"value": s, "text": f"{SYMBOLS[s]} has {s}"} for s in (*VERDICTS, STATE_CELL_FAILED)
        ],
        "has_baseline": model.changes is not None,
        "drift": model.drift,
        "costs_html": Markup(costs.html(costs.costs_for(model))),
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
    """Breakages (:mod:`harness.report.breakages`), the one explaining most rows first."""
    return [_breakage(b) for b in build_breakages(model)]


def _main_vs_release(model: ReportModel) -> list[dict[str, Any]]:
    """The headline against the newest release (:mod:`harness.report.main_vs_release`)."""
    out = []
    for comparison in compare(model):
        out.append(
            {
                "headline": comparison.headline(),
                "context": comparison.context(),
                "bisected": comparison.bisected,
                "rows": [
                    {
                        "check_id": row.check_id,
                        "css": _css(row.verdict),
                        "symbol": SYMBOLS.get(row.verdict, "?"),
                        "found": row.status == FOUND,
                        "describe": row.describe(),
                        "anchor": _anchor(row.check_id, comparison.source.name),
                        "bisect": comparison.bisect_command(row),
                    }
                    for row in comparison.rows
                ],
            }
        )
    return out


def _breakage(brk: Breakage) -> dict[str, Any]:
    return {
        "pins": describe_pins(brk.pins),
        "blame": brk.blame,
        "n_rows": len(brk.rows),
        "last_good": brk.last_good,
        "first_bad": brk.first_bad,
        "fixed_in": brk.fixed_in,
        "cause": brk.cause.describe(),
        "rows": [
            {
                "check_id": row.check_id,
                "anchor": _anchor(row.check_id, brk.first_bad_cells[row.check_id]),
            }
            for row in brk.rows
        ],
        "bisected": sorted(set(brk.bisected.values())),
        "bisect": brk.bisect_command(),
    }


def _summary(model: ReportModel, labels: dict[str, str]) -> list[dict[str, Any]]:
    """Summary lines with one linked mark per cell (:mod:`harness.report.summary`)."""
    out = []
    for line in build_summary(model):
        out.append(
            {
                "group": line.group,
                "suite": line.suite,
                "label": line_label(line),
                "outside": line.outside,
                "n_rows": len(line.rows),
                "marks": [_summary_mark(line, cell, labels[cell.name]) for cell in model.cells],
            }
        )
    return out


def _summary_mark(line: SummaryLine, cell: Cell, label: str) -> dict[str, Any]:
    state = line.mark(cell.name)
    red = line.red(cell.name)
    verdict = "non-pass" if state not in (Verdict.PASS.value, STATE_MISSING) else ""
    fragment = f"group={_fragment(line.group)}" + (f"&verdict={verdict}" if verdict else "")
    return {
        "state": state,
        "symbol": SYMBOLS[state],
        "css": _css(state),
        "red": red,
        "title": f"{line.label} @ {label}: {line.describe(cell.name)}",
        "href": "#" + fragment,
    }


def _fragment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


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
    index: int,
) -> dict[str, Any]:
    """A grid row as light markup: symbol, state and anchor per cell; the panel content
    is in the details blob, entry ``index``."""
    grid = []
    for cell in model.cells:
        state = row.state(cell)
        grid.append(
            {
                "state": state,
                "symbol": SYMBOLS.get(state, "?"),
                "css": _css(state),
                "anchor": _anchor(row.check_id, cell.name)
                if state not in _QUIET_STATES or (row.check_id, cell.name) in changed
                else "",
                "changed": (row.check_id, cell.name) in changed,
            }
        )
    states = sorted({g["state"] for g in grid if g["state"] != STATE_MISSING})
    return {
        "index": index,
        "check_id": row.check_id,
        "group": group_of(row)[0],
        "outside": outside_adapter_loading(row.suite, row.check_id),
        "first_pass": row.first_pass,
        "first_regression": row.first_regression,
        "regressed_in": row.regressed_in,
        "non_pass": any(r.verdict != Verdict.PASS.value for r in row.results.values()),
        "grid": grid,
        "states": " ".join(states),
        "params_json": json.dumps(
            {str(k): _param_text(v) for k, v in row.params.items()}, sort_keys=True
        ),
        "changed": any(g["changed"] for g in grid),
    }


# -- details, loaded on demand ---------------------------------------------------------------
def details_data(model: ReportModel) -> dict[str, Any]:
    """What the panels show, as plain data: ``cells`` (columns) and ``rows`` in grid order,
    each row's ``results`` keyed by column index."""
    labels = model.column_labels()
    cells = [
        {
            "name": c.name,
            "label": labels[c.name],
            "status": c.status,
            "failed": c.failed,
            "message": c.message,
            "exit_code": c.exit_code,
            "versions": c.versions,
        }
        for c in model.cells
    ]
    rows = []
    for suite in model.suites:
        for row in model.checks_in(suite):
            results = {}
            for col, cell in enumerate(model.cells):
                result = row.results.get(cell.name)
                if result is not None:
                    results[str(col)] = _result_view(model, row, cell, result)
            rows.append(
                {
                    "check_id": row.check_id,
                    "params": row.params,
                    "first_pass": row.first_pass,
                    "breaks": [[b.last_good, b.first_bad] for b in row.breaks],
                    "results": results,
                }
            )
    return {"cells": cells, "rows": rows}


def _result_view(model: ReportModel, row: CheckRow, cell: Cell, result: Any) -> dict[str, Any]:
    repro = model.repro(row.check_id, cell.name)
    details = {k: v for k, v in result.details.items() if k not in _DETAILS_SKIP}
    return {
        "observed": result.observed,
        "outcome": outcome_name(result.observed),
        "expected": [outcome_name(e) for e in result.expected],
        "exception": exception_text(result.exc_type),
        "message": result.message,
        "traceback": trim_traceback(result.traceback),
        "open_traceback": result.verdict in _FINDING_STATES,
        "duration_s": round(result.duration_s, 3),
        "device": result.device,
        "dtype": result.dtype,
        "nodeid": result.nodeid,
        # the cell's versions travel once per column; a result carries its own only when
        # they differ (a check that ran in another environment)
        "versions": result.versions if result.versions != cell.versions else None,
        "details": details,
        "repro": None
        if repro is None
        else {
            "kind": repro.kind,
            "file": repro.file,
            "command": shlex.join(["adapter-compat", "repro", repro.id]),
        },
    }


def finite_json(value: Any) -> Any:
    """NaN / ±inf as strings: Python writes them as bare ``NaN``, which JSON.parse refuses
    (one such number in any record would blank every details panel of the page)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def details_blob(model: ReportModel) -> str:
    """:func:`details_data` as strict JSON, gzip-compressed, base64: safe inside ``<script>``."""
    raw = json.dumps(
        finite_json(details_data(model)), separators=(",", ":"), default=str, allow_nan=False
    ).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def read_details(html: str) -> dict[str, Any]:
    """The details blob of a rendered page, unpacked (for tests and tools)."""
    match = re.search(
        rf'<script type="application/octet-stream" id="{DETAILS_ID}"[^>]*>([^<]*)</script>', html
    )
    if match is None:
        raise ValueError("no details blob in this page")
    return json.loads(gzip.decompress(base64.b64decode(match.group(1).strip())))


def _pretty(value: Any) -> str:
    """JSON-ish dump for params/details panels (escaped later by autoescape)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
