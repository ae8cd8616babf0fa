"""Bisection over released versions: release listing, the search (with untestable
versions), the private matrix and lock reuse, verdict caching, node ids. No cell is run:
the probe that would run one is replaced; the real thing is shown in docs/reports.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.matrix import cells
from harness.protocol.records import CellRecord, CheckRecord, write_record
from harness.triage import bisect
from harness.triage.bisect import BAD, GOOD, Probe


def pypi(*versions: str, yanked: tuple[str, ...] = ()) -> dict:
    """PyPI JSON shape: releases -> files with upload time and yanked flag."""
    releases = {}
    for i, v in enumerate(versions):
        releases[v] = [
            {"upload_time_iso_8601": f"2024-01-{i + 1:02d}T10:00:00.123456Z", "yanked": v in yanked}
        ]
    releases["0.99.0"] = []  # a release without files
    return {"releases": releases}


DATA = pypi(
    "0.30.3", "0.31.0", "0.32.0rc1", "0.32.0", "0.32.1", "0.32.2", "0.33.0", "0.33.1", "0.34.0",
    yanked=("0.32.1",),
)  # fmt: skip


def test_released_versions_skip_prereleases_yanked_and_empty() -> None:
    releases = bisect.released_versions(DATA)
    assert list(releases) == ["0.30.3", "0.31.0", "0.32.0", "0.32.2", "0.33.0", "0.33.1", "0.34.0"]
    assert releases["0.30.3"] == "2024-01-01T10:00:00Z"


def test_span_includes_patch_releases_and_checks_input() -> None:
    releases = bisect.released_versions(DATA)
    assert bisect.span(releases, "0.31.0", "0.33.1") == [
        "0.31.0",
        "0.32.0",
        "0.32.2",
        "0.33.0",
        "0.33.1",
    ]
    with pytest.raises(UsageError, match="0.32.9 is not a released diffusers version"):
        bisect.span(releases, "0.32.9", "0.33.1")
    with pytest.raises(UsageError, match="must be older"):
        bisect.span(releases, "0.33.1", "0.31.0")


def probes(kinds: dict[str, str], calls: list[str]):
    def probe(version: str) -> Probe:
        calls.append(version)
        verdict = {"good": "pass", "bad": "regression", "skip": "cell-failed"}[kinds[version]]
        return Probe(version, verdict, "CRASH" if verdict == "regression" else "")

    return probe


VERSIONS = [f"0.{n}.0" for n in range(20, 37)]  # 17 versions


@pytest.mark.parametrize("first_bad", ["0.21.0", "0.28.0", "0.36.0"])
def test_binary_search_finds_the_first_bad(first_bad: str) -> None:
    cut = VERSIONS.index(first_bad)
    kinds = {v: GOOD if i < cut else BAD for i, v in enumerate(VERSIONS)}
    calls: list[str] = []
    result = bisect.bisect("c", VERSIONS, probes(kinds, calls), log=lambda _: None)
    assert result.error is None
    assert (result.last_good, result.first_bad) == (VERSIONS[cut - 1], first_bad)
    assert len(calls) <= 2 + 4  # the two ends + log2(15) steps
    assert any("<- first bad" in line and first_bad in line for line in result.table())


def test_untestable_versions_are_stepped_around() -> None:
    kinds = {v: GOOD if i < 9 else BAD for i, v in enumerate(VERSIONS)}
    kinds["0.28.0"] = kinds["0.29.0"] = "skip"  # e.g. install failed / API absent
    result = bisect.bisect("c", VERSIONS, probes(kinds, []), log=lambda _: None)
    assert result.last_good == "0.27.0" and result.first_bad == "0.30.0"
    assert result.skipped_between == ["0.28.0", "0.29.0"]


def test_ends_are_verified() -> None:
    kinds = dict.fromkeys(VERSIONS, BAD)
    result = bisect.bisect("c", VERSIONS, probes(kinds, []), log=lambda _: None)
    assert result.error and "--good 0.20.0 does not pass" in result.error
    kinds = dict.fromkeys(VERSIONS, GOOD)
    result = bisect.bisect("c", VERSIONS, probes(kinds, []), log=lambda _: None)
    assert result.error and "is not a regression" in result.error


def test_private_matrix_reuses_committed_locks(tmp_path: Path) -> None:
    committed = cells.known_versions()[0]
    assert bisect.ensure_cell(committed, "2024-01-01T00:00:00Z", tmp_path, log=lambda _: None)
    lock = bisect.matrix_dir(tmp_path) / "locks" / f"{committed}.txt"
    assert lock.read_bytes() == (cells.LOCK_DIR / f"{committed}.txt").read_bytes()
    calls = []

    def fake_compile(version: str, released: str, target: Path) -> None:
        calls.append(version)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"diffusers=={version}\n")

    assert bisect.ensure_cell(
        "0.32.1", "2024-12-25T12:21:28Z", tmp_path, lambda _: None, fake_compile
    )
    assert bisect.ensure_cell(
        "0.32.1", "2024-12-25T12:21:28Z", tmp_path, lambda _: None, fake_compile
    )
    assert calls == ["0.32.1"]  # resolved once, cached under locks/
    written = json.loads((bisect.matrix_dir(tmp_path) / "cells.json").read_text())
    assert [c["diffusers"] for c in written["cells"]] == [committed, "0.32.1"]
    assert (
        written["default_cells"] == []
        and written["companions"] == cells.matrix_data()["companions"]
    )

    def failing(version: str, released: str, target: Path) -> None:
        raise UsageError("No solution found")

    assert not bisect.ensure_cell(
        "0.32.0", "2024-12-23T00:00:00Z", tmp_path, lambda _: None, failing
    )


def test_read_probe(tmp_path: Path) -> None:
    results = tmp_path / "cell-0.33.0.jsonl"
    write_record(
        results,
        CheckRecord(
            check_id="ip_adapter/load::load[flux]", suite="ip_adapter", expected=["OK"],
            observed="CRASH", verdict="regression", exc_type="TypeError", message="device_map",
        ),
    )  # fmt: skip
    write_record(results, CellRecord(cell="cell-0.33.0", status="ok"))
    probe = bisect.read_probe(results, "0.33.0", "ip_adapter/load::load[flux]")
    assert probe.kind == BAD and probe.describe() == "regression (CRASH, TypeError)"
    assert bisect.read_probe(results, "0.33.0", "other::x").verdict == "missing"
    assert bisect.read_probe(tmp_path / "none.jsonl", "0.33.0", "x::y").kind == "skip"


def test_run_bisect_caches_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bisect, "pypi_json", lambda offline, cache: DATA)
    monkeypatch.setattr(bisect, "ensure_cell", lambda *a, **k: True)
    monkeypatch.setattr(bisect, "code_digest", lambda: "code-1")
    ran: list[str] = []

    def fake_run(version, check_id, nodeid, cache, timeout, log):
        ran.append(version)
        bad = version >= "0.33.0"
        return Probe(version, "regression" if bad else "pass", "CRASH" if bad else "OK")

    monkeypatch.setattr(bisect, "run_version", fake_run)
    quiet = {"log": lambda _: None, "cache": tmp_path}
    first = bisect.run_bisect("c::x", "suites/c/test_x.py::test_x", "0.30.3", "0.34.0", **quiet)
    assert (first.last_good, first.first_bad) == ("0.32.2", "0.33.0")
    assert ran and bisect.known_first_bad(tmp_path) == {"c::x": "0.33.0"}
    count = len(ran)
    again = bisect.run_bisect("c::x", "suites/c/test_x.py::test_x", "0.30.3", "0.34.0", **quiet)
    assert len(ran) == count and again.first_bad == "0.33.0"
    assert all(p.cached for p in again.probes.values())
    monkeypatch.setattr(bisect, "code_digest", lambda: "code-2")  # the checks changed
    bisect.run_bisect("c::x", "suites/c/test_x.py::test_x", "0.30.3", "0.34.0", **quiet)
    assert len(ran) > count


def test_nodeid_for(tmp_path: Path) -> None:
    (tmp_path / "suites" / "lora").mkdir(parents=True)
    (tmp_path / "suites" / "lora" / "test_formats.py").write_text("")
    assert (
        bisect.nodeid_for("lora/formats::load[flux-kohya]", root=tmp_path)
        == "suites/lora/test_formats.py::test_load[flux-kohya]"
    )
    assert (
        bisect.nodeid_for("suites/x/test_y.py::test_z", root=tmp_path)
        == "suites/x/test_y.py::test_z"
    )
    with pytest.raises(UsageError, match="cannot find the test file"):
        bisect.nodeid_for("lora/missing::load", root=tmp_path)
    report = tmp_path / "compat.json"
    report.write_text(
        json.dumps(
            {
                "checks": [
                    {"check_id": "a/b::c", "results": {"x": {"nodeid": "suites/a/K.py::T::test_c"}}}
                ]
            }
        )
    )
    assert bisect.nodeid_for("a/b::c", report, root=tmp_path) == "suites/a/K.py::T::test_c"


def report_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``adapter-compat report`` of a synthetic run (STEADY_BAD breaks at 0.33.1)."""
    import harness.cli
    from tests.report.report_runs import write_run

    monkeypatch.setattr(harness.cli, "COMMANDS", ("report",))
    out = tmp_path / "o"
    results = write_run(tmp_path / "r", False)
    argv = ["report", str(results), "--out", str(out), "--reports-root", str(tmp_path / "x")]
    assert harness.cli.main([*argv, "--no-baseline"]) == 0
    return out


