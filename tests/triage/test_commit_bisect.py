"""Commit bisect over a three-commit history of the diffusers installed here (offline):
released sources, a planted early return in the SD1.5 LoRA loader (#4242), an unrelated
README change, and a revert. The real search must name the planted commit, its PR and the
loader file; ``--fixed`` must name the revert; bad input is one clear line each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.triage import commit_bisect
from harness.triage.bisect import BAD, GOOD, SKIP
from tests.matrix.source_history import CHECK_ID, PLANTED_PR, _git, build_history

ROOT = Path(__file__).resolve().parents[2]
SELFTEST_CACHE = ROOT / ".cache" / "adapter-compat-selftest"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    built = build_history(tmp_path_factory.mktemp("history"))
    loader = built.repo / "src" / "diffusers" / "loaders" / "lora_pipeline.py"
    _git(built.repo, "revert", "--no-edit", built.planted, date="2026-01-04T12:00:00+00:00")
    _git(built.repo, "commit", "--amend", "-qm", "Revert the LoRA loading shortcut (#4244)",
         date="2026-01-04T12:00:00+00:00")  # fmt: skip
    assert "planted" not in loader.read_text()
    return built


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_candidates_are_the_first_parent_commits_after_good(history) -> None:
    good, bad, listed = commit_bisect.candidates_between(history.repo, "v0.42.1", "main~1")
    assert (good.sha, bad.sha) == (history.base, history.unrelated)
    assert [c.sha for c in listed] == [history.planted, history.unrelated]
    assert listed[0].subject == f"[LoRA] simplify loading (#{PLANTED_PR})"


def test_bad_refs_are_one_clear_line_each(history, tmp_path) -> None:
    cases = {
        ("v0.42.1", "no-such-ref"): "unknown ref 'no-such-ref'",
        ("main", "v0.42.1"): "--good main is newer than --bad v0.42.1",
        ("main", "main"): "are the same commit",
    }
    for (good, bad), message in cases.items():
        with pytest.raises(UsageError, match=message.replace("(", r"\(")):
            commit_bisect.candidates_between(history.repo, good, bad)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UsageError, match="is not a diffusers tree: not a git clone"):
        commit_bisect.candidates_between(other, "a", "b")
    _git(other, "init", "-q")
    _git(other, "commit", "-q", "--allow-empty", "-m", "x")
    with pytest.raises(UsageError, match="is not a diffusers tree: it has no src/diffusers"):
        commit_bisect.candidates_between(other, "HEAD", "HEAD")


def test_cli_bad_input_costs_nothing(history, tmp_path, capsys) -> None:
    base = ["--repo", str(history.repo), "--report", str(tmp_path / "none.json")]
    assert main(["bisect", "lora/formats::no_such_test", *base, "--good", "v0.42.1",
                 "--bad", "main"]) == 2  # fmt: skip
    assert "unknown check 'lora/formats::no_such_test'" in error_line(capsys)
    assert main(["bisect", CHECK_ID, *base, "--good", "main", "--bad", "v0.42.1"]) == 2
    assert "--good main is newer than --bad v0.42.1" in error_line(capsys)
    assert main(["bisect", CHECK_ID, *base, "--good", "v0.42.1"]) == 2
    assert "give both --good and --bad, or neither" in error_line(capsys)
    assert main(["bisect", CHECK_ID, *base]) == 2  # no refs and no report row
    assert "the report has no row" in error_line(capsys)
    assert main(["bisect", CHECK_ID, "--good", "0.30.3", "--bad", "0.31.0", "--fixed"]) == 2
    assert "--fixed and --companions-of go with --repo" in error_line(capsys)


def test_release_refs_from_the_report() -> None:
    cells = [
        {"name": f"cell-{v}", "diffusers": v} for v in ("0.36.0", "0.37.1", "0.38.0", "0.39.0")
    ]
    verdicts = {"0.36.0": "pass", "0.37.1": "pass", "0.38.0": "regression", "0.39.0": "pass"}
    row = {
        "check_id": CHECK_ID,
        "last_good": "0.37.1",
        "first_bad": "0.38.0",
        "results": {f"cell-{v}": {"verdict": x} for v, x in verdicts.items()},
    }
    report = {"cells": cells, "checks": [row]}
    assert commit_bisect.release_refs(report, CHECK_ID, fixed=False) == ("0.37.1", "0.38.0")
    assert commit_bisect.release_refs(report, CHECK_ID, fixed=True) == ("0.38.0", "0.39.0")
    with pytest.raises(UsageError, match="has no row"):
        commit_bisect.release_refs(report, "lora/formats::other", fixed=False)


def test_verdict_kinds() -> None:
    assert [commit_bisect.kind_of(v, False) for v in ("pass", "regression", "broken")] == [
        GOOD,
        BAD,
        BAD,
    ]
    assert commit_bisect.kind_of("pass", True) == BAD  # --fixed: the pass is searched for
    for untestable in ("unsupported", "harness_error", "build-failed", "import-failed"):
        assert commit_bisect.kind_of(untestable, False) == SKIP


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        ADAPTER_COMPAT_CACHE=str(SELFTEST_CACHE / "cache"),
        ADAPTER_COMPAT_ENVDIR=str(SELFTEST_CACHE / "envs"),
    )
    cmd = [sys.executable, "-m", "harness.cli", "bisect", CHECK_ID, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_commit_bisect_finds_the_planted_commit_and_its_fix(
    history, tmp_path, source_cache_lock
) -> None:
    """Built, installed and run for real: the released sources pass, the planted early
    return is the first bad commit (its PR and loader file named), the revert the first
    fixed one. ``--fresh``: every verdict is measured again, only wheels are reused (the
    ``--fixed`` run may reuse the verdicts of the first while the harness code is unchanged)."""
    report = ["--report", str(tmp_path / "none.json"), "--repo", str(history.repo)]
    proc = run_cli(*report, "--good", "v0.42.1", "--bad", "main~1", "--fresh")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"first bad commit: {history.planted}" in out
    assert f"PR:      #{PLANTED_PR}" in out
    assert "src/diffusers/loaders/lora_pipeline.py" in out
    assert f"last good: {history.base[:7]}" in out
    fixed = run_cli(*report, "--good", "main~2", "--bad", "main", "--fixed")
    out = fixed.stdout + fixed.stderr
    assert fixed.returncode == 0, out
    revert = _git(history.repo, "rev-parse", "main")
    assert f"first fixed commit: {revert}" in out
    assert f"last red: {history.unrelated[:7]}" in out  # the planted bug is still there
