"""The full report: headline against a baseline, trend across runs, first bad version,
JUnit per cell, repro scripts, API drift section. Synthetic records, no torch."""

from __future__ import annotations

import json
import shlex
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.protocol.records import CellRecord, write_record
from harness.report.diff import load_baseline
from harness.report.grid import build_model
from harness.report.render_md import MAX_CHARS, render_markdown
from harness.report.write import write_report
from tests.report.report_runs import CELLS, CHANGING, GREEN, STEADY_BAD, record, write_run


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "reports"
    first = write_report([write_run(tmp_path / "r1", False)], None, True, reports_root=root)
    second = write_report(
        [write_run(tmp_path / "r2", True, message="addr 0x7fff")], None, True, reports_root=root
    )
    return root, first, second


def test_headline_names_exactly_the_changed_check(two_runs: tuple[Path, Path, Path]) -> None:
    root, first, second = two_runs
    doc1 = json.loads((first / "compat.json").read_text())
    assert doc1["schema"] == 2 and doc1["changes"] is None
    doc = json.loads((second / "compat.json").read_text())
    changes = doc["changes"]
    assert changes["baseline_run"] == first.name
    assert [(c["check_id"], c["cell"]) for c in changes["new_regressions"]] == [
        (CHANGING, "cell-0.42.1")
    ]
    new = changes["new_regressions"][0]
    assert new["before"]["verdict"] == "pass" and new["after"]["observed"] == "WRONG_RESULT"
    # the steady regression's message changed (an address): not news
    assert changes["fixes"] == [] and changes["other"] == []
    assert changes["summary"] == "1 new regression, 0 fixes, 0 other changes"
    md = (second / "compat.md").read_text()
    head = md[: md.index("## First bad version")]
    assert "1 new regression, 0 fixes, 0 other changes" in head
    assert f"`{CHANGING}` @ 0.42.1: pass → regression (WRONG\\_RESULT)" in head
    assert STEADY_BAD not in head and GREEN not in head
    html = (second / "compat.html").read_text()
    start = html.index('id="new-regressions"')
    listing = html[start : html.index("</ul>", start)]
    assert CHANGING in listing and STEADY_BAD not in listing
    assert html.count('class="g s-regression chg"') == 1


def test_trend_shows_every_stored_run(two_runs: tuple[Path, Path, Path]) -> None:
    root, first, second = two_runs
    doc = json.loads((second / "compat.json").read_text())
    history = doc["history"]
    assert [h["run"] for h in history] == [first.name, second.name]
    assert [h["totals"]["regression"] for h in history] == [2, 3]
    html = (second / "compat.html").read_text()
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert svg.count("<rect") == 6  # two runs x (regressions, broken, passes)
    assert f"{first.name}: 2 regressions" in svg and f"{second.name}: 3 regressions" in svg
    assert 'class="current"' in svg
    md = (second / "compat.md").read_text()
    assert f"| {second.name} (this run) | " in md


def test_trend_is_carried_by_the_baseline_without_runs_folder(tmp_path: Path) -> None:
    """CI: no reports/runs, only last night's compat.json: the trend still grows."""
    night1 = write_report(
        [write_run(tmp_path / "r1", False)], tmp_path / "n1", False, tmp_path / "x", baseline=None
    )
    night2 = write_report(
        [write_run(tmp_path / "r2", False)], tmp_path / "n2", False, tmp_path / "y", baseline=night1
    )
    night3 = write_report(
        [write_run(tmp_path / "r3", True)],
        tmp_path / "n3",
        False,
        tmp_path / "z",
        baseline=night2 / "compat.json",
    )
    doc = json.loads((night3 / "compat.json").read_text())
    assert len(doc["history"]) == 3
    assert [c["check_id"] for c in doc["changes"]["new_regressions"]] == [CHANGING]