def test_reports_and_drafts_name_the_bisected_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command reads the bisect cache and hands it to the report, which never
    imports triage; the drafts get the same mapping."""
    from harness.triage.filing import build_drafts
    from tests.report.report_runs import STEADY_BAD

    cache = tmp_path / "cache"
    bisect.save_cache(
        {"first_bad": {STEADY_BAD: {"first_bad": "0.33.0", "last_good": "0.32.2"}}}, cache
    )
    monkeypatch.setattr(bisect, "CACHE", cache)
    out = report_cli(monkeypatch, tmp_path)
    doc = json.loads((out / "compat.json").read_text())
    check = next(c for c in doc["checks"] if c["check_id"] == STEADY_BAD)
    assert (check["first_bad"], check["bisected_first_bad"]) == ("0.33.1", "0.33.0")
    assert "| ❌ 0.33.1 | 0.33.0 |" in (out / "compat.md").read_text()
    (draft,) = build_drafts(doc, bisected=bisect.known_first_bad())
    assert draft.title.endswith("since diffusers 0.33.0")
    assert "**0.33.0** (bisected over released versions" in draft.body


def test_report_keeps_only_bisections_of_checks_that_break(tmp_path: Path) -> None:
    from harness.report.write import write_report
    from tests.report.report_runs import GREEN, STEADY_BAD, write_run

    out = write_report(
        [write_run(tmp_path / "r", False)],
        tmp_path / "o",
        False,
        tmp_path / "x",
        baseline=None,
        first_bad={STEADY_BAD: "0.33.0", GREEN: "0.31.0", "gone::x": "0.30.3"},
    )
    doc = json.loads((out / "compat.json").read_text())
    bisected = {c["check_id"]: c["bisected_first_bad"] for c in doc["checks"]}
    assert bisected[STEADY_BAD] == "0.33.0" and bisected[GREEN] is None


@pytest.mark.parametrize("content", ["[1, 2]", '{"first_bad": []}', "not json"])
def test_a_broken_bisect_cache_never_stops_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    from harness.commands.bisect import cached_first_bad

    cache = tmp_path / "cache"
    (cache / "bisect").mkdir(parents=True)
    (cache / "bisect" / "verdicts.json").write_text(content)
    monkeypatch.setattr(bisect, "CACHE", cache)
    assert cached_first_bad() == {}
    out = report_cli(monkeypatch, tmp_path)
    doc = json.loads((out / "compat.json").read_text())
    assert all(c["bisected_first_bad"] is None for c in doc["checks"])
