"""Self-tests of the report step: synthetic records in, grid *content* asserted out.

No torch: records are written with ``harness.protocol.records`` exactly as the suites write them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

import harness.cli
from harness.protocol.records import CellRecord, CheckRecord, write_record
from harness.report.grid import build_model, load_model
from harness.report.render_html import read_details
from harness.report.render_md import MAX_CHARS, render_markdown
from harness.report.write import write_report

XSS = "bad key <script>alert('x')</script> & more"


def versions(diffusers: str, torch: str = "2.5.1") -> dict[str, str]:
    return {"diffusers": diffusers, "torch": torch, "peft": "0.13.2", "python": "3.11.9"}


def check(
    cell: str,
    check_id: str,
    verdict: str = "pass",
    *,
    diffusers: str | None = None,
    torch: str = "2.5.1",
    observed: str | None = None,
    message: str = "",
    exc_type: str | None = None,
    traceback: str = "",
    suite: str | None = None,
) -> CheckRecord:
    default_observed = {
        "pass": "OK",
        "regression": "CRASH",
        "unsupported": "UNSUPPORTED",
        "harness-error": "HARNESS_ERROR",
        "skipped": "NOT_RUN",
    }[verdict]
    return CheckRecord(
        check_id=check_id,
        suite=suite or check_id.split("/", 1)[0],
        expected=["OK"],
        observed=observed or default_observed,
        verdict=verdict,
        cell=cell,
        nodeid=f"suites/{check_id}",
        params={"pipeline": "sd15"},
        exc_type=exc_type,
        message=message,
        traceback=traceback,
        versions=versions(diffusers or cell.split("-")[1], torch),
        duration_s=0.25,
    )


def cell_rec(cell: str, status: str = "ok", diffusers: str | None = None, **kw) -> CellRecord:
    ver = {"diffusers": diffusers} if diffusers else versions(cell.split("-")[1])
    return CellRecord(cell=cell, status=status, versions=ver, duration_s=10.0, **kw)


REGRESSING = "smoke/pipelines::denoise_step[sd15]"
STEADY = "smoke/pipelines::denoise_step[sdxl]"
PARTIAL = "lora/hotswap::swap[ip-1024-1280]"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Three good cells, one install failure; one file holding two cells, one cell in two
    files, a check present in some cells only, and an escaped-message regression."""
    res = tmp_path / "results"
    both = res / "cells-a.jsonl"  # two cells in one file
    for cell in ("cell-0.26.3", "cell-0.30.3"):
        write_record(both, cell_rec(cell, phase_seconds={"install": 1.0, "suite": 8.0}))
        write_record(both, check(cell, REGRESSING))
        write_record(both, check(cell, STEADY))
    write_record(both, check("cell-0.30.3", PARTIAL))
    # cell-0.33.1 split across two files (xdist workers)
    write_record(res / "w0.jsonl", cell_rec("cell-0.33.1"))
    write_record(
        res / "w0.jsonl",
        check(
            "cell-0.33.1",
            REGRESSING,
            "regression",
            message=XSS,
            exc_type="TypeError",
            traceback="Traceback (most recent call last):\nTypeError: <device>",
        ),
    )
    write_record(res / "w1.jsonl", check("cell-0.33.1", STEADY))
    write_record(res / "w1.jsonl", check("cell-0.33.1", PARTIAL, "unsupported"))
    # a cell that never got to run
    write_record(
        res / "failed.jsonl",
        cell_rec(
            "cell-0.28.0",
            "install_failed",
            diffusers="0.28.0",
            message="No solution found: huggingface_hub<0.26 <conflict>",
        ),
    )
    return res


