"""Ctrl-C / SIGTERM during ``adapter-compat run``: every process of every cell is stopped,
the cut-short cells are recorded as interrupted (💥 with the reason in the report), the
cells that never started get nothing, and the exit status is 130 / 143.

The cells are fakes (no venv, no torch): each behaves like the real cell runner where it
matters, starting a pytest-like child in a session of its own that starts a grandchild,
and dying at once on the signal, so only a driver that stops the whole tree leaves
nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.matrix import cells
from harness.matrix.processes import alive

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and sessions")

# The fake cell runner: argv = cell name, results file, pid folder, "1": one check only
FAKE_CELL = r"""
import json, os, subprocess, sys, time
cell, results, pids, short = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
checks = ["fake/fake::first"] if short else ["fake/fake::first", "fake/fake::second"]
os.makedirs(os.path.dirname(results), exist_ok=True)
print(f"collected {len(checks) + 1} items", flush=True)  # pytest's line in the cell log
for check_id in checks:
    with open(results, "a") as out:
        out.write(json.dumps({"kind": "check", "check_id": check_id, "suite": "fake",
            "cell": cell, "expected": ["pass"], "observed": "pass", "verdict": "pass"}) + "\n")
sleeper = ("import os, subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}'); time.sleep(600)")
# like the cell runner's pytest: a session of its own, with a child of its own
subprocess.Popen([sys.executable, "-c", sleeper, os.path.join(pids, cell + ".pytest")],
                 start_new_session=True)
with open(os.path.join(pids, cell + ".runner"), "w") as out:
    out.write(str(os.getpid()))
time.sleep(600)
"""

# The driver: the real CLI with the cell command swapped for the fake.
DRIVER = r"""
import sys
from harness.matrix import cellenv, progress, runner
fake, pids, run_args = sys.argv[1], sys.argv[2], sys.argv[3:]
progress.PLAIN_EVERY_S = 0.5
runner.INSTALL_ALLOWANCE_S = 0.0  # --timeout alone is the outer limit
def fake_command(cell, pytest_args, env, *_args, **_kwargs):
    short = "1" if cell.diffusers == FIRST else "0"
    return [sys.executable, fake, cell.name, str(cellenv.results_path(cell)), pids, short]
runner.cell_command = fake_command
from harness.cli import main
sys.exit(main(["run", "--cells", "all", *run_args]))
"""


def fake_matrix(tmp_path: Path, count: int = 3) -> list[str]:
    data = json.loads(cells.CELLS_FILE.read_text())
    data["cells"] = data["cells"][-count:]
    data["default_cells"] = [c["diffusers"] for c in data["cells"]]
    folder = tmp_path / "matrix"
    (folder / "locks").mkdir(parents=True)
    (folder / "cells.json").write_text(json.dumps(data))
    for cell in data["cells"]:
        (folder / "locks" / f"{cell['diffusers']}.txt").write_text(
            f"diffusers=={cell['diffusers']}\n"
        )
    return [c["diffusers"] for c in data["cells"]]


def start_driver(tmp_path: Path, *run_args: str) -> tuple[subprocess.Popen, list[str], Path]:
    """The real `adapter-compat run` over 3 fake cells; returns it, the versions and the
    folder where each fake process writes its pid."""
    versions = fake_matrix(tmp_path)
    pids = tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "fake_cell.py").write_text(FAKE_CELL)
    (tmp_path / "driver.py").write_text(DRIVER.replace("FIRST", repr(versions[0])))
    env = dict(
        os.environ,
        ADAPTER_COMPAT_MATRIX_DIR=str(tmp_path / "matrix"),
        ADAPTER_COMPAT_REPORTS=str(tmp_path / "reports"),
        ADAPTER_COMPAT_TORCH="2.5.1",
        ADAPTER_COMPAT_CACHE=str(tmp_path / "cache"),
    )
    driver = subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "fake_cell.py"), str(pids),
         *run_args],
        cwd=cells.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a terminal's Ctrl-C goes to the driver's group: so do we
    )  # fmt: skip
    return driver, versions, pids


def pids_of_the_run(pids: Path) -> set[int]:
    return {int(p) for f in pids.iterdir() for p in f.read_text().split()}


def kill_survivors(family: set[int]) -> set[int]:
    """The processes still alive, SIGKILLed so a failing test leaves no sleepers behind."""
    survivors = {pid for pid in family if alive(pid)}
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    return survivors


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_stops_every_cell_process_and_reports_interrupted_cells(tmp_path, signum, code):
    driver, versions, pids = start_driver(tmp_path, "--jobs", "2")
    reports = tmp_path / "reports"
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 4 and driver.poll() is None:
        assert time.monotonic() < deadline, "the fake cells never started"
        time.sleep(0.1)
    time.sleep(1.0)  # a plain progress line per running cell
    family = pids_of_the_run(pids)
    assert len(family) >= 6 and all(alive(pid) for pid in family)  # 2 cells x 3 processes
    os.killpg(driver.pid, signum)
    out, err = driver.communicate(timeout=60)
    survivors = kill_survivors(family)

    assert driver.returncode == code, out + err
    assert survivors == set(), f"processes of the run still alive: {survivors}"
    name = signal.Signals(signum).name
    assert f"stopped by {name}" in err
    assert "1 not started" in out and f"cell-{versions[2]}" in out  # the third cell
    assert "running" in out and "checks, " in out and " pass, 0 red" in out  # live lines

    report = json.loads((reports / "latest" / "compat.json").read_text())
    by_name = {c["name"]: c for c in report["cells"]}
    assert sorted(by_name) == sorted(f"cell-{v}" for v in versions[:2])  # not the unstarted
    for cell in by_name.values():
        assert cell["status"] == "interrupted" and cell["failed"]
        assert cell["message"].startswith(f"interrupted by {name} after ")
    assert not (reports / "results" / f"cell-{versions[2]}.jsonl").exists()

    # The grid: the short cell never got to `second` -> 💥 there, never "—" or "unknown".
    markdown = (reports / "latest" / "compat.md").read_text()
    (row,) = [line for line in markdown.splitlines() if line.startswith("| `fake/fake::second`")]
    short_cell, long_cell = row.split("|")[2:4]  # cell columns, in version order
    assert (short_cell.strip(), long_cell.strip()) == ("💥", "✅")
    assert "unknown" not in markdown
    assert f"(interrupted): interrupted by {name} after" in markdown  # the failed-cells list


def test_outer_timeout_kills_the_whole_cell_tree(tmp_path):
    """A cell past its wall-clock limit is killed with everything it started (its pytest
    runs in a session of its own, out of reach of a kill of the cell's group alone)."""
    driver, versions, pids = start_driver(tmp_path, "--jobs", "3", "--timeout", "3")
    out, err = driver.communicate(timeout=120)
    survivors = kill_survivors(pids_of_the_run(pids))
    assert driver.returncode == 1, out + err
    assert survivors == set(), f"processes of the run still alive: {survivors}"
    report = json.loads((tmp_path / "reports" / "latest" / "compat.json").read_text())
    assert [c["status"] for c in report["cells"]] == ["timeout"] * len(versions)
