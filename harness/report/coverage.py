"""The report's "Reach" section: how much of the loader code the checks entered, per cell.

``adapter-compat run --coverage`` leaves one summary per cell in ``<reports>/coverage/``
(written in the cell by :mod:`harness.cell.coverage`), next to ``<reports>/results/``. A
report shows a summary only when it belongs to the very run its cell record describes
(same ``started_at``): a summary left over from an earlier run is skipped, never shown as
today's reach. :func:`attach` is the one call :mod:`harness.report.write` makes; it adds
the section to compat.md and compat.html and copies the summaries into the report folder
(``coverage/<cell>.json``), so a report rebuilt from that folder keeps them.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from harness.report.grid import ReportModel

#: Folder of the summaries, beside the folder of the results files.
COVERAGE_DIR = "coverage"
#: Unreached functions listed per module in the Markdown (the HTML lists them all).
MD_FUNCTIONS = 8
#: Markdown budget (GitHub's limit on an issue body; see render_md.MAX_CHARS).
MD_LIMIT = 65_536
_SLUG = re.compile(r"[^A-Za-z0-9]+")


# -- loading --------------------------------------------------------------------------------
def load_summary(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("kind") != "coverage" or "modules" not in data:
        raise ValueError(f"{path}: not a coverage summary")
    return data


def find_summaries(model: ReportModel) -> tuple[list[dict[str, Any]], list[str]]:
    """Summaries of this report's cells, oldest cell first, and notes about skipped ones.

    Looked up beside each results file's folder (``results/x.jsonl`` ->
    ``coverage/<cell>.json``); kept only when the summary's ``started_at`` is the cell
    record's."""
    folders: dict[Path, None] = {}
    for name in model.inputs:
        folders.setdefault(Path(name).resolve().parent.parent / COVERAGE_DIR, None)
    found: list[dict[str, Any]] = []
    notes: list[str] = []
    for cell in model.cells:
        for folder in folders:
            path = folder / f"{cell.name}.json"
            if not path.is_file():
                continue
            try:
                summary = load_summary(path)
            except (OSError, ValueError) as exc:
                notes.append(f"{cell.name}: unreadable coverage summary ({exc})")
                break
            if abs(float(summary.get("started_at", 0.0)) - cell.started_at) > 1e-3:
                notes.append(f"{cell.name}: coverage summary from an earlier run, not shown")
                continue
            if summary.get("error"):
                notes.append(f"{cell.name}: measuring coverage failed: {summary['error']}")
                break
            found.append(summary)
            break
    return found, notes


# -- the table ------------------------------------------------------------------------------
def slug(cell: str, module: str) -> str:
    return "reach-" + _SLUG.sub("-", f"{cell}-{module}").strip("-").lower()