def test_fix_and_other_changes(tmp_path: Path) -> None:
    base = write_report(
        [write_run(tmp_path / "r1", True)], tmp_path / "a", False, tmp_path / "x", baseline=None
    )
    now = write_run(tmp_path / "r2", False)
    # the steady regression becomes a harness error in one cell: "changed", not fixed
    path = now / "cell-0.33.1.jsonl"
    write_record(
        path,
        record("0.33.1", STEADY_BAD, "harness-error"),
    )
    out = write_report([now], tmp_path / "b", False, tmp_path / "x", baseline=base)
    changes = json.loads((out / "compat.json").read_text())["changes"]
    assert [(c["check_id"], c["cell"]) for c in changes["fixes"]] == [(CHANGING, "cell-0.42.1")]
    assert [(c["check_id"], c["after"]["verdict"]) for c in changes["other"]] == [
        (STEADY_BAD, "harness-error")
    ]
    assert changes["new_regressions"] == []


def test_another_exception_type_is_a_new_regression(tmp_path: Path) -> None:
    base = write_report(
        [write_run(tmp_path / "r1", False)], tmp_path / "a", False, tmp_path / "x", baseline=None
    )
    now = write_run(tmp_path / "r2", False)
    write_record(
        now / "cell-0.42.1.jsonl",
        record("0.42.1", STEADY_BAD, "regression", exc_type="AssertionError", message="q/k/v"),
    )
    out = write_report([now], tmp_path / "b", False, tmp_path / "x", baseline=base)
    changes = json.loads((out / "compat.json").read_text())["changes"]
    (change,) = changes["new_regressions"]
    assert (
        change["before"]["exc_type"] == "KeyError"
        and change["after"]["exc_type"] == "AssertionError"
    )


def test_schema_1_baseline_is_readable(tmp_path: Path) -> None:
    out = write_report(
        [write_run(tmp_path / "r1", False)], tmp_path / "a", False, tmp_path / "x", baseline=None
    )
    doc = json.loads((out / "compat.json").read_text())
    for key in ("changes", "history", "totals", "drift", "run"):
        doc.pop(key)
    doc["schema"] = 1
    (tmp_path / "old.json").write_text(json.dumps(doc))
    base = load_baseline(tmp_path / "old.json")
    assert base.totals["regression"] == 2
    now = write_report(
        [write_run(tmp_path / "r2", True)],
        tmp_path / "b",
        False,
        tmp_path / "x",
        baseline=tmp_path / "old.json",
    )
    changes = json.loads((now / "compat.json").read_text())["changes"]
    assert [c["check_id"] for c in changes["new_regressions"]] == [CHANGING]


def test_first_bad_version_per_regression(tmp_path: Path) -> None:
    out = write_report(
        [write_run(tmp_path / "r", True)], tmp_path / "o", False, tmp_path / "x", baseline=None
    )
    checks = {c["check_id"]: c for c in json.loads((out / "compat.json").read_text())["checks"]}
    assert (checks[STEADY_BAD]["last_good"], checks[STEADY_BAD]["first_bad"]) == (
        "0.32.2",
        "0.33.1",
    )
    assert (checks[CHANGING]["last_good"], checks[CHANGING]["first_bad"]) == ("0.33.1", "0.42.1")
    assert checks[GREEN]["first_bad"] is None and checks[GREEN]["breaks"] == []
    md = (out / "compat.md").read_text()
    # shell-quoted: check ids hold [ ], which a shell would glob
    command = f"adapter-compat bisect '{STEADY_BAD}' --good 0.32.2 --bad 0.33.1"
    assert command in md
    assert shlex.split(command)[2] == STEADY_BAD


