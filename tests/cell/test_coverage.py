"""The reach measurement: the summariser names what ran and what did not (forked children
included), and ``adapter-compat run --coverage`` reaches the in-cell runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cell import coverage as cell_coverage

FAKE_MODULE = """\
def entered(flag):
    if flag:
        return "yes"
    return "no"


def never_called():
    total = 0
    for i in range(3):
        total += i
    return total


def in_forked_child():
    return "child"


def in_killed_child():
    return "killed"


class Loader:
    def load_lora_weights(self):
        return 1

    def unrelated(self):
        return 2

    def fuse_lora(self):
        def inner():
            return 3

        return inner


def convert_legacy(x):
    def inner_lora():
        return x

    return inner_lora
"""

#: Runs in a fresh interpreter: measures fakepkg/mod.py the way a cell does (start ->
#: fork -> os._exit in the child -> stop), so the test process's own tracing is untouched.
DRIVER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from harness.cell import coverage as cc
cov = cc.start({data!r}, patterns=[{pattern!r}])
import fakepkg.mod as mod
mod.entered(True)
mod.Loader().load_lora_weights()
for target, kill in ((mod.in_forked_child, False), (mod.in_killed_child, True)):
    pid = os.fork()
    if pid == 0:
        target()
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(0)
    os.waitpid(pid, 0)
cc.stop(cov)
os._exit(0)
"""


