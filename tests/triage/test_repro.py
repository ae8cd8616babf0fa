"""Reproduction scripts: compat.repro() bodies survive into non-passing records only, the
report writes a script per non-passing result, and the scripts reproduce when run:
the standalone kind from an empty folder, the rerun kind through pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Imported up front: pytester's in-process runs restore sys.modules afterwards, and a torch
# that is removed and re-imported in one process crashes (see test_plugin.py).
import diffusers  # noqa: F401
import pytest
import torch  # noqa: F401

import harness.cell.plugin  # noqa: F401
import harness.cli
from harness.matrix import cellenv
from harness.protocol import repro
from harness.protocol.records import read_records
from harness.report.write import write_report

ROOT = Path(__file__).resolve().parents[2]

#: A check whose scenario is a real property of the installed library, and whose
#: standalone body says so: the installed diffusers version compared with a pin (read
#: from metadata: importing diffusers would cost seconds per process). The
#: "finding" is planted by the expectation (the check expects another version), which
#: keeps the test independent of any real diffusers bug.
DEMO = '''
from importlib.metadata import version
from harness.protocol.outcomes import Outcome

BODY = """
import sys
from importlib.metadata import version
wanted = "{wanted}"
print("diffusers", version("diffusers"), "wanted", wanted)
sys.exit(0 if version("diffusers") == wanted else 1)
"""

def test_version_pinned(compat):
    compat.param(arch="none", format="none")
    compat.repro(BODY.format(wanted="0.0.0"))
    if version("diffusers") != "0.0.0":
        compat.finding(Outcome.WRONG_RESULT, f"diffusers is {version('diffusers')}")

def test_green(compat):
    compat.repro(BODY.format(wanted=version("diffusers")))

def test_without_body(compat):
    compat.finding(Outcome.SILENT_NOOP, "set_adapters changed nothing")
'''

CONFTEST = """
import pytest
pytest_plugins = ["harness.cell.plugin"]

@pytest.fixture(autouse=True)
def _check(compat):
    return compat
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A checkout-like folder (suites/ with the plugin) and the records of one run of it
    (once per module: an in-process pytest run costs seconds on a busy machine)."""
    repo = tmp_path_factory.mktemp("checkout")
    suites = repo / "suites"
    (suites / "demo").mkdir(parents=True)
    (suites / "conftest.py").write_text(CONFTEST)
    (suites / "demo" / "test_repro_demo.py").write_text(DEMO)
    results = repo / "cell-x.jsonl"
    before = set(sys.modules)
    pytest.main(
        [str(suites), "-q", "-p", "no:cacheprovider", "--rootdir", str(repo),
         "--compat-results", str(results), "--compat-cell", "cell-x"]
    )  # fmt: skip
    for name in set(sys.modules) - before:  # only the demo's own modules; torch stays
        if name.split(".")[0] in ("conftest", "test_repro_demo"):
            del sys.modules[name]
    return repo, [r for r in read_records([results]) if r.get("kind") == "check"]


def test_body_kept_on_non_pass_only(records: tuple[Path, list[dict]]) -> None:
    _, recs = records
    by_name = {r["check_id"].split("::")[1]: r for r in recs}
    assert by_name["version_pinned"]["verdict"] == "regression"
    assert 'sys.exit(0 if version("diffusers")' in by_name["version_pinned"]["details"]["repro"]
    assert by_name["green"]["verdict"] == "pass"
    assert "repro" not in by_name["green"]["details"]
    assert "repro" not in by_name["without_body"]["details"]


def test_script_written_next_to_the_record(records: tuple[Path, list[dict]]) -> None:
    """A non-passing check with a body gets ``<results>.repro/<id>.py`` as it finishes,
    runnable with no report; passing checks and checks without a body get none."""
    repo, recs = records
    by_name = {r["check_id"].split("::")[1]: r for r in recs}
    folder = repo / "cell-x.repro"
    ident = repro.repro_id(by_name["version_pinned"]["check_id"], "cell-x")
    assert sorted(p.name for p in folder.iterdir()) == [f"{ident}.py"]
    script = folder / f"{ident}.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "wanted 0.0.0" in proc.stdout


def test_scripts_reproduce(records: tuple[Path, list[dict]], tmp_path: Path) -> None:
    repo, recs = records
    out = write_report(
        [repo / "cell-x.jsonl"], tmp_path / "report", False, tmp_path / "r", baseline=None
    )
    doc = json.loads((out / "compat.json").read_text())
    results = {c["check_id"].split("::")[1]: c["results"]["cell-x"] for c in doc["checks"]}
    assert results["green"]["repro"] is None
    standalone = results["version_pinned"]["repro"]
    rerun = results["without_body"]["repro"]
    assert standalone["kind"] == "standalone" and rerun["kind"] == "rerun"
    text = (out / standalone["file"]).read_text()
    assert "standalone" in text.splitlines()[1]
    assert f"diffusers=={diffusers.__version__}" in text  # the cell's pip line
    assert "import harness" not in text and "from harness" not in text
    # standalone: from an empty folder, no checkout on the path
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(out / standalone["file"])],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "wanted 0.0.0" in proc.stdout
    # rerun: pytest on the node id in the checkout the record came from
    env = dict(os.environ, ADAPTER_COMPAT_REPO=str(repo), PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(out / rerun["file"])],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SILENT_NOOP" in proc.stdout


def test_repro_command(
    records: tuple[Path, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    repo, _ = records
    out = write_report(
        [repo / "cell-x.jsonl"], tmp_path / "report", False, tmp_path / "r", baseline=None
    )
    monkeypatch.setattr(harness.cli, "COMMANDS", ("repro",))
    check_id = "demo/repro_demo::version_pinned"
    ident = repro.repro_id(check_id, "cell-x")
    assert harness.cli.main(["repro", ident, "--report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "repro" / f"{ident}.py").read_text()
    # by check id (newest non-passing cell), with --run in a given interpreter
    rc = harness.cli.main(
        ["repro", check_id, "--report", str(out), "--run", "--python", sys.executable]
    )
    assert rc == 1
    assert "the finding reproduces (exit 1)" in capsys.readouterr().out
    # a missing cell venv is a clear usage error
    monkeypatch.setenv("ADAPTER_COMPAT_ENVDIR", str(tmp_path / "no-venvs"))
    assert harness.cli.main(["repro", f"{check_id}@cell-x", "--report", str(out), "--run"]) == 2
    assert "nox -s cell-x" in capsys.readouterr().err
    assert harness.cli.main(["repro", "nope", "--report", str(out)]) == 2


def test_nox_venv_name() -> None:
    assert cellenv.nox_venv_name("cell-0.33.1") == "cell-0-33-1"
    assert cellenv.nox_venv_name("cell-0.33.1-torch2.5.1") == "cell-0-33-1-torch2-5-1"