def md_row(md: str, check_id: str) -> dict[str, str]:
    """Grid row of ``check_id`` as {column header: cell text} (suite grids only)."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if not (line.startswith("| check |") and "first pass" in line):
            continue
        heads = [h.strip() for h in line.strip("|").split("|")]
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            if f"`{check_id}`" in row:
                cells = [c.strip() for c in row.strip("|").split("|")]
                return dict(zip(heads, cells, strict=True))
    raise AssertionError(f"no row for {check_id} in:\n{md}")


# -- model / JSON --------------------------------------------------------------------------
def test_json_first_pass_first_regression_and_merging(results: Path, tmp_path: Path) -> None:
    out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    doc = json.loads((out / "compat.json").read_text())
    assert doc["schema"] == 2
    assert doc["generated_at"].endswith("Z")
    assert len(doc["inputs"]) == 4
    assert [c["name"] for c in doc["cells"]] == [
        "cell-0.26.3",
        "cell-0.28.0",
        "cell-0.30.3",
        "cell-0.33.1",
    ]
    checks = {c["check_id"]: c for c in doc["checks"]}
    reg = checks[REGRESSING]
    assert reg["first_pass"] == "0.26.3"
    assert reg["first_regression"] == "0.33.1"
    assert reg["first_regression_cell"] == "cell-0.33.1"
    assert reg["regressed_in"] == ["0.33.1"]
    res = reg["results"]["cell-0.33.1"]
    assert res["verdict"] == "regression"
    assert res["observed"] == "CRASH" and res["expected"] == ["OK"]
    assert res["exc_type"] == "TypeError" and res["message"] == XSS
    assert "cell-0.28.0" not in reg["results"]  # failed cell: no record, says `failed`
    steady = checks[STEADY]
    assert steady["first_pass"] == "0.26.3" and steady["first_regression"] is None
    # w0 + w1 merged into one cell
    assert set(steady["results"]) == {"cell-0.26.3", "cell-0.30.3", "cell-0.33.1"}
    partial = checks[PARTIAL]
    assert set(partial["results"]) == {"cell-0.30.3", "cell-0.33.1"}
    assert partial["first_pass"] == "0.30.3"
    assert doc["summary"]["cell-0.33.1"]["regression"] == 1
    assert doc["summary"]["cell-0.33.1"]["pass"] == 1
    assert doc["summary"]["cell-0.33.1"]["unsupported"] == 1
    assert doc["summary"]["cell-0.26.3"]["missing"] == 1
    failed = next(c for c in doc["cells"] if c["name"] == "cell-0.28.0")
    assert failed["status"] == "install_failed" and failed["failed"] is True
    assert failed["message"].startswith("No solution found")
    assert doc["summary"]["cell-0.28.0"]["cell-failed"] == 3


def test_regression_before_any_pass_is_not_first_regression(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    for cell, verdict in [
        ("cell-0.26.3", "regression"),
        ("cell-0.30.3", "pass"),
        ("cell-0.31.0", "regression"),
        ("cell-0.33.1", "regression"),
    ]:
        write_record(f, check(cell, REGRESSING, verdict))
    row = load_model([f]).checks[0]
    assert row.first_pass == "0.30.3"
    assert row.first_regression == "0.31.0"
    # red before any pass is "broken", not a regression: nothing was lost yet
    assert row.results["cell-0.26.3"].verdict == "broken"
    assert [row.results[c].verdict for c in ("cell-0.31.0", "cell-0.33.1")] == ["regression"] * 2
    assert row.regressed_in == ["0.31.0", "0.33.1"]


def test_row_that_never_passed_is_broken_not_regression(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    for cell in ("cell-0.26.3", "cell-0.30.3", "cell-0.33.1"):
        write_record(f, check(cell, STEADY, "regression"))
    model = load_model([f])
    (row,) = model.checks
    assert {r.verdict for r in row.results.values()} == {"broken"}
    assert row.first_regression is None and row.regressed_in == [] and row.breaks == []
    assert model.totals()["broken"] == 3 and model.totals()["regression"] == 0


def test_baseline_pass_makes_a_broken_cell_a_regression(tmp_path: Path) -> None:
    from harness.report.grid import promote_with_baseline

    f = tmp_path / "r.jsonl"
    write_record(f, check("cell-0.33.1", STEADY, "regression"))
    model = load_model([f])
    assert promote_with_baseline(model, {(STEADY, "cell-0.33.1")}) == 1
    (row,) = model.checks
    assert row.results["cell-0.33.1"].verdict == "regression"
    assert row.regressed_in == ["0.33.1"]


def test_duplicate_record_last_one_wins(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    write_record(f, check("cell-0.30.3", STEADY, "regression", message="first attempt"))
    write_record(f, check("cell-0.30.3", STEADY, "pass", message="rerun"))
    model = load_model([f])
    (row,) = model.checks
    assert row.results["cell-0.30.3"].verdict == "pass"
    assert row.results["cell-0.30.3"].message == "rerun"
    assert model.summary()["cell-0.30.3"]["total"] == 1


def test_cells_ordered_by_recorded_versions_not_names(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    write_record(f, check("zeta", STEADY, diffusers="0.9.0"))
    write_record(f, check("alpha", STEADY, diffusers="0.33.1"))
    write_record(f, check("cell-0.10.0-torch2.5.1", STEADY, diffusers="0.10.0", torch="2.5.1"))
    write_record(f, check("cell-0.10.0-torch2.4.0", STEADY, diffusers="0.10.0", torch="2.4.0"))
    write_record(f, CellRecord(cell="cell-0.26.3", status="install_failed"))  # name only
    model = load_model([f])
    assert [c.name for c in model.cells] == [
        "zeta",
        "cell-0.10.0-torch2.4.0",
        "cell-0.10.0-torch2.5.1",
        "cell-0.26.3",
        "alpha",
    ]
    labels = model.column_labels()
    assert labels["zeta"] == "0.9.0"
    assert labels["cell-0.10.0-torch2.4.0"] == "0.10.0 / torch 2.4.0"
    assert labels["cell-0.26.3"] == "0.26.3"


# -- Markdown ------------------------------------------------------------------------------
def test_markdown_grid_symbols_in_the_right_columns(results: Path, tmp_path: Path) -> None:
    out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    md = (out / "compat.md").read_text()
    assert md.startswith("# ")
    assert "**Legend:**" in md and "✅ pass" in md and "💥" in md
    row = md_row(md, REGRESSING)
    assert row["0.26.3"] == "✅"
    assert row["0.28.0 💥"] == "💥"
    assert row["0.30.3"] == "✅"
    assert row["0.33.1"] == "❌"
    assert row["first pass"] == "0.26.3"
    assert row["first regression"] == "❌ 0.33.1"
    partial = md_row(md, PARTIAL)
    assert partial["0.26.3"] == "—" and partial["0.30.3"] == "✅" and partial["0.33.1"] == "➖"
    # summary table line for the failed cell
    failed_line = next(line for line in md.splitlines() if line.startswith("| `cell-0.28.0`"))
    assert "💥 install" in failed_line
    # record text is escaped, never markup
    assert "<script>" not in md and "\\<script\\>" in md
    assert len(md) < MAX_CHARS


def test_markdown_summarises_when_too_large(tmp_path: Path) -> None:
    records = []
    for i in range(300):
        for cell in ("cell-0.26.3", "cell-0.30.3"):
            verdict = "regression" if (i == 7 and cell == "cell-0.30.3") else "pass"
            records.append(json.loads(check(cell, f"smoke/many::c[{i:03d}]", verdict).to_json()))
    model = build_model(records)
    full = render_markdown(model, max_chars=10**9)
    assert "c[123]" in full and "Note" not in full
    small = render_markdown(model, max_chars=6000)
    assert len(small) <= 6000
    assert "only rows with a non-pass result" in small
    assert "`smoke/many::c[007]`" in small and "c[123]" not in small
    assert "299 row(s) hidden" in small
    tiny = render_markdown(model, max_chars=4500)
    assert len(tiny) <= 4500 and "Note" in tiny


# -- HTML ----------------------------------------------------------------------------------
def test_html_escapes_and_shows_details(results: Path, tmp_path: Path) -> None:
    out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    html = (out / "compat.html").read_text()
    assert "<script>alert" not in html and "<device>" not in html
    # messages, tracebacks and cell messages travel in the compressed details blob (the
    # page builds panels from it with textContent, so record text never becomes markup)
    details = read_details(html)
    (row,) = [r for r in details["rows"] if r["check_id"] == REGRESSING]
    col = next(i for i, c in enumerate(details["cells"]) if c["name"] == "cell-0.33.1")
    result = row["results"][str(col)]
    assert result["message"] == XSS
    assert result["traceback"].endswith("TypeError: <device>")
    assert result["outcome"].startswith("CRASH: ") and result["exception"] == "TypeError"
    failed = next(c for c in details["cells"] if c["name"] == "cell-0.28.0")
    assert failed["failed"] and "huggingface_hub<0.26 <conflict>" in failed["message"]
    # the install failure is a distinct column state
    assert "col-failed" in html and "💥 install_failed" in html
    assert html.count('class="g s-cell-failed"') == 3
    assert html.count('class="g s-regression"') == 1
    assert "position: sticky" in html
    # self-contained: no external fetches
    assert not re.search(r"""(src|href)=["']?https?:""", html)
    # one script element of ours, plus the data blob (not executable)
    assert html.count("<script>") == 1
    assert html.count('<script type="application/octet-stream" id="details"') == 1


