"""`pytest suites --compat-results PATH` works in a venv someone else built (no nox, the
harness not installed): only torch, diffusers and pytest are needed, plus the checkout."""

import shutil
import subprocess
import sys

import pytest

from harness.matrix import cellenv, cells
from harness.protocol.records import read_records


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is needed to build the venv")
def test_suites_in_a_plain_venv(tmp_path):
    cell = cells.select_cells(cells.known_versions()[-1])[0]
    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        ["uv", "pip", "install", "-q", "--python", str(python), *cellenv.install_args(cell)],
        check=True,
        timeout=900,
    )
    results = tmp_path / "r.jsonl"
    proc = subprocess.run(
        [str(python), "-m", "pytest", "suites/smoke", "-q", "-p", "no:cacheprovider", "-k", "sd15",
         "--compat-results", str(results)],
        cwd=cells.ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    checks = [r for r in read_records([results]) if r["kind"] == "check"]
    assert checks, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert {r["verdict"] for r in checks} == {"pass"}
    assert {r["versions"]["diffusers"] for r in checks} == {cell.diffusers}
    assert all(r["cell"].startswith("diffusers-") for r in checks)  # default name outside nox
