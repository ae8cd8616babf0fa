"""An install failure says what uv said (the missing version), not nox's "Returned code 1":
in the console line, the cell record and the report's grid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.matrix import cells
from harness.matrix.install_errors import nox_failure, uv_reason

# uv >= 0.5 ("error:" + "cause:") and the older tree layout, colour codes included
UV_FLAT = """Using Python 3.11.7 environment at: .nox/cell-0-42-1
error: No solution found when resolving dependencies
  cause: Because there is no version of transformers==99.0.0 and you require transformers==99.0.0, we can conclude that your requirements are unsatisfiable.
"""
UV_TREE = """  \x1b[31m×\x1b[0m No solution found when resolving dependencies:
  ╰─▶ Because there is no version of transformers==99.0.0 and you require
      transformers==99.0.0, we can conclude that your requirements are unsatisfiable.

      hint: Pre-releases are available for transformers in the requested range
"""


@pytest.mark.parametrize("output", [UV_FLAT, UV_TREE], ids=["flat", "tree"])
def test_uv_reason_is_one_line_without_decoration(output):
    reason = uv_reason(output)
    assert reason.startswith("No solution found when resolving dependencies: Because there is")
    assert "no version of transformers==99.0.0" in reason
    assert reason.endswith("your requirements are unsatisfiable.")
    assert not any(mark in reason for mark in ("×", "╰", "\x1b", "hint", "\n", "cause:"))


def test_no_reason_in_unrelated_output():
    assert uv_reason("Resolved 12 packages in 3ms\nInstalled 12 packages\n") == ""


def test_a_killed_cell_process_says_by_which_signal(tmp_path):
    log = tmp_path / "cell.log"
    log.write_text("nox > Running session cell-0.42.1\n")
    assert nox_failure(-signal.SIGKILL, log) == "the cell process was killed by SIGKILL"
    log.write_text(UV_FLAT + "nox > Session cell-0.42.1 failed.\n")
    assert "no version of transformers==99.0.0" in nox_failure(1, log)
    log.write_text("nox > Running session x\nnox > Session x failed.\n")
    assert nox_failure(1, log) == "nox exited with 1: Session x failed."


@pytest.mark.skipif(shutil.which("uv") is None, reason="nox's uv backend needs uv")
def test_install_failure_shows_uvs_reason_in_console_record_and_grid(tmp_path: Path):
    data = json.loads(cells.CELLS_FILE.read_text())
    data["cells"] = data["cells"][-1:]
    version = data["cells"][0]["diffusers"]
    data["default_cells"] = [version]
    matrix = tmp_path / "matrix"
    (matrix / "locks").mkdir(parents=True)
    (matrix / "cells.json").write_text(json.dumps(data))
    # the one requirement uv cannot satisfy (the rest of a lock would only be resolved first)
    (matrix / "locks" / f"{version}.txt").write_text("transformers==99.0.0\n")
    wheelhouse = tmp_path / "wheelhouse"  # offline and empty: uv fails at once, no network
    wheelhouse.mkdir()
    reports = tmp_path / "reports"
    env = dict(
        os.environ,
        ADAPTER_COMPAT_MATRIX_DIR=str(matrix),
        ADAPTER_COMPAT_REPORTS=str(reports),
        ADAPTER_COMPAT_ENVDIR=str(tmp_path / "nox"),
        ADAPTER_COMPAT_WHEELHOUSE=str(wheelhouse),
        ADAPTER_COMPAT_TORCH="system",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--cells", "all"],
        cwd=cells.ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("[ 1/1]")]
    assert "install_failed" in line and "transformers==99.0.0" in line, line
    assert "Returned code" not in proc.stdout

    records = [
        json.loads(x)
        for x in (reports / "results" / f"cell-{version}.jsonl").read_text().splitlines()
    ]
    (record,) = [r for r in records if r["kind"] == "cell"]
    assert record["status"] == "install_failed"
    assert "transformers==99.0.0" in record["message"], record["message"]
    assert "Returned code" not in record["message"]

    markdown = (reports / "latest" / "compat.md").read_text()
    (failed,) = [x for x in markdown.splitlines() if x.startswith(f"- 💥 `cell-{version}`")]
    assert "(install\\_failed)" in failed and "transformers==99.0.0" in failed
    html = (reports / "latest" / "compat.html").read_text()
    assert "transformers==99.0.0" in html
