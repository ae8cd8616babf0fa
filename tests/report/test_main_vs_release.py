"""The nightly headline "main vs the newest release: N rows newly red" and the pins that
changed at each boundary of the first-bad table, from synthetic records (no torch): two
releases, a source cell of main after them, an older source cell, and a bisect record.

Only rows green in the newest release and red on main count; red in the release too,
unsupported, skipped, harness errors or a missing record on main do not."""

from __future__ import annotations

import json
import re

from markdown_it import MarkdownIt

from harness.protocol.records import append_line, write_record
from harness.report.boundaries import pin_changes
from harness.report.grid import load_model
from harness.report.main_vs_release import compare, console_lines
from harness.report.write import write_report
from tests.report.source_runs import (
    MAIN,
    NEWLY_RED,
    OLD_CELL,
    PINS,
    PLANTED,
    SRC_CELL,
    bisect_record,
    check,
    write_records,
)


def test_newly_red_counts_only_rows_green_in_the_release_and_red_on_main(tmp_path) -> None:
    model = load_model([write_records(tmp_path / "r")])
    [comparison] = compare(model)
    assert comparison.source.name == SRC_CELL and comparison.release.name == "cell-0.42.1"
    assert [row.check_id for row in comparison.rows] == [
        c for c in (r.check_id for r in model.checks) if c in NEWLY_RED
    ]
    assert sorted(row.check_id for row in comparison.rows) == sorted(NEWLY_RED)
    assert comparison.headline() == "main vs the newest release: 3 rows newly red"
    assert all(row.status == "not-bisected" for row in comparison.rows)


def test_a_release_turned_green_again_is_a_planted_fix(tmp_path) -> None:
    """Plant: the release cell red for a newly red row: it is no longer new on main."""
    folder = write_records(tmp_path / "r")
    row = NEWLY_RED[0]
    write_record(
        folder / "cell-0.42.1.jsonl", check("cell-0.42.1", row, "regression", "0.42.1", {})
    )
    [comparison] = compare(load_model([folder]))
    assert row not in [r.check_id for r in comparison.rows]
    assert comparison.headline() == "main vs the newest release: 2 rows newly red"


def test_report_shows_headline_commit_and_not_bisected_rows(tmp_path) -> None:
    folder = write_records(tmp_path / "r")
    bisected = NEWLY_RED[0]
    append_line(folder / f"bisect-{MAIN[:7]}.jsonl", json.dumps(bisect_record(
        bisected, status="error", first_bad=None, error="v0.42.1 is not passing")))  # fmt: skip
    append_line(folder / f"bisect-{MAIN[:7]}.jsonl", json.dumps(bisect_record(bisected)))
    out = write_report([folder], tmp_path / "out", False, tmp_path / "root", baseline=None)
    doc = json.loads((out / "compat.json").read_text())
    assert not any("neither a check nor a cell" in w for w in doc["warnings"])
    [mvr] = doc["main_vs_release"]
    assert mvr["headline"] == "main vs the newest release: 3 rows newly red"
    assert (mvr["newly_red"], mvr["bisected"], mvr["release"]) == (3, 1, "0.42.1")
    rows = {row["check_id"]: row for row in mvr["rows"]}
    assert rows[bisected]["status"] == "found"  # the later record wins
    assert rows[bisected]["first_bad_commit"]["short"] == PLANTED[:7]
    assert rows[bisected]["first_bad_commit"]["pr"] == "4242"
    assert [rows[c]["status"] for c in NEWLY_RED[1:]] == ["not-bisected"] * 2
    assert rows[NEWLY_RED[1]]["bisect"] == (
        f"adapter-compat bisect 'lora/formats::load[sdxl-kohya]' --repo "
        f"https://github.com/huggingface/diffusers --good v0.42.1 --bad {MAIN}"
    )
    assert doc["cells"][-1]["source"]["commit"] == MAIN  # the order puts main last

    md = (out / "compat.md").read_text()
    section = md[md.index("## main vs the newest release") : md.index("## Summary")]
    assert "main vs the newest release: 3 rows newly red" in section
    assert f"first bad commit {PLANTED[:7]} (\\#4242, 2026-11-02)" in section
    assert section.count("not bisected") == 2 and "1 of 3 bisected" in section
    assert f"`{OLD_CELL}` declares diffusers 0.42.0.dev0, older than" in section
    assert "sd15-comfy" not in section and "sd15-xlabs" not in section
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert html.count("<h2>") == md.count("\n## ")  # nothing swallowed the next heading

    page = (out / "compat.html").read_text()
    part = page[page.index('<section id="main-vs-release"') : page.index('<section id="headline"')]
    assert "main vs the newest release: 3 rows newly red" in part
    assert f"first bad commit {PLANTED[:7]} (#4242, 2026-11-02)" in part
    assert part.count("not bisected") == 2
    anchors = re.findall(r'<a href="#(c-[0-9a-f]+)"><code>', part)
    assert len(anchors) == 3  # each row links to its red grid cell on main
    assert all(f'id="{anchor}"' in page for anchor in anchors)

    lines = console_lines(doc)
    assert lines[0] == "main vs the newest release: 3 rows newly red (0.42.1)"
    assert f"  {bisected}: first bad commit {PLANTED[:7]} (#4242)" in lines
    assert f"  {NEWLY_RED[1]}: not bisected" in lines


