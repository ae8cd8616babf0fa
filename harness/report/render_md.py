"""``compat.md``: the grid as GitHub-flavoured Markdown, ready to paste into an issue.

GitHub rejects issue bodies over 65,536 characters, so the renderer degrades in steps
(all rows -> rows with a non-pass result -> rows with a regression or harness error ->
truncated) and says at the top which step it took. Everything from records is escaped:
a message is data, never markup.

It must paste cleanly: valid CommonMark (a blank line after every HTML block such as
``</details>``), no table without rows, no pointer to a compat.json field that is null,
and every command shell-quoted (check ids hold ``[`` ``]``). ``tests/report`` renders the
output with a CommonMark renderer to hold it to that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from harness import __version__
from harness.protocol.outcomes import Verdict
from harness.report import costs
from harness.report.boundaries import describe as describe_pins
from harness.report.breakages import build_breakages
from harness.report.causes import ORACLE_EXCEPTION
from harness.report.diff import Change
from harness.report.grid import (
    LEGEND,
    STATE_MISSING,
    SYMBOLS,
    Cell,
    CheckRow,
    ReportModel,
)
from harness.report.main_vs_release import FOUND, MAX_LISTED, compare, older_sources
from harness.report.order import OUTSIDE_LABEL, outside_adapter_loading
from harness.report.summary import build_summary, line_label

#: GitHub's limit on an issue/comment body.
MAX_CHARS = 65_536

_FINDINGS = {Verdict.REGRESSION.value, Verdict.BROKEN.value, Verdict.HARNESS_ERROR.value}
_MESSAGE_CHARS = 300
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}<>|#!~&])")


def symbol(state: str) -> str:
    return SYMBOLS.get(state, "?")


def escape(text: object, limit: int | None = None) -> str:
    """Plain text safe inside a table cell or list item: one line, no markup."""
    flat = " ".join(str(text).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", flat)


def code(text: object) -> str:
    """An identifier in a code span when that is safe, else escaped plain text."""
    flat = " ".join(str(text).split())
    if "`" in flat or "<" in flat or "&" in flat:
        return escape(flat)
    piped = flat.replace("|", "\\|")
    return f"`{piped}`"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _has_non_pass_result(row: CheckRow) -> bool:
    return any(r.verdict != Verdict.PASS.value for r in row.results.values())


def _has_finding(row: CheckRow) -> bool:
    return any(r.verdict in _FINDINGS for r in row.results.values())


#: Degradation steps: (name, row filter, note shown at the top).
_MODES: list[tuple[str, Callable[[CheckRow], bool], str]] = [
    ("full", lambda row: True, ""),
    (
        "non-pass",
        _has_non_pass_result,
        "The full grid exceeds GitHub's 65,536-character limit: only rows with a non-pass "
        "result are shown; see compat.html / compat.json for everything.",
    ),
    (
        "findings",
        _has_finding,
        "The full grid exceeds GitHub's 65,536-character limit: only rows with a regression "
        "or harness error are shown; see compat.html / compat.json for everything.",
    ),
]


def render_markdown(model: ReportModel, max_chars: int = MAX_CHARS) -> str:
    """The report, within ``max_chars`` (summarised, and saying so, when needed)."""
    for _name, keep, note in _MODES:
        text = _render(model, keep, note, budget=None)
        if len(text) <= max_chars:
            return _with_costs(text, model, max_chars)
    _name, keep, note = _MODES[-1]
    text = _render(model, keep, note + " Some rows were cut to fit.", budget=max_chars)
    return _with_costs(text, model, max_chars)


def _with_costs(text: str, model: ReportModel, max_chars: int) -> str:
    """The cost section goes last and only where it fits: it is for the harness's own
    maintainers; the grid and its findings come first."""
    spent = costs.costs_for(model)
    section = "\n".join(costs.markdown(spent))
    if not section:
        return text
    if len(text) + len(section) + 2 <= max_chars:
        return text + "\n" + section
    short = (
        f"\nCost: {spent.checks_s:.0f} s of checks over {len(spent.cells)} cell(s); per suite, "
        "family and cell in the `costs` section of compat.json.\n"
    )
    return text + short if len(text) + len(short) <= max_chars else text


def write_markdown(model: ReportModel, path: Path) -> None:
    path.write_text(render_markdown(model), encoding="utf-8")


# -- sections ------------------------------------------------------------------------------
class _Out:
    """Line collector that stops accepting optional lines once a budget is reached."""

    def __init__(self, budget: int | None) -> None:
        # Reserve room for the closing lines (omission notes, legend, findings header).
        self.budget = None if budget is None else budget - 4000
        self.lines: list[str] = []
        self.size = 0

    def add(self, line: str = "") -> None:
        self.lines.append(line)
        self.size += len(line) + 1

    def fits(self, line: str) -> bool:
        return self.budget is None or self.size + len(line) + 1 <= self.budget

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


def _render(
    model: ReportModel, keep: Callable[[CheckRow], bool], note: str, budget: int | None
) -> str:
    out = _Out(budget)
    labels = model.column_labels()
    totals = model.totals()
    out.add("# adapter-compat compatibility report")
    out.add()
    out.add(
        f"Generated {escape(model.generated_at)} by adapter-compat {__version__} from "
        f"{len(model.inputs)} record file(s): **{len(model.checks)} checks × "
        f"{len(model.cells)} cells**, {totals.get('regression', 0)} ❌ regression(s), "
        f"{totals.get('broken', 0)} ⛔ broken (never passed), "
        f"{totals.get('harness-error', 0)} ⚠️ harness error(s), "
        f"{sum(1 for c in model.cells if c.failed)} 💥 failed cell(s)."
    )
    out.add()
    if note:
        out.add(f"> **Note:** {note}")
        out.add()
    for warning in model.warnings[:20]:
        out.add(f"> ⚠️ {escape(warning, 300)}")
    if model.warnings:
        out.add()
    _main_vs_release(out, model)
    _groups_summary(out, model, labels)
    _headline(out, model)
    _first_bad(out, model)
    _trend(out, model)
    _summary_table(out, model)
    _legend(out)
    _failed_cells(out, model)
    for suite in model.suites:
        _suite_grid(out, model, suite, keep, labels)
    _findings(out, model, labels)
    _drift(out, model)
    return out.text()


#: Items listed per headline group before "... and N more".
HEADLINE_ITEMS = 60


def _change_line(change: Change, rows: dict[str, CheckRow], mark: str) -> str:
    result = None
    row = rows.get(change.check_id)
    if row is not None:
        result = row.results.get(change.cell)
    tail = ""
    if result is not None and result.verdict != Verdict.PASS.value and result.message:
        tail = f" — {escape(result.message, 160)}"
    return (
        f"- {mark} {code(change.check_id)} @ {escape(change.label)}: "
        f"{escape(change.describe())}{tail}"
    )


def _listing(
    out: _Out, lines: list[str], total: int | None = None, where: str = "compat.json `changes`"
) -> int:
    """Up to HEADLINE_ITEMS lines (fewer when the size budget runs out), then a count of
    the rest (``where`` says where to find them); ``total``: how many items ``lines`` was
    cut from. Returns how many lines were written."""
    cut = 0
    written = 0
    shown = lines[:HEADLINE_ITEMS]
    for line in shown:
        if cut or not out.fits(line):
            cut += 1
            continue
        out.add(line)
        written += 1
    cut += max(0, (total if total is not None else len(lines)) - len(shown))
    if cut:
        out.add("")  # ends a table before the note; a blank line in a list is harmless
        out.add(f"… and {cut} more: see {where}.")
    return written


def _headline(out: _Out, model: ReportModel) -> None:
    """What changed since the baseline: the first thing a reader sees."""
    changes = model.changes
    out.add("## What changed")
    out.add()
    if changes is None:
        out.add(
            "No baseline report to compare with (first stored run). `adapter-compat report "
            "--baseline PATH` compares with any earlier compat.json."
        )
        out.add()
        return
    rows = {row.check_id: row for row in model.checks}
    base = escape(changes.baseline_run or changes.baseline)
    out.add(
        f"Since {base} ({escape(changes.baseline_generated_at)}): "
        f"**{escape(changes.summary_line())}**."
    )
    out.add()
    if changes.quiet:
        out.add("Nothing changed: every check has the verdict it had in the baseline.")
        out.add()
    if changes.new_regressions:
        out.add(f"### ❌ New regressions ({len(changes.new_regressions)})")
        out.add()
        _listing(
            out,
            [_change_line(c, rows, "❌") for c in changes.new_regressions[:HEADLINE_ITEMS]],
            len(changes.new_regressions),
        )
        out.add()
    if changes.fixes:
        out.add(f"### ✅ Fixed ({len(changes.fixes)})")
        out.add()
        _listing(
            out,
            [_change_line(c, rows, "✅") for c in changes.fixes[:HEADLINE_ITEMS]],
            len(changes.fixes),
        )
        out.add()
    if changes.other:
        out.add(f"<details><summary>{len(changes.other)} other change(s)</summary>")
        out.add()
        _listing(
            out,
            [_change_line(c, rows, "•") for c in changes.other[:HEADLINE_ITEMS]],
            len(changes.other),
        )
        out.add()
        out.add("</details>")
        out.add()
    for item in changes.cell_status:
        out.add(
            f"- 💥 cell {code(item['cell'])}: {escape(item['before'])} → {escape(item['after'])}"
        )
    if changes.cell_status:
        out.add()
    extra = []
    if changes.new_cells:
        extra.append(f"new cells: {', '.join(code(c) for c in changes.new_cells)}")
    if changes.removed_cells:
        extra.append(f"cells gone: {', '.join(code(c) for c in changes.removed_cells)}")
    if changes.new_checks:
        extra.append(_n(len(changes.new_checks), "new check"))
    if changes.removed_checks:
        extra.append(_n(len(changes.removed_checks), "removed check"))
    if extra:
        out.add("Also: " + "; ".join(extra) + ".")
        out.add()


def _main_vs_release(out: _Out, model: ReportModel) -> None:
    """The nightly's headline (:mod:`harness.report.main_vs_release`): rows that pass in
    the newest release and are red on a source cell built after it."""
    comparisons = compare(model)
    older = older_sources(model)
    if not comparisons and not older:
        return
    out.add("## main vs the newest release")
    out.add()
    for comparison in comparisons:
        mark = "❌ " if comparison.rows else "✅ "
        out.add(f"**{mark}{escape(comparison.headline())}** ({escape(comparison.context())}).")
        out.add()
        if not comparison.rows:
            continue
        lines = []
        for row in comparison.rows:
            line = f"- {symbol(row.verdict)} {code(row.check_id)}: {escape(row.describe())}"
            if row.status != FOUND:
                line += f"; narrow it down: {code(comparison.bisect_command(row))}"
            lines.append(line)
        _listing(out, lines[:MAX_LISTED], len(lines), where="compat.json `main_vs_release`")
        out.add()
        if comparison.bisected < len(comparison.rows):
            out.add(
                f"{comparison.bisected} of {len(comparison.rows)} bisected; the others wait "
                "for a later night (`adapter-compat bisect --newly-red --max-bisects K`)."
            )
            out.add()
    for source, release in older:
        out.add(
            f"{code(source.name)} declares diffusers {escape(source.diffusers or '?')}, older "
            f"than the newest release {escape(release.diffusers or '?')}: not compared."
        )
        out.add()


def _first_bad(out: _Out, model: ReportModel) -> None:
    """Breakages (:mod:`harness.report.breakages`): the one explaining most rows first."""
    breakages = build_breakages(model)
    if not breakages:
        return
    out.add("## First bad version")
    out.add()
    out.add(
        "Each line is one breakage: the last passing and first failing version of the "
        "matrix and one root cause, with the rows it explains (most first) and the pins that "
        "differ between the two cells. `adapter-compat bisect` narrows it to a release (for a "
        "source cell, a commit); `--blame` names the changed package that alone turns it green."
    )
    out.add()
    lines = []
    for brk in breakages:
        first = brk.rows[0].check_id
        more = f" and {len(brk.rows) - 1} more" if len(brk.rows) > 1 else ""
        fixed = f"✅ fixed in {escape(brk.fixed_in)}" if brk.fixed_in else "still broken"
        bisected = ", ".join(sorted(set(brk.bisected.values()))) or "—"
        blame = code(brk.blame) if brk.blame else "—"
        lines.append(
            f"| {len(brk.rows)} | {escape(brk.last_good)} | ❌ {escape(brk.first_bad)} | "
            f"{escape(bisected)} | {escape(describe_pins(brk.pins))} | {fixed} | "
            f"{escape(brk.cause.describe(), 200)} | "
            f"{code(first)}{more} | {code(brk.bisect_command())} | {blame} |"
        )
    _table(
        out,
        "| rows | last good | first bad | bisected | pins changed | fixed in | root cause | "
        "rows it explains | narrow down | which package |",
        "|--:|---|---|---|---|---|---|---|---|---|",
        lines,
        "compat.html (First bad version)",
    )


def _table(out: _Out, head: str, rule: str, lines: list[str], where: str) -> None:
    """A table, or nothing when not one of its lines fits (never a header-only table)."""
    if not lines or not out.fits(head + rule + lines[0]):
        if lines:
            out.add(
                f"{len(lines)} line(s) left out to stay under GitHub's size limit: see {where}."
            )
            out.add()
        return
    out.add(head)
    out.add(rule)
    _listing(out, lines, where=where)
    out.add()


def _groups_summary(out: _Out, model: ReportModel, labels: dict[str, str]) -> None:
    """One line per format x architecture, IP-Adapter variant, operation...: the most
    alarming verdict of its rows per version (:mod:`harness.report.summary`)."""
    lines = build_summary(model)
    if not lines or not model.cells:
        return
    out.add("## Summary: can I bump diffusers?")
    out.add()
    out.add(
        "One line per adapter format × architecture, IP-Adapter variant and operation; "
        "each mark is the most alarming verdict among that line's rows in that version "
        "(the number counts red rows). compat.html links every mark to its rows."
    )
    out.add()
    heads = ["suite", "rows"] + [escape(labels[c.name]) for c in model.cells]
    body = []
    for line in lines:
        marks = []
        for cell in model.cells:
            mark = symbol(line.mark(cell.name))
            red = line.red(cell.name)
            marks.append(f"{mark}{red}" if red else mark)
        body.append(
            f"| {escape(line.suite)} | {escape(line_label(line))} ({len(line.rows)}) | "
            + " | ".join(marks)
            + " |"
        )
    _table(
        out,
        "| " + " | ".join(heads) + " |",
        "|---|---|" + ":-:|" * len(model.cells),
        body,
        "compat.html (Summary)",
    )


def _trend(out: _Out, model: ReportModel) -> None:
    points = model.history[-10:]
    if len(points) < 2:
        return
    out.add("## Trend")
    out.add()
    out.add("| run | ✅ pass | ❌ regression | ⛔ broken | ⚠️ harness error | 💥 cell failed |")
    out.add("|---|--:|--:|--:|--:|--:|")
    for point in points:
        name = escape(point.run or point.generated_at) + (" (this run)" if point.current else "")
        t = point.totals
        out.add(
            f"| {name} | {t.get('pass', 0)} | {t.get('regression', 0)} | {t.get('broken', 0)} | "
            f"{t.get('harness-error', 0)} | {t.get('cell-failed', 0)} |"
        )
    out.add()


def _drift(out: _Out, model: ReportModel) -> None:
    """The drift tool's timeline; only breaking changes when it flags them (see the HTML
    for every change)."""
    section = model.drift
    if section is None:
        return
    out.add("## API drift")
    out.add()
    if section.note:
        out.add(escape(section.note, 500))
        out.add()
    if not section.rows:
        out.add("No API changes recorded.")
        return
    rows = section.rows
    if section.has_breaking_column:
        rows = section.breaking_rows
        out.add(
            f"{len(rows)} breaking change(s) of {len(section.rows)}; compat.html lists them all."
        )
        out.add()
        if not rows:
            return
    columns = [c for c in section.columns if c != "breaking" or not section.has_breaking_column]
    columns = columns[:7]
    _table(
        out,
        "| " + " | ".join(escape(c) for c in columns) + " |",
        "|" + "---|" * len(columns),
        ["| " + " | ".join(escape(r.get(c, ""), 120) for c in columns) + " |" for r in rows],
        "compat.html (API drift)",
    )


def _summary_table(out: _Out, model: ReportModel) -> None:
    summary = model.summary()
    out.add("## Cells")
    out.add()
    heads = ["cell", "diffusers", "torch", "status"]
    heads += [f"{symbol(v)} {v}" for v in (*SYMBOLS.keys(),) if v != STATE_MISSING]
    heads += ["time"]
    out.add("| " + " | ".join(heads) + " |")
    out.add("|" + "---|" * 4 + "--:|" * (len(heads) - 5) + "--:|")
    for cell in model.cells:
        counts = summary[cell.name]
        status = f"💥 {escape(cell.status)}" if cell.failed else escape(cell.status)
        row = [
            code(cell.name),
            escape(cell.diffusers or "?"),
            escape(cell.torch or "?"),
            status,
        ]
        row += [str(counts.get(v, 0)) for v in SYMBOLS if v != STATE_MISSING]
        row += [f"{cell.duration_s:.1f} s" if cell.duration_s else ""]
        out.add("| " + " | ".join(row) + " |")
    out.add()


def _legend(out: _Out) -> None:
    items = " · ".join(f"{symbol(k)} {text}" for k, text in LEGEND.items())
    out.add(f"**Legend:** {items}.")
    out.add()
    out.add(
        "**first pass** = lowest diffusers version where the check passes; "
        "**first regression** = first version (ascending) where it is a regression after "
        "having passed at an earlier version."
    )
    out.add()


def _failed_cells(out: _Out, model: ReportModel) -> None:
    failed = [c for c in model.cells if c.failed]
    if not failed:
        return
    out.add("## Failed cells")
    out.add()
    for cell in failed:
        message = escape(cell.message, _MESSAGE_CHARS) or "(no message)"
        out.add(f"- 💥 {code(cell.name)} ({escape(cell.status)}): {message}")
    out.add()


def _grid_header(cells: list[Cell], labels: dict[str, str]) -> list[str]:
    heads = ["check"]
    for cell in cells:
        label = escape(labels[cell.name])
        heads.append(f"{label} 💥" if cell.failed else label)
    heads += ["first pass", "first regression"]
    return [
        "| " + " | ".join(heads) + " |",
        "|---|" + ":-:|" * len(cells) + "---|---|",
    ]


def _grid_row(row: CheckRow, cells: list[Cell]) -> str:
    parts = [code(row.check_id)]
    if outside_adapter_loading(row.suite, row.check_id):
        parts[0] += f" ({OUTSIDE_LABEL})"
    parts += [symbol(row.state(cell)) for cell in cells]
    parts.append(escape(row.first_pass) if row.first_pass else "—")
    parts.append(f"❌ {escape(row.first_regression)}" if row.first_regression else "—")
    return "| " + " | ".join(parts) + " |"


def _suite_grid(
    out: _Out,
    model: ReportModel,
    suite: str,
    keep: Callable[[CheckRow], bool],
    labels: dict[str, str],
) -> None:
    rows = model.checks_in(suite)
    shown = [row for row in rows if keep(row)]
    out.add(f"## Suite {code(suite)} ({_n(len(rows), 'check')})")
    out.add()
    if not shown:
        out.add(f"All {len(rows)} checks are hidden by the summary filter above.")
        out.add()
        return
    header = _grid_header(model.cells, labels)
    cut = 0
    for row in shown:
        line = _grid_row(row, model.cells)
        if cut or not out.fits(line + "".join(header if header else [])):
            cut += 1
            continue
        for head in header:  # written with the first row that fits: never a header-only table
            out.add(head)
        header = []
        out.add(line)
    if not header:
        out.add()
    hidden = len(rows) - len(shown)
    if hidden:
        out.add(f"{hidden} row(s) hidden by the summary filter.")
        out.add()
    if cut:
        out.add(f"{cut} more row(s) cut to stay under GitHub's size limit.")
        out.add()


def _findings(out: _Out, model: ReportModel, labels: dict[str, str]) -> None:
    """One line per regression / harness error: what to paste into a bug report."""
    lines: list[str] = []
    for row in model.checks:
        for cell in model.cells:
            result = row.results.get(cell.name)
            if result is None or result.verdict not in _FINDINGS:
                continue
            raised = result.exc_type and result.exc_type != ORACLE_EXCEPTION
            exc = f"{code(result.exc_type)}: " if raised else ""
            expected = ", ".join(result.expected) or "?"
            lines.append(
                f"- {symbol(result.verdict)} {code(row.check_id)} @ {escape(labels[cell.name])}: "
                f"observed {code(result.observed)}, expected {code(expected)} — "
                f"{exc}{escape(result.message, _MESSAGE_CHARS)}"
            )
    if not lines:
        return
    out.add("## Regressions and harness errors")
    out.add()
    out.add(f"<details><summary>{len(lines)} finding(s)</summary>")
    out.add()
    cut = 0
    for line in lines:
        if cut or not out.fits(line):
            cut += 1
            continue
        out.add(line)
    if cut:
        out.add(f"- … {cut} more cut to stay under GitHub's size limit (see compat.json `checks`)")
    out.add()
    out.add("</details>")
    out.add()
