"""``bisect --newly-red``: at most K commit bisects of the rows main broke since the newest
release, their records appended where the report reads them, and issue drafts of a
main-only breakage that name the commit and say it is unreleased.

Offline: the records are synthetic (tests/report/source_runs.py), the clone is a two-commit
git repository made here (a ``v0.42.1`` tag and main), and the commit bisect is replaced by
a fake that names PLANTED, so only this step's own logic runs. A real bisect over a real
tiny history is the end-to-end test at the bottom.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.matrix.source import Commit
from harness.protocol.records import CellRecord, CheckRecord, write_record
from harness.report.write import write_report
from harness.triage import commit_bisect, newly_red_bisect
from harness.triage.commit_bisect import CommitBisection
from harness.triage.filing.drafts import build_drafts
from tests.matrix.source_history import CHECK_ID, NODEID, PLANTED_PR, _git, build_history
from tests.report.source_runs import (
    NEWLY_RED,
    PLANTED,
    bisect_record,
    source_facts,
    write_records,
)

ROOT = Path(__file__).resolve().parents[2]
SELFTEST_CACHE = ROOT / ".cache" / "adapter-compat-selftest"
KOHYA = NEWLY_RED[:2]  # one root cause (the same KeyError on the same operation)
IP_ADAPTER = NEWLY_RED[2]  # another


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def clone(tmp_path: Path) -> tuple[Path, str]:
    """A clone holding the release tag and the source cell's commit (nothing to build)."""
    repo = tmp_path / "clone"
    repo.mkdir()
    _git(repo, "init", "-q", "--initial-branch=main")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "Release: v0.42.1")
    _git(repo, "tag", "v0.42.1")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "Merge the nightly's tip (#5000)",
         date="2026-11-20T03:00:00+00:00")  # fmt: skip
    return repo, _git(repo, "rev-parse", "HEAD")


def report_of(folder: Path, tmp_path: Path, name: str = "out") -> Path:
    return write_report([folder], tmp_path / name, False, tmp_path / "root", baseline=None)


