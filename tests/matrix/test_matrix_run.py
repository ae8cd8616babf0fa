"""End to end through nox: a deliberately broken pin fails its cell only; the other cell
runs, the report is still written with both columns, and a re-run resumes."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from harness.matrix import cells

CONFTEST = """
import pytest
pytest_plugins = ["harness.cell.plugin"]

@pytest.fixture(autouse=True)
def _check(compat):
    return compat
"""


@pytest.mark.skipif(shutil.which("uv") is None, reason="nox's uv backend needs uv")
def test_broken_pin_is_recorded_and_the_matrix_goes_on(tmp_path):
    data = json.loads(cells.CELLS_FILE.read_text())
    good, broken = data["cells"][-1], data["cells"][-2]
    data["cells"], data["default_cells"] = [broken, good], [broken["diffusers"], good["diffusers"]]
    mdir = tmp_path / "matrix"
    (mdir / "locks").mkdir(parents=True)
    (mdir / "cells.json").write_text(json.dumps(data))
    shutil.copy(cells.LOCK_DIR / f"{good['diffusers']}.txt", mdir / "locks")
    (mdir / "locks" / f"{broken['diffusers']}.txt").write_text(
        f"diffusers=={broken['diffusers']}\nno-such-package-adapter-compat==9.9.9\n"
    )
    suite = tmp_path / "suites" / "planted"
    suite.mkdir(parents=True)
    (tmp_path / "suites" / "conftest.py").write_text(CONFTEST)
    (suite / "test_planted.py").write_text("def test_fine(compat):\n    pass\n")
    env = dict(
        os.environ,
        ADAPTER_COMPAT_MATRIX_DIR=str(mdir),
        ADAPTER_COMPAT_REPORTS=str(tmp_path / "reports"),
        ADAPTER_COMPAT_ENVDIR=str(tmp_path / "nox"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--cells", "all", "--jobs", "2", "--", str(tmp_path / "suites")],
        cwd=cells.ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "install_failed" in proc.stdout and "[ 2/2]" in proc.stdout  # progress lines
    report = json.loads((tmp_path / "reports" / "latest" / "compat.json").read_text())
    by_name = {c["name"]: c for c in report["cells"]}
    assert by_name[f"cell-{broken['diffusers']}"]["status"] == "install_failed"
    assert by_name[f"cell-{good['diffusers']}"]["status"] == "ok"
    (check,) = report["checks"]
    assert check["results"][f"cell-{good['diffusers']}"]["verdict"] == "pass"

    # Re-running resumes: the finished cell is reused, the failed one is tried again.
    again = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--cells", "all", "--", str(tmp_path / "suites")],
        cwd=cells.ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    lines = {line.split()[2]: line for line in again.stdout.splitlines() if line.startswith("[")}
    assert "reused" in lines[f"cell-{good['diffusers']}"]
    assert "install_failed" in lines[f"cell-{broken['diffusers']}"]