def test_crashed_cell_keeps_its_records_and_marks_the_rest(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    write_record(f, check("cell-0.30.3", STEADY))
    write_record(f, check("cell-0.30.3", REGRESSING))
    write_record(f, check("cell-0.31.0", STEADY))
    write_record(f, cell_rec("cell-0.31.0", "crashed", message="Segmentation fault"))
    model = load_model([f])
    crashed = model.cells[1]
    rows = {r.check_id: r for r in model.checks}
    assert rows[STEADY].state(crashed) == "pass"
    assert rows[REGRESSING].state(crashed) == "cell-failed"


# -- reading -------------------------------------------------------------------------------
def test_torn_last_line_warns_but_reports(results: Path, tmp_path: Path) -> None:
    with open(results / "w1.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"kind": "check", "check_id": "smoke/torn')
    with pytest.warns(UserWarning, match="truncated or corrupt"):
        out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    doc = json.loads((out / "compat.json").read_text())
    assert any("w1.jsonl" in w for w in doc["warnings"])
    assert len(doc["checks"]) == 3
    assert "truncated or corrupt" in (out / "compat.md").read_text()


# -- output folders / latest ---------------------------------------------------------------
def test_default_out_and_latest_symlink(results: Path, tmp_path: Path) -> None:
    root = tmp_path / "reports"
    first = write_report([results], None, update_latest=True, reports_root=root)
    assert first.parent == root / "runs"
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", first.name)
    latest = root / "latest"
    assert latest.is_symlink() and not os.path.isabs(os.readlink(latest))
    assert latest.resolve() == first.resolve()
    second = write_report([results], None, update_latest=True, reports_root=root)
    assert second != first  # same second: suffixed, never overwritten
    assert latest.resolve() == second.resolve()
    assert (latest / "compat.html").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".latest")]


