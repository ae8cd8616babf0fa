"""Drive many cells at once: each cell is a ``nox -s cell-...`` child process.

Nox owns the venvs (one per cell, reused while the lock is unchanged). Once nox has built
a cell's venv and stamped it as current, the driver starts that venv's cell runner itself
(exactly what the nox session would run) and saves a nox start-up per cell; any venv that
is missing or stale goes through nox, which installs it. This module adds
what a long matrix needs: parallel jobs sized to the machine, a progress line per finished
cell, a per-cell log file, an outer wall-clock limit that also covers a hung install, and
a cell record for every way a child can end, so the report always has every column.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from harness.matrix import cellenv
from harness.matrix.cells import ROOT, Cell
from harness.protocol.records import CellRecord, read_records, write_record

#: Added to the in-cell pytest timeout to cover venv creation and install.
INSTALL_ALLOWANCE_S = 600.0


@dataclass
class CellOutcome:
    cell: Cell
    status: str
    seconds: float
    verdicts: Counter = field(default_factory=Counter)
    message: str = ""
    resumed: bool = False


#: Code whose change invalidates a finished cell (the checks and what they import).
FINGERPRINTED = ("suites", "harness", "fixtures")


def code_digest() -> str:
    digest = hashlib.sha256()
    for folder in FINGERPRINTED:
        for path in sorted((ROOT / folder).rglob("*")):
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and path.suffix in (".py", ".json", ".txt")
            ):
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def run_fingerprint(cell: Cell, pytest_args: Sequence[str], code: str) -> str:
    """Equal fingerprints mean an identical cell run: same pins, torch, code and args."""
    digest = hashlib.sha256()
    for part in (
        cell.fingerprint(),
        code,
        "\0".join(pytest_args),
        os.environ.get(cellenv.WHEELHOUSE_ENV, ""),
    ):
        digest.update(part.encode() + b"\n")
    return digest.hexdigest()[:20]


def finished_run(results: Path, fingerprint: str) -> bool:
    """True when the results file ends a completed run with this fingerprint."""
    if not results.exists():
        return False
    cells = [r for r in read_records([results]) if r.get("kind") == "cell"]
    return (
        bool(cells)
        and cells[-1].get("fingerprint") == fingerprint
        and cells[-1].get("status") in ("ok", "empty")
    )


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def nox_command(cell: Cell, pytest_args: Sequence[str]) -> list[str]:
    envdir = os.environ.get(cellenv.ENVDIR_ENV)  # where cell venvs live (default .nox)
    return [
        sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"),
        *(["--envdir", envdir] if envdir else []),
        "-s", cell.name, "--", *pytest_args,
    ]  # fmt: skip


def direct_command(cell: Cell, pytest_args: Sequence[str]) -> list[str] | None:
    """The cell session's own command line, when its venv is built and current."""
    venv = cellenv.venv_path(cell)
    python = cellenv.cell_python(cell)
    if not (python.exists() and cellenv.stamp_matches(venv, cell)):
        return None
    return [
        str(python), "-m", "harness.cell.run",
        "--cell", cell.name,
        "--results", str(cellenv.results_path(cell)),
        "--", *pytest_args,
    ]  # fmt: skip


def cell_command(cell: Cell, pytest_args: Sequence[str], env: dict[str, str]) -> list[str]:
    """Direct when the venv is current (``env`` gets what nox would set), else nox."""
    direct = direct_command(cell, pytest_args)
    if direct is None:
        return nox_command(cell, pytest_args)
    venv = cellenv.venv_path(cell)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return direct


def summarize(results: Path) -> tuple[str, Counter, str]:
    """Cell status, verdict counts and message from a cell's results file."""
    verdicts: Counter = Counter()
    status, message = "crashed", "no cell record was written"
    if results.exists():
        for record in read_records([results]):
            if record.get("kind") == "check":
                verdicts[record.get("verdict", "?")] += 1
            elif record.get("kind") == "cell":
                status, message = record.get("status", "?"), record.get("message", "")
    return status, verdicts, message


def run_one(
    cell: Cell,
    pytest_args: Sequence[str],
    timeout: float,
    fingerprint: str,
    rerun: bool,
) -> CellOutcome:
    log = cellenv.log_path(cell)
    log.parent.mkdir(parents=True, exist_ok=True)
    results = cellenv.results_path(cell)
    if not rerun and finished_run(results, fingerprint):
        status, verdicts, message = summarize(results)
        return CellOutcome(cell, status, 0.0, verdicts, message, resumed=True)
    env = dict(os.environ)
    env["ADAPTER_COMPAT_RUN_FINGERPRINT"] = fingerprint
    # Thread count: the cell runner's default (one intra-op thread: tiny models run
    # slower on two) unless the user set OMP_NUM_THREADS; parallelism comes from jobs.
    env["ADAPTER_COMPAT_CELL_TIMEOUT"] = str(timeout)
    begin = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            cell_command(cell, pytest_args, env),
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout + INSTALL_ALLOWANCE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            write_record(
                results,
                CellRecord(
                    cell=cell.name,
                    status="timeout",
                    message="cell (install + suites) exceeded its wall-clock limit",
                ),
            )
    seconds = time.perf_counter() - begin
    status, verdicts, message = summarize(results)
    if status == "crashed" and message == "no cell record was written":
        # nox itself failed before the cell could record anything (bad venv, missing python)
        write_record(
            results,
            CellRecord(
                cell=cell.name,
                status="crashed",
                message=f"nox exited with {proc.returncode}; see {log}",
            ),
        )
    return CellOutcome(cell, status, seconds, verdicts, message)


def run_matrix(
    cells: Sequence[Cell],
    pytest_args: Sequence[str] = (),
    jobs: int | None = None,
    timeout: float = 1800.0,
    progress: Callable[[str], None] = print,
    rerun: bool = False,
) -> list[CellOutcome]:
    """Run cells ``jobs`` at a time; returns one outcome per cell, in matrix order.

    A cell whose last run finished with the same fingerprint (pins, torch, suites and
    harness code, pytest args) is not run again unless ``rerun``: an interrupted matrix
    resumes where it stopped."""
    code = code_digest()
    jobs = max(1, min(jobs or default_jobs(), len(cells) or 1))
    progress(f"running {len(cells)} cell(s), {jobs} at a time; logs in {cellenv.LOGS_DIR}")
    done: dict[str, CellOutcome] = {}
    lock = threading.Lock()
    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(
                run_one,
                c,
                pytest_args,
                timeout,
                run_fingerprint(c, pytest_args, code),
                rerun,
            ): c
            for c in cells
        }
        for future in as_completed(futures):
            outcome = future.result()
            with lock:
                done[outcome.cell.name] = outcome
                progress(
                    _progress_line(len(done), len(cells), outcome, time.perf_counter() - begin)
                )
    return [done[c.name] for c in cells]


def _progress_line(index: int, total: int, outcome: CellOutcome, elapsed: float) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in sorted(outcome.verdicts.items())) or "no checks"
    tail = f" - {outcome.message}" if outcome.message and outcome.status != "ok" else ""
    if outcome.resumed:
        tail += " (unchanged since its last run: reused; --rerun to force)"
    return (
        f"[{index:>2}/{total}] {outcome.cell.name:<24} {outcome.status:<14} "
        f"{counts} ({outcome.seconds:.1f} s, {elapsed:.0f} s elapsed){tail}"
    )