def test_no_source_cell_no_headline(tmp_path) -> None:
    folder = write_records(tmp_path / "r", with_old_source=False)
    (folder / f"{SRC_CELL}.jsonl").unlink()
    out = write_report([folder], tmp_path / "out", False, tmp_path / "root", baseline=None)
    assert json.loads((out / "compat.json").read_text())["main_vs_release"] == []
    assert "main vs the newest release" not in (out / "compat.md").read_text()
    assert 'id="main-vs-release"' not in (out / "compat.html").read_text()


def test_zero_newly_red_is_said(tmp_path) -> None:
    folder = write_records(tmp_path / "r", with_old_source=False)
    path = folder / f"{SRC_CELL}.jsonl"
    for check_id in NEWLY_RED:  # main fixed again: green like the release
        write_record(path, check(SRC_CELL, check_id, "pass", "0.43.0.dev0", PINS["0.42.1"]))
    out = write_report([folder], tmp_path / "out", False, tmp_path / "root", baseline=None)
    assert "✅ main vs the newest release: 0 rows newly red" in (out / "compat.md").read_text()


def test_first_bad_table_lists_the_pins_that_moved_and_the_blame_command(tmp_path) -> None:
    folder = write_records(tmp_path / "r", with_old_source=False)
    model = load_model([folder])
    release = pin_changes(model.cell("cell-0.41.0"), model.cell("cell-0.42.1"))
    assert [c.describe() for c in release] == [
        "diffusers 0.41.0 → 0.42.1",
        "peft 0.20.0 → 0.21.2",
        "transformers 5.20.0 → 5.21.0",
    ]  # accelerate and torch did not move: not listed
    to_main = pin_changes(model.cell("cell-0.42.1"), model.cell(SRC_CELL))
    assert [c.describe() for c in to_main] == [f"diffusers 0.42.1 → 0.43.0.dev0 @{MAIN[:7]}"]

    append_line(folder / "bisect-0123456.jsonl", json.dumps(bisect_record(NEWLY_RED[0])))
    out = write_report([folder], tmp_path / "out", False, tmp_path / "root", baseline=None)
    md = (out / "compat.md").read_text()
    table = md[md.index("## First bad version") :]
    table = table[: table.index("\n\n## ")]
    comfy = next(line for line in table.splitlines() if "sd15-comfy" in line)
    assert (
        "| diffusers 0.41.0 → 0.42.1, peft 0.20.0 → 0.21.2, transformers 5.20.0 → 5.21.0 |" in comfy
    )
    assert "`adapter-compat bisect 'lora/formats::load[sd15-comfy]' --blame --cell 0.42.1`" in comfy
    kohya = next(line for line in table.splitlines() if "flux-kohya" in line)
    assert f"| ❌ 0.43.0.dev0 @{MAIN[:7]} | commit {PLANTED[:7]} |" in kohya  # found by bisect
    assert f"| diffusers 0.42.1 → 0.43.0.dev0 @{MAIN[:7]} |" in kohya
    assert f"--repo https://github.com/huggingface/diffusers --good v0.42.1 --bad {MAIN}`" in kohya
    assert kohya.endswith("| — |")  # no --blame into a source cell: only diffusers moved
    page = (out / "compat.html").read_text()
    body = page[page.index('<table class="firstbad">') :]
    body = body[: body.index("</table>")]
    assert "peft 0.20.0 → 0.21.2" in body
    assert "--blame --cell 0.42.1" in body


def test_run_summary_carries_the_headline(tmp_path) -> None:
    """``adapter-compat run``'s closing lines read the same headline from compat.json."""
    from harness.matrix.summary import closing_summary

    folder = write_records(tmp_path / "r", with_old_source=False)
    append_line(folder / "bisect-0123456.jsonl", json.dumps(bisect_record(NEWLY_RED[0])))
    out = write_report([folder], tmp_path / "out", False, tmp_path / "root", baseline=None)
    lines = closing_summary(["ok"] * 3, out)
    at = lines.index("  main vs the newest release: 3 rows newly red (0.42.1)")
    assert lines[at + 1] == f"    {NEWLY_RED[0]}: first bad commit {PLANTED[:7]} (#4242)"
    assert lines[at + 2] == f"    {NEWLY_RED[1]}: not bisected"
    assert lines[-2].startswith("  compat.html:")