def test_latest_falls_back_to_a_copy(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "reports"

    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError("symlinks not supported here")

    with monkeypatch.context() as m:
        m.setattr(os, "symlink", no_symlinks)
        out = write_report([results], tmp_path / "o1", update_latest=True, reports_root=root)
    latest = root / "latest"
    assert latest.is_dir() and not latest.is_symlink()
    assert (latest / "compat.json").read_text() == (out / "compat.json").read_text()
    # a later run with working symlinks replaces the copied folder
    out2 = write_report([results], tmp_path / "o2", update_latest=True, reports_root=root)
    assert latest.is_symlink() and latest.resolve() == out2.resolve()


# -- CLI -----------------------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """``harness.cli.main`` with only the command modules that exist yet (others are being
    written in parallel; this test is about ``report``)."""
    available = tuple(
        name
        for name in harness.cli.COMMANDS
        if importlib.util.find_spec(f"harness.commands.{name}") is not None
    )
    monkeypatch.setattr(harness.cli, "COMMANDS", available)
    return harness.cli.main


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("adapter-compat: error: ")
    return err[0]


def test_cli_writes_report_without_touching_latest(cli, results: Path, tmp_path: Path) -> None:
    root = tmp_path / "reports"
    out = tmp_path / "out"
    rc = cli(["report", str(results), "--out", str(out), "--reports-root", str(root)])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {
        "compat.json",
        "compat.md",
        "compat.html",
        "junit",
        "repro",
        "results",
    }
    assert not (root / "latest").exists()
    rc = cli(["report", str(results), "--out", str(out), "--latest", "--reports-root", str(root)])
    assert rc == 0 and (root / "latest").resolve() == out.resolve()


def test_cli_missing_results(cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli(
        [
            "report",
            str(tmp_path / "nope.jsonl"),
            "--out",
            str(tmp_path / "o"),
            "--reports-root",
            str(tmp_path / "reports"),
        ]
    )
    assert rc == 2
    line = _one_error_line(capsys)
    assert "nope.jsonl" in line and "does not exist" in line


def test_cli_empty_results(cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    (tmp_path / "blank.jsonl").write_text("\n")
    for target in (empty_dir, tmp_path / "blank.jsonl"):
        rc = cli(
            [
                "report",
                str(target),
                "--out",
                str(tmp_path / "o"),
                "--reports-root",
                str(tmp_path / "reports"),
            ]
        )
        assert rc == 2
        assert "no records found" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_cli_unwritable_out(
    cli, results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = cli(
        [
            "report",
            str(results),
            "--out",
            str(blocker / "sub"),
            "--reports-root",
            str(tmp_path / "reports"),
        ]
    )
    assert rc == 2
    line = _one_error_line(capsys)
    # checked up front by the command (`cannot be created`), else by write_report
    assert (
        "cannot be created" in line or "cannot create output folder" in line
    ) and "--out" in line
    rc = cli(
        ["report", str(results), "--out", str(blocker), "--reports-root", str(tmp_path / "reports")]
    )  # the file itself
    assert rc == 2
    assert "--out" in _one_error_line(capsys)


def test_cli_prints_warnings_for_torn_lines(
    cli, results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(results / "w0.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"kind": "ch')
    rc = cli(
        [
            "report",
            str(results),
            "--out",
            str(tmp_path / "o"),
            "--reports-root",
            str(tmp_path / "reports"),
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "adapter-compat: warning:" in err and "w0.jsonl" in err