def table_modules(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rows of the table: target modules first, then the other diffusers modules (peft's
    files are summed into one row each by folder; their lists stay in the JSON)."""
    target: dict[str, None] = {}
    other: dict[str, None] = {}
    for summary in summaries:
        for module in summary["modules"]:
            if module["module"].startswith("diffusers/"):
                (target if module["target"] else other).setdefault(module["module"], None)
    return [*target, *sorted(other)]


def _module(summary: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return next((m for m in summary["modules"] if m["module"] == name), None)


def peft_groups(summary: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """peft's measured files summed per folder (``peft/tuners/lora``, ``peft/utils``...)."""
    groups: dict[str, dict[str, int]] = {}
    for module in summary["modules"]:
        if not module["module"].startswith("peft/"):
            continue
        folder = module["module"].rsplit("/", 1)[0]
        group = groups.setdefault(folder, dict.fromkeys(_COUNTS, 0))
        for key in _COUNTS:
            group[key] += module[key]
    return groups


def peft_label(summaries: Sequence[Mapping[str, Any]], folder: str) -> str:
    """``folder/*``, or the file's own name when the folder holds one measured file."""
    names = {
        m["module"]
        for s in summaries
        for m in s["modules"]
        if m["module"].rsplit("/", 1)[0] == folder
    }
    return names.pop() if len(names) == 1 else f"{folder}/*"


_COUNTS = ("lines_covered", "lines_total", "branches_covered", "branches_total")


def _pct(covered: int, total: int) -> str:
    return f"{100.0 * covered / total:.1f}" if total else "–"


def cell_text(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "–"
    lines = _pct(entry["lines_covered"], entry["lines_total"])
    branches = _pct(entry["branches_covered"], entry["branches_total"])
    return f"{lines} / {branches}"


def top_unreached(summary: Mapping[str, Any], count: int = 10) -> list[tuple[str, dict]]:
    """The biggest unreached functions of a cell's target modules, by statements."""
    found = [
        (m["module"], f)
        for m in summary["modules"]
        if m["target"]
        for f in m["unreached_functions"]
    ]
    found.sort(key=lambda item: -item[1]["statements"])
    return found[:count]


# -- Markdown -------------------------------------------------------------------------------
def _md(text: object) -> str:
    return re.sub(r"([\\`*_\[\]{}<>|#])", r"\\\1", str(text))


def markdown_section(
    summaries: Sequence[Mapping[str, Any]], notes: Sequence[str] = (), with_lists: bool = True
) -> str:
    if not summaries and not notes:
        return ""
    lines = ["## Reach", "", *(f"> {_md(note)}" for note in notes)]
    if not summaries:
        return "\n".join(lines) + "\n"
    cells = [s["cell"] for s in summaries]
    newest = summaries[-1]
    lines += [
        *([""] if notes else []),
        "Line / branch coverage (%) of the installed loader code during this run's checks "
        f"(`adapter-compat run --coverage`); target ≥ {newest['target_percent']:g} % of lines "
        "in the **bold** modules. Only the adapter functions of `loaders/unet.py` count.",
        "",
        "| module | " + " | ".join(_md(c) for c in cells) + " |",
        "|---|" + "---|" * len(cells),
    ]
    for name in table_modules(summaries):
        first = next((m for s in summaries if (m := _module(s, name))), None)
        label = f"**{_md(name)}**" if first and first["target"] else _md(name)
        if with_lists and _module(newest, name) is not None:
            label = f"[{label}](#{slug(newest['cell'], name)})"
        lines.append(
            f"| {label} | " + " | ".join(cell_text(_module(s, name)) for s in summaries) + " |"
        )
    folders = sorted({f for s in summaries for f in peft_groups(s)})
    for folder in folders:
        row = [cell_text(peft_groups(s).get(folder)) for s in summaries]
        lines.append(f"| {_md(peft_label(summaries, folder))} | " + " | ".join(row) + " |")
    for key, title in (("target_totals", "**targets**"), ("totals", "all measured")):
        lines.append(f"| {title} | " + " | ".join(cell_text(s[key]) for s in summaries) + " |")
    lines.append("")
    if with_lists:
        lines += [f"### Unreached functions in {_md(newest['cell'])}", ""]
        for name in table_modules([newest]):
            module = _module(newest, name)
            if module is None or not module["unreached_functions"]:
                continue
            functions = sorted(module["unreached_functions"], key=lambda f: -f["statements"])
            shown = ", ".join(
                f"`{f['name']}` L{f['start']}–{f['end']} ({f['statements']})"
                for f in functions[:MD_FUNCTIONS]
            )
            more = len(functions) - MD_FUNCTIONS
            tail = f", … {more} more" if more > 0 else ""
            lines.append(
                f'- <a id="{slug(newest["cell"], name)}"></a>{_md(name)}: '
                f"{shown}{tail}; {len(module['unreached_branches'])} unreached branch(es) "
                "in reached functions"
            )
        lines += ["", "Full lists: `coverage/<cell>.json` in this report's folder.", ""]
    return "\n".join(lines) + "\n"


# -- HTML -----------------------------------------------------------------------------------
_STYLE = (
    "<style>table.reach td{font-size:12.5px;text-align:right;white-space:nowrap}"
    "table.reach td:first-child{text-align:left}ul.reach li{font-size:12.5px}</style>"
)


def html_section(summaries: Sequence[Mapping[str, Any]], notes: Sequence[str] = ()) -> str:
    if not summaries and not notes:
        return ""
    e = html.escape
    out = ['<section id="reach">', _STYLE, "<h2>Reach</h2>"]
    out += [f'<p class="note">{e(note)}</p>' for note in notes]
    if not summaries:
        return "\n".join([*out, "</section>"]) + "\n"
    newest = summaries[-1]
    out += [
        '<p class="note">Line / branch coverage (%) of the installed loader code during this '
        "run's checks (<code>adapter-compat run --coverage</code>); target ≥ "
        f"{newest['target_percent']:g} % of lines in the <strong>bold</strong> modules. Only "
        "the adapter functions of <code>loaders/unet.py</code> count. Each figure links to "
        "the functions no check entered.</p>",
        '<div class="grid-wrap"><table class="reach"><thead><tr><th>module</th>',
        *(f"<th>{e(s['cell'])}<br><small>lines / branches</small></th>" for s in summaries),
        "</tr></thead><tbody>",
    ]
    for name in table_modules(summaries):
        first = next((m for s in summaries if (m := _module(s, name))), None)
        label = f"<strong>{e(name)}</strong>" if first and first["target"] else e(name)
        row = [f"<tr><td>{label}</td>"]
        for summary in summaries:
            module = _module(summary, name)
            text = e(cell_text(module))
            if module is not None:
                text = f'<a href="#{slug(summary["cell"], name)}">{text}</a>'
            row.append(f"<td>{text}</td>")
        out.append("".join(row) + "</tr>")
    for folder in sorted({f for s in summaries for f in peft_groups(s)}):
        row = "".join(f"<td>{e(cell_text(peft_groups(s).get(folder)))}</td>" for s in summaries)
        out.append(f"<tr><td>{e(peft_label(summaries, folder))}</td>{row}</tr>")
    for key, title in (("target_totals", "<strong>targets</strong>"), ("totals", "all measured")):
        row = "".join(f"<td>{e(cell_text(s[key]))}</td>" for s in summaries)
        out.append(f"<tr><td>{title}</td>{row}</tr>")
    out.append("</tbody></table></div>")
    for summary in reversed(summaries):
        out.append(
            f"<details open><summary>Unreached functions in {e(summary['cell'])}</summary>"
            '<ul class="reach">'
        )
        for name in table_modules([summary]):
            module = _module(summary, name)
            if module is None:
                continue
            functions = sorted(module["unreached_functions"], key=lambda f: -f["statements"])
            items = ", ".join(
                f"<code>{e(f['name'])}</code> L{f['start']}–{f['end']} ({f['statements']})"
                for f in functions
            )
            out.append(
                f'<li id="{slug(summary["cell"], name)}"><code>{e(name)}</code>: '
                f"{items or 'none'}; {len(module['unreached_branches'])} unreached branch(es) in "
                "reached functions</li>"
            )
        out.append("</ul></details>")
    out.append(
        '<p class="note">Figures in parentheses: statements in the function. Branch lists and '
        "peft's files: <code>coverage/&lt;cell&gt;.json</code> in this report's folder.</p>"
    )
    out.append("</section>")
    return "\n".join(out) + "\n"


def _insert_html(page: str, section: str) -> str:
    """Before the notes footer (else before ``</body>``, else at the end)."""
    for marker in ('<footer class="note">', "</body>"):
        at = page.find(marker)
        if at >= 0:
            return page[:at] + section + page[at:]
    return page + section


# -- the hook -------------------------------------------------------------------------------
def attach(
    model: ReportModel, texts: MutableMapping[str, str], files: MutableMapping[str, str]
) -> None:
    """Add the Reach section to the rendered ``compat.md`` / ``compat.html`` in ``texts``
    and the summaries to ``files`` (``coverage/<cell>.json``); nothing without summaries.
    The Markdown drops its function lists, then the section, rather than pass GitHub's
    limit."""
    summaries, notes = find_summaries(model)
    if not summaries and not notes:
        return
    if "compat.md" in texts:
        for with_lists in (True, False):
            text = texts["compat.md"].rstrip("\n") + "\n\n"
            text += markdown_section(summaries, notes, with_lists)
            if len(text) <= MD_LIMIT:
                texts["compat.md"] = text
                break
    if "compat.html" in texts:
        texts["compat.html"] = _insert_html(texts["compat.html"], html_section(summaries, notes))
    for summary in summaries:
        files[f"{COVERAGE_DIR}/{summary['cell']}.json"] = json.dumps(summary, indent=1) + "\n"


# -- plain text (``adapter-compat coverage``) -----------------------------------------------
def text_table(summary: Mapping[str, Any], functions: int = 10, branches: bool = False) -> str:
    """One cell's reach as a terminal table plus its biggest unreached target functions."""
    rows = [("module", "lines", "%", "branches", "%")]
    for module in summary["modules"]:
        mark = "*" if module["target"] else " "
        rows.append(
            (
                f"{mark} {module['module']}",
                f"{module['lines_covered']}/{module['lines_total']}",
                _pct(module["lines_covered"], module["lines_total"]),
                f"{module['branches_covered']}/{module['branches_total']}",
                _pct(module["branches_covered"], module["branches_total"]),
            )
        )
    for key, title in (("target_totals", "* targets"), ("totals", "  all measured")):
        t = summary[key]
        rows.append(
            (
                title,
                f"{t['lines_covered']}/{t['lines_total']}",
                _pct(t["lines_covered"], t["lines_total"]),
                f"{t['branches_covered']}/{t['branches_total']}",
                _pct(t["branches_covered"], t["branches_total"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        f"{summary['cell']} (diffusers {summary.get('versions', {}).get('diffusers', '?')}, "
        f"peft {summary.get('versions', {}).get('peft', '?')}); * = target modules",
        "",
    ]
    for row in rows:
        lines.append(
            row[0].ljust(widths[0])
            + "  "
            + "  ".join(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        )
    top = top_unreached(summary, functions)
    if top:
        lines += ["", "biggest unreached functions in target modules (statements):"]
        lines += [
            f"  {n['statements']:>4}  {m}:{n['start']}-{n['end']}  {n['name']}" for m, n in top
        ]
    if branches:
        lines += ["", "unreached branches in reached functions of target modules:"]
        for module in summary["modules"]:
            if module["target"]:
                for b in module["unreached_branches"]:
                    lines.append(f"  {module['module']}:{b['from']}->{b['to']}  {b['function']}")
    return "\n".join(lines) + "\n"
