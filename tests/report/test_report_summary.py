"""Self-tests of "can I bump diffusers?" at a glance: the summary, the grouped first-bad
table, the suite order, the on-demand details of compat.html and compat.md as valid
CommonMark that pastes into an issue.

The Markdown is rendered with markdown-it-py (CommonMark, plus GitHub's tables); each
property checked is first shown to catch a planted bad document.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import shlex
from pathlib import Path

from markdown_it import MarkdownIt

from harness.protocol.records import CellRecord, write_record
from harness.report.causes import trim_traceback
from harness.report.grid import load_model
from harness.report.render_html import read_details
from harness.report.render_md import render_markdown
from harness.report.summary import build_summary
from harness.report.write import write_report
from tests.report.report_runs import (
    CELLS,
    CHANGING,
    STEADY_BAD,
    kohya_run,
    library_traceback,
    record,
    write_run,
)

# -- CommonMark --------------------------------------------------------------------------
RENDERER = MarkdownIt("commonmark").enable("table")
_NULL_REF = re.compile(r"compat\.json `([a-z_]+)`")


def paste_problems(md: str, doc: dict) -> list[str]:
    """Why ``md`` would not paste cleanly into a GitHub issue (empty: it would)."""
    problems = []
    html = RENDERER.render(md)
    headings = [line for line in md.splitlines() if re.match(r"#{1,4} ", line)]
    rendered = re.findall(r"<h[1-4]>", html)
    if len(rendered) != len(headings):  # an unclosed HTML block swallows what follows
        problems.append(f"{len(headings)} headings written, {len(rendered)} rendered")
    for table in re.findall(r"<table>.*?</table>", html, re.S):
        if "<tbody>" not in table:
            problems.append("a table without rows")
    for field in _NULL_REF.findall(md):
        if doc.get(field) is None:
            problems.append(f"points at compat.json `{field}`, which is null")
    for command in re.findall(r"<code>(adapter-compat [^<]*)</code>", html):
        command = command.replace("&#x27;", "'").replace("&quot;", '"')
        try:
            shlex.split(command)
        except ValueError:
            problems.append(f"command with unbalanced quotes: {command}")
        if any(("[" in word or "]" in word) and word[0] not in "'\"" for word in command.split()):
            problems.append(f"command not shell-quoted: {command}")
    return problems


def test_the_paste_checker_catches_planted_problems() -> None:
    doc = {"changes": None}
    good = "# t\n\n<details><summary>x</summary>\n\n- a\n\n</details>\n\n## next\n"
    assert paste_problems(good, doc) == []
    glued = good.replace("</details>\n\n## next", "</details>\n## next")
    assert "2 headings written, 1 rendered" in paste_problems(glued, doc)
    assert paste_problems("# t\n\n| a | b |\n|---|---|\n", doc) == ["a table without rows"]
    assert paste_problems("# t\n\nmore in compat.json `changes`.\n", doc) == [
        "points at compat.json `changes`, which is null"
    ]
    bare = "# t\n\n`adapter-compat bisect lora/formats::load[flux-kohya] --good 1 --bad 2`\n"
    assert paste_problems(bare, doc)
    quoted = "# t\n\n`adapter-compat bisect 'lora/formats::load[flux-kohya]' --good 1 --bad 2`\n"
    assert paste_problems(quoted, doc) == []


def test_compat_md_pastes_cleanly(tmp_path: Path) -> None:
    """A first run (no baseline: ``changes`` is null) and a second one (headline with a
    <details> block), in full and squeezed under a small size limit."""
    root = tmp_path / "reports"
    first = write_report([kohya_run(tmp_path / "r1")], None, True, reports_root=root)
    second = write_report([write_run(tmp_path / "r2", True)], None, True, reports_root=root)
    for out in (first, second):
        doc = json.loads((out / "compat.json").read_text())
        md = (out / "compat.md").read_text()
        assert paste_problems(md, doc) == [], out
        model = load_model([out / "results"])
        model.changes = None
        for limit in (6000, 9000, 20_000):
            small = render_markdown(model, max_chars=limit)
            assert paste_problems(small, {"changes": None}) == [], limit
    md = (first / "compat.md").read_text()
    assert "| 3 | 0.32.2 | ❌ 0.33.1 |" in md  # the breakage explaining most rows, first
    assert "`adapter-compat bisect 'lora/formats::load[flux-kohya]' --good 0.32.2" in md


# -- summary, first bad, order -------------------------------------------------------------
def test_summary_aggregates_rows_and_links_to_them(tmp_path: Path) -> None:
    out = write_report([kohya_run(tmp_path / "r")], tmp_path / "o", False, baseline=None)
    model = load_model([out / "results"])
    lines = {line.label: line for line in build_summary(model)}
    kohya = lines["flux · kohya"]
    assert [row.check_id for row in kohya.rows] == ["lora/formats::load[flux-kohya]"]
    marks = [kohya.mark(f"cell-{c}") for c in CELLS]
    assert marks == ["pass", "pass", "regression", "regression"]
    comfy = lines["flux · comfy"]
    assert [comfy.mark(f"cell-{c}") for c in CELLS] == ["pass", "pass", "regression", "pass"]
    assert lines["load"].suite == "ip_adapter"  # no variant recorded: by operation
    internal = lines["callsites_internal"]
    assert internal.outside and not lines["callsites_adapter_loaders"].outside
    html = (out / "compat.html").read_text()
    summary = html[html.index('<section id="summary">') : html.index('<section id="headline"')]
    assert 'href="#group=lora%3Aflux%2Fkohya&amp;verdict=non-pass"' in summary
    assert 'data-group="lora:flux/kohya"' in html  # the grid rows the link filters to


def test_first_bad_groups_rows_by_root_cause(tmp_path: Path) -> None:
    out = write_report([kohya_run(tmp_path / "r")], tmp_path / "o", False, baseline=None)
    html = (out / "compat.html").read_text()
    table = html[
        html.index('<table class="firstbad">') : html.index(
            "</table>", html.index('<table class="firstbad">')
        )
    ]
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td>", table)
    assert rows == ["3", "1"]  # three kohya rows share one KeyError; largest first
    assert "KeyError: &#39;…&#39; (in diffusers/loaders/conv.py:_convert_kohya)" in table
    assert "fixed in 0.42.1" in table and table.count("still broken") == 1
    assert "adapter-compat bisect &#39;lora/formats::load[flux-kohya]&#39; --good 0.32.2" in table


def test_suites_in_reading_order_and_outside_rows_last(tmp_path: Path) -> None:
    model = load_model([kohya_run(tmp_path / "r")])
    assert model.suites == ["lora", "ip_adapter", "drift"]
    drift = [row.check_id for row in model.checks_in("drift")]
    assert drift == [
        "drift/drift::callsites_adapter_loaders[diffusers-x]",
        "drift/drift::callsites_internal[diffusers-x]",
    ]
    md = render_markdown(model)
    assert "`drift/drift::callsites_internal[diffusers-x]` (outside adapter loading)" in md


# -- compat.html: size and panels ----------------------------------------------------------
def test_html_loads_details_on_demand_and_stays_small(tmp_path: Path) -> None:
    """300 rows x 4 cells with 20 kB tracebacks: the page carries them compressed, the
    panel data names the outcome (never ``Finding``) and hides test-runner frames."""
    res = tmp_path / "r"
    res.mkdir()
    noise = "".join(f"    frame {i} of a deep library stack\n" for i in range(500))
    for cell in CELLS:
        path = res / f"cell-{cell}.jsonl"
        write_record(
            path, CellRecord(cell=f"cell-{cell}", status="ok", versions={"diffusers": cell})
        )
        for i in range(300):
            write_record(
                path,
                record(
                    cell,
                    f"lora/formats::load[flux-f{i:03d}]",
                    "regression",
                    observed="DROPPED_KEYS",
                    exc_type="Finding",
                    message=f"{i} key(s) had no effect",
                    traceback=library_traceback("_convert") + noise,
                ),
            )
    out = write_report([res], tmp_path / "o", False, baseline=None)
    html = (out / "compat.html").read_text()
    raw = (out / "compat.json").stat().st_size
    assert raw > 20_000_000 and len(html.encode()) < raw / 20
    details = read_details(html)
    result = details["rows"][7]["results"]["2"]
    assert result["outcome"] == "DROPPED_KEYS: some checkpoint keys had no effect and no warning"
    assert result["exception"].startswith("none raised") and "Finding" not in result["exception"]
    assert "_pytest" not in result["traceback"] and "pluggy" not in result["traceback"]
    assert "[2 test-runner frame(s) hidden]" in result["traceback"]
    assert "diffusers/loaders/conv.py" in result["traceback"]


def test_trim_traceback_keeps_everything_but_runner_frames() -> None:
    text = library_traceback("_convert")
    trimmed = trim_traceback(text)
    assert trimmed.splitlines()[0] == "Traceback (most recent call last):"
    assert "[2 test-runner frame(s) hidden]" in trimmed
    assert "testfunction" not in trimmed and "hook_impl" not in trimmed
    assert trimmed.endswith("KeyError: 'double_blocks.0'\n")
    assert trim_traceback("no frames here") == "no frames here"


def test_changed_and_steady_rows_keep_working_anchors(tmp_path: Path) -> None:
    """Headline links (changed cells) and first-bad links (red cells) have targets."""
    root = tmp_path / "reports"
    write_report([write_run(tmp_path / "r1", False)], None, True, reports_root=root)
    second = write_report([write_run(tmp_path / "r2", True)], None, True, reports_root=root)
    html = (second / "compat.html").read_text()
    ids = set(re.findall(r' id="(c-[0-9a-f]+)"', html))
    links = set(re.findall(r'href="#(c-[0-9a-f]+)"', html))
    assert links and links <= ids
    assert CHANGING in html and STEADY_BAD in html


def test_a_nan_detail_keeps_every_panel_and_compat_json_readable(tmp_path: Path) -> None:
    """One NaN in one record's details (a max diff of a NaN output) once blanked every
    details panel: the page's JSON.parse refuses bare NaN. Both outputs are strict JSON."""
    from harness.protocol.records import CellRecord, write_record
    from harness.report.write import write_report
    from tests.report.report_runs import record

    results = tmp_path / "results"
    results.mkdir()
    path = results / "cell-0.42.1.jsonl"
    write_record(
        path, CellRecord(cell="cell-0.42.1", status="ok", versions={"diffusers": "0.42.1"})
    )
    write_record(
        path,
        record(
            "0.42.1",
            "ip_adapter/forward::projection_forward[sd15-base]",
            "regression",
            details={"max_abs_diff": float("nan"), "per_part": {"proj_out": float("inf")}},
        ),
    )
    out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    strict = json.loads  # Python accepts NaN; re-check with a parser that does not:

    def no_constants(text: str) -> object:
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))

    gz = re.search(r'id="details"[^>]*>([^<]*)<', (out / "compat.html").read_text()).group(1)
    no_constants(gzip.decompress(base64.b64decode(gz)).decode())
    no_constants((out / "compat.json").read_text())
    assert strict((out / "compat.json").read_text())
    details = read_details((out / "compat.html").read_text())
    (result,) = details["rows"][0]["results"].values()
    assert result["details"]["max_abs_diff"] == "nan"