@pytest.fixture()
def measured(tmp_path: Path) -> tuple[Path, Path]:
    """A fake package measured once; returns (module path, data file)."""
    package = tmp_path / "fakepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "mod.py"
    module.write_text(FAKE_MODULE)
    data = tmp_path / "out" / "cell-fake.coverage"
    data.parent.mkdir()
    code = DRIVER.format(
        root=str(Path(__file__).resolve().parents[2]),
        data=str(data),
        pattern=str(package / "*.py"),
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    return module, data


def _names(items: list[dict]) -> set[str]:
    return {item["name"] for item in items}


def test_summary_lists_unreached_functions_and_counts_forked_children(measured) -> None:
    module, data = measured
    (reach,) = cell_coverage.summarise(data, [("fakepkg/mod.py", module)], filters={})
    unreached = {f["name"]: f for f in reach.unreached_functions}
    # entered directly, or in a child that left through os._exit: reached
    assert not {"entered", "in_forked_child", "Loader.load_lora_weights"} & set(unreached)
    # never called, or its child was killed before saving: unreached, with its span
    assert set(unreached) == {
        "never_called",
        "in_killed_child",
        "Loader.unrelated",
        "Loader.fuse_lora",
        "convert_legacy",  # inner_lora is implied by its unreached parent
    }
    lines = FAKE_MODULE.splitlines()
    start, end = unreached["never_called"]["start"], unreached["never_called"]["end"]
    assert lines[start - 1].startswith("def never_called")
    assert lines[end - 1].strip() == "return total"
    assert unreached["never_called"]["statements"] == 4
    # the missed `if flag` branch of a reached function is listed; dead code's are implied
    assert [(b["from"], b["to"], b["function"]) for b in reach.unreached_branches] == [
        (2, 4, "entered")
    ]
    assert 0 < reach.lines_covered < reach.lines_total
    assert 0 < reach.branches_covered < reach.branches_total
    # summarising again reads the combined data file; it must not empty it
    (again,) = cell_coverage.summarise(data, [("fakepkg/mod.py", module)], filters={})
    assert again == reach


def test_name_filter_counts_only_adapter_functions(measured) -> None:
    module, data = measured
    (reach,) = cell_coverage.summarise(
        data, [("fakepkg/mod.py", module)], filters={"fakepkg/mod.py": ("lora",)}
    )
    # only load_lora_weights (def + return: both ran), fuse_lora (def ran at class
    # creation; `def inner`, `return 3`, `return inner` did not) and inner_lora (2, not
    # run; listed although its parent does not count) count
    assert _names(reach.unreached_functions) == {"Loader.fuse_lora", "convert_legacy.inner_lora"}
    assert (reach.lines_covered, reach.lines_total) == (3, 8)


def test_a_file_no_check_imported_counts_as_all_missed(measured, tmp_path: Path) -> None:
    module, data = measured
    other = module.with_name("untouched.py")
    other.write_text("def lonely():\n    return 1\n")
    reaches = cell_coverage.summarise(
        data, [("fakepkg/mod.py", module), ("fakepkg/untouched.py", other)], filters={}
    )
    untouched = reaches[1]
    assert (untouched.lines_covered, untouched.lines_total) == (0, 2)
    assert _names(untouched.unreached_functions) == {"lonely"}


CONFTEST = """
import pytest
pytest_plugins = ["harness.cell.plugin"]

@pytest.fixture(autouse=True)
def _check(compat):
    return compat
"""

SUITE = """
def test_converts(compat):
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
    convert_unet_state_dict_to_peft({})
"""


def test_run_coverage_reaches_the_cell_runner(tmp_path: Path, monkeypatch) -> None:
    """run_matrix(coverage=True) -> cell runner -> pytest process: a summary tied to the
    cell record, where the function the fake check called is reached and others are not."""
    from harness.matrix import cellenv, cells, runner

    cell = cells.select_cells(cells.known_versions()[-1])[0]
    # a "venv" that is this interpreter, current by its stamp, with coverage.py in it
    monkeypatch.setenv(cellenv.ENVDIR_ENV, str(tmp_path / "nox"))
    venv = cellenv.venv_path(cell)
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    site.mkdir(parents=True)
    import coverage

    (site / "coverage").symlink_to(Path(coverage.__file__).parent)
    cellenv.write_stamp(venv, cell)
    reports = tmp_path / "reports"
    monkeypatch.setattr(cellenv, "REPORTS", reports)
    monkeypatch.setattr(cellenv, "RESULTS_DIR", reports / "results")
    monkeypatch.setattr(cellenv, "LOGS_DIR", reports / "logs")
    suite = tmp_path / "suites"
    (suite / "fake").mkdir(parents=True)
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "fake" / "test_fake.py").write_text(textwrap.dedent(SUITE))

    (outcome,) = runner.run_matrix([cell], [str(suite)], jobs=1, progress=str, coverage=True)
    log = cellenv.log_path(cell).read_text()
    assert outcome.status == "ok", log
    assert not log.startswith("nox >")  # the direct path: coverage.py found in the venv
    summary = json.loads((reports / "coverage" / f"{cell.name}.json").read_text())
    (record,) = [
        json.loads(line)
        for line in cellenv.results_path(cell).read_text().splitlines()
        if json.loads(line).get("kind") == "cell"
    ]
    assert summary["started_at"] == record["started_at"]
    modules = {m["module"]: m for m in summary["modules"]}
    state_dict_utils = modules["diffusers/utils/state_dict_utils.py"]
    unreached = _names(state_dict_utils["unreached_functions"])
    assert "convert_unet_state_dict_to_peft" not in unreached
    assert "convert_state_dict_to_kohya" in unreached
    assert "diffusers/loaders/lora_pipeline.py" in modules  # measured though never imported


def test_the_cell_runner_measures_only_when_asked(tmp_path: Path, monkeypatch) -> None:
    """`--coverage DIR` (or the variable the matrix runner and nox pass) turns it on."""
    from harness.cell import run as cell_run

    monkeypatch.delenv(cell_coverage.COVERAGE_DIR_ENV, raising=False)
    args, _ = cell_run.parse_args(["--cell", "cell-x", "--results", str(tmp_path / "r.jsonl")])
    assert args.coverage is None
    monkeypatch.setenv(cell_coverage.COVERAGE_DIR_ENV, str(tmp_path / "cov"))
    args, _ = cell_run.parse_args(["--cell", "cell-x", "--results", str(tmp_path / "r.jsonl")])
    assert args.coverage == tmp_path / "cov"


def test_cli_flag_is_passed_to_the_matrix_runner(monkeypatch) -> None:
    from harness import cli
    from harness.matrix import runner

    seen: dict = {}

    def fake_run_matrix(chosen, pytest_args, **kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr(runner, "run_matrix", fake_run_matrix)
    assert cli.main(["run", "--cells", "0.42", "--coverage", "--no-report"]) == 0
    assert seen["coverage"] is True
    assert cli.main(["run", "--cells", "0.42", "--no-report"]) == 0
    assert seen["coverage"] is False