def test_junit_per_cell(tmp_path: Path) -> None:
    results = write_run(tmp_path / "r", True)
    write_record(
        results / "cell-0.26.3.jsonl",
        CellRecord(cell="cell-0.26.3", status="install_failed", message="resolver <conflict>"),
    )
    out = write_report([results], tmp_path / "o", False, tmp_path / "x", baseline=None)
    files = sorted(p.name for p in (out / "junit").iterdir())
    assert files == [f"cell-{c}.xml" for c in ("0.26.3", *CELLS)]
    root = ET.parse(out / "junit" / "cell-0.42.1.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "cell-0.42.1"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "1")
    failure = suite.find(f"testcase[@name='{STEADY_BAD}']/failure")
    assert failure is not None and failure.get("type") == "CRASH"
    assert "adapter-compat repro" in (failure.text or "")
    failed = ET.parse(out / "junit" / "cell-0.26.3.xml").getroot().find("testsuite")
    assert failed is not None and failed.get("errors") == "4"
    assert "resolver <conflict>" in ET.tostring(failed, encoding="unicode").replace(
        "&lt;", "<"
    ).replace("&gt;", ">")


def test_repro_script_for_every_non_passing_result(tmp_path: Path) -> None:
    out = write_report(
        [write_run(tmp_path / "r", True)], tmp_path / "o", False, tmp_path / "x", baseline=None
    )
    doc = json.loads((out / "compat.json").read_text())
    non_pass = [
        (c["check_id"], cell, r)
        for c in doc["checks"]
        for cell, r in c["results"].items()
        if r["verdict"] != "pass"
    ]
    assert len(non_pass) == 3 + len(CELLS)  # 3 regressions + the unsupported check
    for check_id, cell, result in non_pass:
        repro = result["repro"]
        assert repro["kind"] == "rerun"
        script = (out / repro["file"]).read_text()
        assert check_id in script and cell in script and "rerun" in script.splitlines()[1]
        lock = f"(full lock: fixtures/matrix/locks/{cell.removeprefix('cell-')}.txt)"
        assert lock in script  # the committed lock of the cell's diffusers
        compile(script, repro["file"], "exec")
    passing = doc["checks"][0]["results"]["cell-0.30.3"]
    assert passing["verdict"] == "pass" and passing["repro"] is None


def test_drift_section_when_the_timeline_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = write_report(
        [write_run(tmp_path / "r", False)], tmp_path / "o", False, tmp_path / "x", baseline=None
    )
    assert (
        "API drift" not in (out / "compat.md").read_text()
        or "harness.drift.timeline" in sys.modules
    )
    fake = types.ModuleType("harness.drift.timeline")
    fake.timeline_data = lambda: [  # type: ignore[attr-defined]
        {
            "version": "0.33.0",
            "symbol": "load_model_dict_into_meta",
            "change": "device -> device_map",
        },
    ]
    monkeypatch.setitem(sys.modules, "harness.drift.timeline", fake)
    out = write_report(
        [write_run(tmp_path / "r", False)], tmp_path / "o2", False, tmp_path / "x", baseline=None
    )
    md = (out / "compat.md").read_text()
    assert "## API drift" in md and "device -\\> device\\_map" in md
    doc = json.loads((out / "compat.json").read_text())
    assert doc["drift"]["rows"][0]["symbol"] == "load_model_dict_into_meta"
    assert "load_model_dict_into_meta" in (out / "compat.html").read_text()


def test_broken_timeline_never_breaks_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("harness.drift.timeline")

    def boom() -> None:
        raise RuntimeError("no snapshots")

    fake.timeline_data = boom  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harness.drift.timeline", fake)
    out = write_report(
        [write_run(tmp_path / "r", False)], tmp_path / "o", False, tmp_path / "x", baseline=None
    )
    assert "timeline unavailable: no snapshots" in (out / "compat.md").read_text()


def test_markdown_headline_stays_under_the_limit(tmp_path: Path) -> None:
    """Thousands of changes: the headline is capped, the whole body stays under 65,536."""
    records = []
    for i in range(2500):
        for cell in ("0.30.3", "0.42.1"):
            verdict = "regression" if cell == "0.42.1" else "pass"
            records.append(
                json.loads(
                    record(cell, f"lora/many::c[x{i:04d}-y]", verdict, message="m" * 200).to_json()
                )
            )
    model = build_model(records)
    from harness.report.diff import Baseline, compare

    model.changes = compare(
        model,
        Baseline(
            "b.json",
            "2025-01-01T00:00:00Z",
            "b",
            {},
            {"cell-0.30.3": "ok", "cell-0.42.1": "ok"},
            set(),
        ),
    )
    assert len(model.changes.new_regressions) == 2500
    md = render_markdown(model)
    assert len(md) <= MAX_CHARS
    assert "New regressions (2500)" in md and "and 2440 more" in md