class FakeBisect:
    """Stands in for run_commit_bisect: records each call, names PLANTED as first bad."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, check_id, nodeid, repo, good_ref, bad_ref, **kw) -> CommitBisection:
        self.calls.append({"check_id": check_id, "nodeid": nodeid, "repo": repo,
                           "good": good_ref, "bad": bad_ref, **kw})  # fmt: skip
        good, bad = Commit("a" * 40, "", "Release"), Commit(bad_ref, "", "tip")
        result = CommitBisection(check_id, Path(repo), good, bad, [], companions_of="0.42.1")
        result.first_bad = Commit(PLANTED, "2026-11-02T12:00:00+00:00",
                                  "[LoRA] simplify kohya conversion (#4242)")  # fmt: skip
        result.last_good = good
        return result


@pytest.fixture
def fake(monkeypatch) -> FakeBisect:
    stub = FakeBisect()
    monkeypatch.setattr(commit_bisect, "run_commit_bisect", stub)
    monkeypatch.delenv(newly_red_bisect.MAX_BISECTS_ENV, raising=False)
    return stub


def test_k_bisects_then_the_rest_listed_as_not_bisected(clone, fake, tmp_path, capsys) -> None:
    """Three newly red rows, K = 2: two bisects, one per root cause first (the second
    kohya row waits), each record appended as it finishes; the report then shows the
    commit for two rows and ``not bisected`` for the third; the next night bisects only it."""
    repo, sha = clone
    folder = write_records(tmp_path / "r", with_old_source=False, main=sha, origin=str(repo))
    out = report_of(folder, tmp_path)
    results = tmp_path / "results"
    args = ["bisect", "--newly-red", "--report", str(out), "--results", str(results)]
    assert main([*args, "--max-bisects", "2"]) == 0
    assert [c["check_id"] for c in fake.calls] == [KOHYA[0], IP_ADAPTER]
    first = fake.calls[0]
    assert (first["good"], first["bad"], first["companions_of"]) == ("v0.42.1", sha, "0.42.1")
    assert Path(first["repo"]) == repo.resolve()  # the source cell's origin: no --repo needed
    assert first["nodeid"].startswith("suites/lora/test_x.py::test_load[flux-kohya]")
    assert first["profile"] == {"ADAPTER_COMPAT_DEVICE": "cpu", "ADAPTER_COMPAT_DTYPE": "float32"}
    printed = capsys.readouterr().out
    assert "newly red rows: 3; bisected now: 2 (limit 2), already bisected: 0, not bisected: 1" in (
        printed
    )
    assert f"{KOHYA[1]}: not bisected (over tonight's limit of 2)" in printed
    assert f"{KOHYA[0]}: first bad commit {PLANTED[:7]} (#4242)" in printed
    records_file = results / f"bisect-{sha[:7]}.jsonl"
    lines = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert [r["check_id"] for r in lines] == [KOHYA[0], IP_ADAPTER]
    assert {r["kind"] for r in lines} == {"bisect"} and lines[0]["source_commit"] == sha
    assert lines[0]["first_bad"]["pr"] == "4242" and lines[0]["status"] == "found"

    (folder / records_file.name).write_text(records_file.read_text())  # beside the cells'
    night = report_of(folder, tmp_path, "with-bisects")
    doc = json.loads((night / "compat.json").read_text())
    rows = {r["check_id"]: r for r in doc["main_vs_release"][0]["rows"]}
    assert [rows[c]["status"] for c in NEWLY_RED] == ["found", "not-bisected", "found"]
    md = (night / "compat.md").read_text()
    assert f"first bad commit {PLANTED[:7]} (\\#4242, 2026-11-02)" in md
    assert "2 of 3 bisected" in md

    fake.calls.clear()
    assert main([*args, "--report", str(night), "--max-bisects", "2"]) == 0
    assert [c["check_id"] for c in fake.calls] == [KOHYA[1]]  # the done ones are not redone
    assert len(records_file.read_text().splitlines()) == 3  # appended, never rewritten


def test_limit_from_the_environment_and_zero(clone, fake, tmp_path, monkeypatch, capsys) -> None:
    repo, sha = clone
    out = report_of(write_records(tmp_path / "r", False, main=sha, origin=str(repo)), tmp_path)
    args = ["bisect", "--newly-red", "--report", str(out), "--results", str(tmp_path / "x")]
    monkeypatch.setenv(newly_red_bisect.MAX_BISECTS_ENV, "1")
    assert main(args) == 0 and len(fake.calls) == 1
    fake.calls.clear()
    assert main([*args, "--max-bisects", "0"]) == 0 and fake.calls == []  # the flag wins
    assert "not bisected: 3" in capsys.readouterr().out
    monkeypatch.delenv(newly_red_bisect.MAX_BISECTS_ENV)
    assert newly_red_bisect.max_bisects(None) == newly_red_bisect.DEFAULT_MAX_BISECTS == 3


def test_bad_input_is_one_clear_line_each(clone, fake, tmp_path, monkeypatch, capsys) -> None:
    repo, sha = clone
    out = report_of(write_records(tmp_path / "r", False, main=sha, origin=str(repo)), tmp_path)
    base = ["bisect", "--newly-red", "--report", str(out)]
    for value in ("-1", "x", "1.5", ""):
        assert main([*base, "--max-bisects", value]) == 2
        assert f"--max-bisects {value!r}: give a whole number of bisects, 0 or more" in (
            error_line(capsys)
        )
    monkeypatch.setenv(newly_red_bisect.MAX_BISECTS_ENV, "-2")
    assert main(base) == 2
    assert "ADAPTER_COMPAT_MAX_BISECTS '-2': give a whole number" in error_line(capsys)
    monkeypatch.delenv(newly_red_bisect.MAX_BISECTS_ENV)
    cases = {
        (
            "bisect",
            "--max-bisects",
            "2",
            CHECK_ID,
        ): "--max-bisects and --results go with --newly-red",
        ("bisect",): "CHECK is needed (a check id or pytest node id), or --newly-red",
        (*base, CHECK_ID): "--newly-red takes its rows and refs from the report, not CHECK",
        (*base, "--good", "v1", "--blame"): "not --good, --blame",
        ("bisect", "--newly-red", "--report", str(tmp_path / "none")): "no report at",
        (*base, "--repo", str(tmp_path / "nowhere")): "no such folder",
        (*base, "--repo", str(tmp_path)): "is not a diffusers tree: not a git clone",
    }
    for args, message in cases.items():
        assert main(list(args)) == 2, args
        assert message in error_line(capsys), args
    _git(repo, "tag", "-d", "v0.42.1")
    assert main(base) == 2
    assert "has no tag v0.42.1" in error_line(capsys)
    other = tmp_path / "other"
    other.mkdir()
    _git(other, "init", "-q")
    _git(other, "commit", "-q", "--allow-empty", "-m", "x")
    _git(other, "tag", "v0.42.1")
    assert main([*base, "--repo", str(other)]) == 2
    assert f"does not hold the source cell's commit {sha[:7]}" in error_line(capsys)
    assert fake.calls == []  # nothing was bisected on bad input


def test_no_source_cell_after_the_release_is_nothing_to_do(fake, tmp_path, capsys) -> None:
    folder = write_records(tmp_path / "r", with_old_source=True)
    for path in folder.glob("cell-src-0123456*"):
        path.unlink()  # only the cell from before 0.42.1 is left
    out = report_of(folder, tmp_path)
    assert main(["bisect", "--newly-red", "--report", str(out)]) == 0
    assert "nothing to bisect" in capsys.readouterr().out and fake.calls == []


def test_drafts_of_a_main_only_breakage_name_the_commit_and_say_unreleased(tmp_path) -> None:
    folder = write_records(tmp_path / "r", with_old_source=False)
    (folder / "bisect-0123456.jsonl").write_text(
        "".join(json.dumps(bisect_record(c)) + "\n" for c in KOHYA)
    )
    doc = json.loads((report_of(folder, tmp_path) / "compat.json").read_text())
    drafts = {tuple(d.rows): d for d in build_drafts(doc, everything=True)}
    kohya = drafts[tuple(KOHYA)]
    assert kohya.title.endswith(f"2 row(s) fail on main since {PLANTED[:7]} (unreleased)")
    assert (
        f"**Unreleased:** not in any release; introduced on main by `{PLANTED}` "
        '"[LoRA] simplify kohya conversion (#4242)" (#4242, 2026-11-02). It passes in the '
        "newest release, 0.42.1." in kohya.body
    )
    assert "**First bad version:** not in any release; introduced on main by" in kohya.body
    ip = drafts[(IP_ADAPTER,)]  # newly red, not bisected yet
    assert ip.title.endswith("1 row(s) fail on main at 0123456 (unreleased)")
    assert "not in any release; red on main at `0123456` (2026-11-20)" in ip.body
    assert f"--good v0.42.1 --bad {'0123456789abcdef' * 2}" in ip.body
    released = drafts[("lora/formats::load[sd15-comfy]",)]  # red in 0.42.1 as well
    assert "Unreleased" not in released.body and "unreleased" not in released.title
    assert "since diffusers 0.42.1" in released.title


def test_a_found_commit_changes_the_open_issues_state(tmp_path) -> None:
    """Planted: the same report without the bisect records: same fingerprint, another
    state (the open issue gets a comment naming the commit), and no commit in the text.
    Main at another commit with the same rows red: the same state (no nightly comment)."""
    folder = write_records(tmp_path / "r", with_old_source=False)
    before = json.loads((report_of(folder, tmp_path, "a") / "compat.json").read_text())
    (folder / "bisect-0123456.jsonl").write_text(json.dumps(bisect_record(KOHYA[0])) + "\n")
    after = json.loads((report_of(folder, tmp_path, "b") / "compat.json").read_text())
    old = next(d for d in build_drafts(before, everything=True) if KOHYA[0] in d.rows)
    new = next(d for d in build_drafts(after, everything=True) if KOHYA[0] in d.rows)
    assert old.fingerprint == new.fingerprint and old.state != new.state
    assert PLANTED not in old.body and PLANTED[:7] in new.update
    other = write_records(tmp_path / "r2", with_old_source=False, main="9" * 40)
    tomorrow = json.loads((report_of(other, tmp_path, "c") / "compat.json").read_text())
    moved = next(d for d in build_drafts(tomorrow, everything=True) if KOHYA[0] in d.rows)
    assert moved.fingerprint == old.fingerprint and moved.rows != old.rows
    assert moved.state == old.state  # main moved to another commit: nothing new to say


def test_a_file_url_goes_the_url_way(clone, tmp_path, monkeypatch) -> None:
    """What the nightly passes where it has a network (``URL@REF``), checked offline with a
    ``file://`` URL, which git treats like any other: ``run --source`` resolves it through a
    clone in the cache, and ``--newly-red --repo URL`` bisects in that clone."""
    from harness.matrix.source import resolve_source, split_source

    monkeypatch.setenv("ADAPTER_COMPAT_CACHE", str(tmp_path / "cache"))
    repo, _sha = clone
    init = repo / "src" / "diffusers" / "__init__.py"
    init.parent.mkdir(parents=True)
    init.write_text('__version__ = "0.43.0.dev0"\n')
    _git(repo, "add", "-A")
    _git(
        repo, "commit", "-q", "-m", "Bump to 0.43.0.dev0 (#5001)", date="2026-11-21T03:00:00+00:00"
    )
    sha = _git(repo, "rev-parse", "HEAD")
    url = f"file://{repo}"
    assert split_source(f"{url}@main") == (url, "main", True)
    tree = resolve_source(f"{url}@main", log=lambda _: None)
    assert tree.commit.sha == sha and tree.declared_version == "0.43.0.dev0"
    assert tree.origin == url and tree.repo.is_relative_to(tmp_path / "cache")
    comparison = {"release": "0.42.1", "source_cell": "cell-src-x",
                  "source": {"commit": sha, "origin": url, "companions_of": "0.42.1"}}  # fmt: skip
    ends = newly_red_bisect.ends_of(comparison, None, lambda _: None)
    assert ends.repo == tree.repo and ends.good_ref == "v0.42.1" and ends.bad_commit == sha


# -- end to end: a real bisect over a tiny history -------------------------------------------
def test_newly_red_bisect_end_to_end(tmp_path, source_cache_lock) -> None:
    """The tiny history (v0.42.1, the planted early return #4242, an unrelated commit):
    a source cell of main red on the SD1.5 LoRA row, the release green. The step builds
    (cached wheels), installs and runs the row for real and names the planted commit; the
    report over its record shows it in the headline."""
    history = build_history(tmp_path / "history")
    folder = tmp_path / "results"
    main_cell = f"cell-src-{history.unrelated[:7]}"
    facts = source_facts(history.unrelated, "0.42.1", "2026-01-03T12:00:00+00:00",
                         str(history.repo))  # fmt: skip
    for cell, verdict in (("cell-0.42.1", "pass"), (main_cell, "regression")):
        path = folder / f"{cell}.jsonl"
        source = facts if cell == main_cell else {}
        write_record(path, CellRecord(cell=cell, status="ok", source=source,
                                      versions={"diffusers": "0.42.1"}))  # fmt: skip
        write_record(path, CheckRecord(
            check_id=CHECK_ID, suite="lora", expected=["OK"], verdict=verdict, cell=cell,
            observed="OK" if verdict == "pass" else "SILENT_NOOP", nodeid=NODEID,
            exc_type=None if verdict == "pass" else "Finding", versions={"diffusers": "0.42.1"},
        ))  # fmt: skip
    out = report_of(folder, tmp_path)
    [mvr] = json.loads((out / "compat.json").read_text())["main_vs_release"]
    assert [r["check_id"] for r in mvr["rows"]] == [CHECK_ID]
    env = dict(os.environ)
    env.update(
        ADAPTER_COMPAT_CACHE=str(SELFTEST_CACHE / "cache"),
        ADAPTER_COMPAT_ENVDIR=str(SELFTEST_CACHE / "envs"),
        ADAPTER_COMPAT_MAX_BISECTS="1",
    )
    cmd = [sys.executable, "-m", "harness.cli", "bisect", "--newly-red", "--report", str(out),
           "--results", str(folder)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert f"{CHECK_ID}: first bad commit {history.planted[:7]} (#{PLANTED_PR})" in text
    night = report_of(folder, tmp_path, "night")
    [mvr] = json.loads((night / "compat.json").read_text())["main_vs_release"]
    [row] = mvr["rows"]
    assert row["status"] == "found" and row["first_bad_commit"]["sha"] == history.planted
    assert "src/diffusers/loaders/lora_pipeline.py" in row["first_bad_commit"]["files"]
    assert (
        f"first bad commit {history.planted[:7]} (\\#{PLANTED_PR}"
        in (night / "compat.md").read_text()
    )
