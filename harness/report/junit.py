"""JUnit XML, one file per cell (``<run>/junit/<cell>.xml``), for CI user interfaces.

Why per cell: CI test views (GitHub Actions test reporters, GitLab, Jenkins) group by
file; one file per cell gives one collapsible group per diffusers x torch column. Mapping:
regression -> ``<failure>``, harness-error -> ``<error>``, unsupported / skipped ->
``<skipped>``, a check that a failed cell never ran -> ``<error type="cell-failed">``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.protocol.outcomes import Verdict
from harness.report.grid import STATE_CELL_FAILED, Cell, ReportModel

#: Characters XML 1.0 cannot carry (control characters other than tab / newline / CR).
_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: object) -> str:
    return _INVALID_XML.sub("\ufffd", str(text))


def cell_xml(model: ReportModel, cell: Cell) -> str:
    """The ``<testsuites>`` document of one cell."""
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    suite = ET.Element("testsuite", name=_clean(cell.name))
    props = ET.SubElement(suite, "properties")
    for key, value in sorted(cell.versions.items()):
        ET.SubElement(props, "property", name=_clean(key), value=_clean(value))
    ET.SubElement(props, "property", name="cell_status", value=_clean(cell.status))
    total_time = 0.0
    for row in model.checks:
        state = row.state(cell)
        result = row.results.get(cell.name)
        if result is None and state != STATE_CELL_FAILED:
            continue  # the check does not exist in this cell
        counts["tests"] += 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_clean(row.suite),
            name=_clean(row.check_id),
            time=f"{result.duration_s if result else 0.0:.3f}",
        )
        if result is not None:
            total_time += result.duration_s
            if result.nodeid:
                case.set("file", _clean(result.nodeid.split("::", 1)[0]))
        if state == STATE_CELL_FAILED:
            counts["errors"] += 1
            node = ET.SubElement(
                case,
                "error",
                type="cell-failed",
                message=_clean(f"cell {cell.status}: the check did not run"),
            )
            node.text = _clean(cell.message)
            continue
        assert result is not None
        headline = f"observed {result.observed}, expected {' | '.join(result.expected) or '?'}"
        if result.message:
            headline += f": {result.message[:500]}"
        repro = model.repro(row.check_id, cell.name)
        body = result.traceback or result.message
        if repro is not None:
            body = f"{body}\n\nreproduce: {repro.command}".strip()
        if result.verdict in (Verdict.REGRESSION.value, Verdict.BROKEN.value):
            counts["failures"] += 1
            node = ET.SubElement(
                case, "failure", type=_clean(result.observed), message=_clean(headline)
            )
            node.text = _clean(body)
        elif result.verdict == Verdict.HARNESS_ERROR.value:
            counts["errors"] += 1
            node = ET.SubElement(case, "error", type="harness-error", message=_clean(headline))
            node.text = _clean(body)
        elif result.verdict in (Verdict.UNSUPPORTED.value, Verdict.SKIPPED.value):
            counts["skipped"] += 1
            ET.SubElement(
                case,
                "skipped",
                message=_clean(
                    f"{result.verdict}: {result.message or result.details.get('reason', '')}"[:500]
                ),
            )
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{total_time:.3f}")
    root = ET.Element("testsuites", name=f"adapter-compat {cell.name}")
    for key, value in counts.items():
        root.set(key, str(value))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_junit(model: ReportModel) -> dict[str, str]:
    """``{"junit/<cell>.xml": text}`` for every cell."""
    return {f"junit/{_safe(cell.name)}.xml": cell_xml(model, cell) for cell in model.cells}


def _safe(name: str) -> str:
    return re.sub(r"[^\w.+-]", "_", name)


def write_junit(model: ReportModel, out: Path) -> list[Path]:
    written = []
    for rel, text in render_junit(model).items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
