"""Source cells: SRC parsing, bad input as one line, the report's order, and one real
source cell built offline from a three-commit history of the diffusers installed here
(wheel, venv and bytecode are kept in a self-test cache, so a second run builds nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.matrix import cells, source
from harness.protocol.records import CellRecord, CheckRecord, read_records, write_record
from harness.report.grid import build_model
from tests.matrix.source_history import CHECK_ID, NODEID, build_history

ROOT = Path(__file__).resolve().parents[2]
#: Wheels and venvs of the self-test history, kept between runs (commits are reproducible).
SELFTEST_CACHE = ROOT / ".cache" / "adapter-compat-selftest"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return build_history(tmp_path_factory.mktemp("history"))


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://github.com/huggingface/diffusers@main", ("https://github.com/huggingface/diffusers", "main", True)),
        ("git@github.com:huggingface/diffusers.git@v0.38.0", ("git@github.com:huggingface/diffusers.git", "v0.38.0", True)),
        ("https://github.com/huggingface/diffusers", ("https://github.com/huggingface/diffusers", None, True)),
        ("/no/such/clone@abc1234", ("/no/such/clone", "abc1234", False)),
        ("/no/such/clone", ("/no/such/clone", None, False)),
    ],
)  # fmt: skip
def test_split_source(text: str, expected: tuple) -> None:
    assert source.split_source(text) == expected


def test_a_folder_with_an_at_sign_is_a_path(tmp_path: Path) -> None:
    folder = tmp_path / "diffusers@work"
    folder.mkdir()
    assert source.split_source(str(folder)) == (str(folder), None, False)


def test_bad_sources_are_one_clear_line_each(history, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ADAPTER_COMPAT_CACHE", str(tmp_path / "cache"))
    plain = tmp_path / "plain"
    plain.mkdir()
    not_diffusers = tmp_path / "other"
    not_diffusers.mkdir()
    subprocess.run(["git", "init", "-q", str(not_diffusers)], check=True)
    (not_diffusers / "x.txt").write_text("x")
    subprocess.run(
        ["git", "-C", str(not_diffusers), "-c", "user.name=t", "-c", "user.email=t@t",
         "commit", "-qm", "x", "--allow-empty"],
        check=True,
    )  # fmt: skip
    cases = {
        str(tmp_path / "missing"): "no such folder",
        str(plain): "is not a git checkout",
        str(not_diffusers): "is not a diffusers tree: it has no src/diffusers/__init__.py",
        f"{history.repo}@no-such-ref": "unknown ref 'no-such-ref'",
        "https://example.invalid/diffusers": "a git URL needs a ref",
    }
    for text, message in cases.items():
        assert main(["run", "--source", text, "--no-report"]) == 2
        assert message in error_line(capsys)
    args = ["run", "--source", f"{history.repo}@main", "--companions-of", "0.1.0", "--no-report"]
    assert main(args) == 2
    assert "--companions-of 0.1.0: not a matrix release" in error_line(capsys)
    assert main(["run", "--companions-of", "0.42.1", "--no-report"]) == 2
    assert "--companions-of goes with --source" in error_line(capsys)


def test_uncommitted_change_is_its_own_build(history, tmp_path, monkeypatch) -> None:
    """A checkout with an edit is not its HEAD: another key, a ``-dirty`` name, and the
    exported tree carries the edit."""
    monkeypatch.setenv("ADAPTER_COMPAT_CACHE", str(tmp_path / "cache"))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(history.repo), str(clone)], check=True)
    clean = source.resolve_source(str(clone), log=lambda _: None)
    assert clean.dirty is None and clean.label == history.unrelated[:7]
    init = clone / "src" / "diffusers" / "__init__.py"
    init.write_text(init.read_text() + "\nEDITED = True\n")
    dirty = source.resolve_source(str(clone), log=lambda _: None)
    assert dirty.label == history.unrelated[:7] + "-dirty" and dirty.key != clean.key
    source.export_tree(dirty, tmp_path / "export")
    assert (
        "EDITED = True" in (tmp_path / "export" / "src" / "diffusers" / "__init__.py").read_text()
    )


def check(cell: str, diffusers: str, verdict: str) -> CheckRecord:
    return CheckRecord(
        check_id=CHECK_ID,
        suite="lora",
        expected=["OK"],
        observed="OK" if verdict == "pass" else "CRASH",
        verdict=verdict,
        cell=cell,
        versions={"diffusers": diffusers, "torch": "2.13.0+cpu"},
    )


def test_report_places_source_cells_after_every_release() -> None:
    """The tree between releases declares 0.38.0.dev0: by version it would land before
    0.38.0; a source cell tests what comes after the releases, so it goes last."""
    records = [
        json.loads(check("cell-src-abc1234", "0.38.0.dev0", "regression").to_json()),
        json.loads(check("cell-0.42.1", "0.42.1", "pass").to_json()),
        json.loads(check("cell-0.37.1", "0.37.1", "pass").to_json()),
    ]
    model = build_model(records)
    assert [c.name for c in model.cells] == ["cell-0.37.1", "cell-0.42.1", "cell-src-abc1234"]
    assert model.column_labels()["cell-src-abc1234"] == "0.38.0.dev0 @abc1234"
    assert model.checks[0].first_regression == "0.38.0.dev0"


def test_source_cell_end_to_end(history, tmp_path, source_cache_lock) -> None:
    """``run --source REPO@REF`` builds the commit's wheel, installs it over the newest
    release's companions, runs one row and reports the cell after the releases, with the
    commit, its date and subject and the declared version in its cell record."""
    reports = tmp_path / "reports"
    newest = cells.known_versions()[-1]
    write_record(
        reports / "results" / f"cell-{newest}.jsonl", check(f"cell-{newest}", newest, "pass")
    )
    env = dict(os.environ)
    env.update(
        ADAPTER_COMPAT_REPORTS=str(reports),
        ADAPTER_COMPAT_CACHE=str(SELFTEST_CACHE / "cache"),
        ADAPTER_COMPAT_ENVDIR=str(SELFTEST_CACHE / "envs"),
    )
    cmd = [sys.executable, "-m", "harness.cli", "run", "--source", f"{history.repo}@main~2",
           "--out", str(tmp_path / "report"), "--rerun", "--", NODEID]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cell = f"cell-src-{history.base[:7]}"
    records = list(read_records([reports / "results" / f"{cell}.jsonl"]))
    cell_record = next(r for r in records if r["kind"] == "cell")
    assert cell_record["status"] == "ok"
    assert cell_record["source"]["commit"] == history.base
    assert cell_record["source"]["subject"].startswith("Release: v")
    assert cell_record["source"]["date"].startswith("2026-01-01")
    assert cell_record["source"]["declared_version"] == newest
    assert cell_record["source"]["companions_of"] == newest
    checks = [r for r in records if r["kind"] == "check"]
    assert [(r["check_id"], r["verdict"]) for r in checks] == [(CHECK_ID, "pass")]
    report = json.loads((tmp_path / "report" / "compat.json").read_text())
    assert [c["name"] for c in report["cells"]] == [f"cell-{newest}", cell]


def test_install_failure_is_recorded_not_raised(history, tmp_path, monkeypatch) -> None:
    """A commit that does not build becomes an install_failed cell with uv's reason."""
    monkeypatch.setenv("ADAPTER_COMPAT_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken"
    subprocess.run(["git", "clone", "-q", str(history.repo), str(broken)], check=True)
    (broken / "pyproject.toml").write_text("[project\nname = broken\n")
    tree = source.resolve_source(str(broken), log=lambda _: None)
    with pytest.raises(source.SourceBuildError, match="building .*-dirty failed"):
        source.build_wheel(tree, log=lambda _: None)
    assert CellRecord.__dataclass_fields__["source"].default_factory() == {}
