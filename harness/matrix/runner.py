"""Drive many cells at once: each cell is a ``nox -s cell-...`` child process.

Nox owns the venvs (one per cell, reused while the lock is unchanged). Once nox has built
a cell's venv and stamped it as current, the driver starts that venv's cell runner itself
(exactly what the nox session would run) and saves a nox start-up per cell; any venv that
is missing or stale goes through nox, which installs it. This module adds
what a long matrix needs: parallel jobs sized to the machine, a live line per running cell
and a line per finished one, a per-cell log file, an outer wall-clock limit that also
covers a hung install, a clean stop on Ctrl-C / SIGTERM (every cell's process tree, see
:mod:`harness.matrix.interrupt`), and a cell record for every way a child can end, so the
report always has every column.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from harness.cell import coverage as cell_coverage
from harness.matrix import cellenv
from harness.matrix.cells import ROOT, Cell
from harness.matrix.install_errors import nox_failure
from harness.matrix.interrupt import (
    STATUS_INTERRUPTED,
    MatrixInterrupted,
    StopRequest,
    signal_name,
)
from harness.matrix.processes import TreeStopper
from harness.matrix.progress import CellProgress, make_display
from harness.matrix.supervisor import Supervisor
from harness.protocol.records import CellRecord, read_records, write_record

#: Added to the in-cell pytest timeout to cover venv creation and install.
INSTALL_ALLOWANCE_S = 600.0

#: Seconds between progress redraws (and checks for a stop signal) in the driver.
REFRESH_S = 0.25


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
        cellenv.result_settings(),  # device, dtype, compile, hypothesis profile, ...
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


def last_seconds(results: Path) -> float | None:
    """Wall seconds of the cell's last recorded run (its cell record), None if unknown."""
    if not results.exists():
        return None
    seconds = None
    with results.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:  # only the cell records are parsed: the file holds ~800 checks
            if '"kind": "cell"' in line:
                try:
                    seconds = float(json.loads(line).get("duration_s") or 0.0) or None
                except (ValueError, AttributeError):
                    continue
    return seconds


def longest_first(cells: Sequence[Cell], reports_dir: Path | None = None) -> list[Cell]:
    """Start order: cells with no history first (their cost is unknown), then by last wall
    time, longest first, so two workers finish together instead of one idling while the
    other runs a long cell started last (longest-processing-time scheduling)."""
    known = {c.name: last_seconds(cellenv.results_path(c, reports_dir)) for c in cells}
    return sorted(cells, key=lambda c: -(known[c.name] or float("inf")))


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def nox_command(cell: Cell, pytest_args: Sequence[str]) -> list[str]:
    envdir = os.environ.get(cellenv.ENVDIR_ENV)  # where cell venvs live (default .nox)
    return [
        sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"),
        *(["--envdir", envdir] if envdir else []),
        "-s", cell.name, "--", *pytest_args,
    ]  # fmt: skip


def direct_command(
    cell: Cell, pytest_args: Sequence[str], reports_dir: Path | None = None
) -> list[str] | None:
    """The cell session's own command line, when its venv is built and current."""
    venv = cellenv.venv_path(cell)
    python = cellenv.cell_python(cell)
    if not (python.exists() and cellenv.stamp_matches(venv, cell)):
        return None
    return [
        str(python), "-m", "harness.cell.run",
        "--cell", cell.name,
        "--results", str(cellenv.results_path(cell, reports_dir)),
        "--", *pytest_args,
    ]  # fmt: skip


def cell_command(cell: Cell, pytest_args: Sequence[str], env: dict[str, str]) -> list[str]:
    """Direct when the venv is current (``env`` gets what nox would set), else nox."""
    reports = env.get("ADAPTER_COMPAT_REPORTS")  # where the nox session would write too
    direct = direct_command(cell, pytest_args, Path(reports) if reports else None)
    if env.get(cell_coverage.COVERAGE_DIR_ENV) and not cell_coverage.installed_in(
        cellenv.venv_path(cell)
    ):
        direct = None  # the nox session installs coverage.py first
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
    coverage_dir: Path | None = None,
    supervisor: Supervisor | None = None,
    reports_dir: Path | None = None,
) -> CellOutcome | None:
    """Run one cell to its end and make sure its results file says how it ended.
    None when a stop signal came before the cell started (nothing is written for it)."""
    log = cellenv.log_path(cell, reports_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    results = cellenv.results_path(cell, reports_dir)
    if not rerun and finished_run(results, fingerprint):
        status, verdicts, message = summarize(results)
        return CellOutcome(cell, status, 0.0, verdicts, message, resumed=True)
    env = dict(os.environ)
    env["ADAPTER_COMPAT_RUN_FINGERPRINT"] = fingerprint
    # Thread count: the cell runner's default (one intra-op thread: tiny models run
    # slower on two) unless the user set OMP_NUM_THREADS; parallelism comes from jobs.
    env["ADAPTER_COMPAT_CELL_TIMEOUT"] = str(timeout)
    if reports_dir is not None:
        env["ADAPTER_COMPAT_REPORTS"] = str(reports_dir)  # results and logs of this run only
    if coverage_dir is not None:
        env[cell_coverage.COVERAGE_DIR_ENV] = str(coverage_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")  # the log shows pytest's progress as it happens
    if supervisor is not None and supervisor.stop.requested:
        return None
    command = cell_command(cell, pytest_args, env)
    begin = time.perf_counter()
    started_at = time.time()
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach it only from us
        )
        entry = None
        if supervisor is not None:
            watch = CellProgress(cell.name, results, log, installing=command[1:3] == ["-m", "nox"])
            entry = supervisor.started(cell.name, proc, watch)
        try:
            proc.wait(timeout=timeout + INSTALL_ALLOWANCE_S)
        except subprocess.TimeoutExpired:
            TreeStopper(proc).kill()  # pytest runs in a session of its own: reach it too
            write_record(
                results,
                CellRecord(
                    cell=cell.name,
                    status="timeout",
                    message="cell (install + suites) exceeded its wall-clock limit",
                ),
            )
        finally:
            if supervisor is not None:
                supervisor.ended(cell.name)
    seconds = time.perf_counter() - begin
    if entry is not None and entry.stopped_by is not None:
        record = interrupted_record(cell, entry.stopped_by, seconds, started_at, proc.returncode)
        write_record(results, record)
        _, verdicts, _ = summarize(results)
        return CellOutcome(cell, record.status, seconds, verdicts, record.message)
    status, verdicts, message = summarize(results)
    if status == "crashed" and message == "no cell record was written":
        # nox or the runner failed before the cell could record anything (bad venv, no python)
        program = "nox" if command[1:3] == ["-m", "nox"] else "the cell runner"
        write_record(
            results,
            CellRecord(
                cell=cell.name,
                status="crashed",
                message=f"{nox_failure(proc.returncode, log, program)}; see {log}",
                versions={"diffusers": cell.diffusers, "torch": cell.torch.version},
                exit_code=proc.returncode,
            ),
        )
        status, verdicts, message = summarize(results)
    return CellOutcome(cell, status, seconds, verdicts, message)


def interrupted_record(
    cell: Cell, signum: int, seconds: float, started_at: float, exit_code: int | None
) -> CellRecord:
    """The closing record of a cell the driver stopped: appended last, so it wins over the
    crash the cell runner may have recorded while dying. No fingerprint: never reused."""
    return CellRecord(
        cell=cell.name,
        status=STATUS_INTERRUPTED,
        message=f"interrupted by {signal_name(signum)} after {seconds:.0f} s",
        versions={"diffusers": cell.diffusers, "torch": cell.torch.version},
        duration_s=round(seconds, 3),
        exit_code=exit_code,
        started_at=started_at,
    )


def run_matrix(
    cells: Sequence[Cell],
    pytest_args: Sequence[str] = (),
    jobs: int | None = None,
    timeout: float = 1800.0,
    progress: Callable[[str], None] = print,
    rerun: bool = False,
    coverage: bool = False,
    reports_dir: Path | None = None,
    fingerprint_extra: str = "",
) -> list[CellOutcome]:
    """Run cells ``jobs`` at a time; returns one outcome per cell, in matrix order.

    A cell whose last run finished with the same fingerprint (pins, torch, suites and
    harness code, pytest args) is not run again unless ``rerun``: an interrupted matrix
    resumes where it stopped. ``reports_dir`` gives the run its own ``results/`` and
    ``logs/`` (``check``); ``fingerprint_extra`` adds inputs the reuse key must cover (the
    checked file's content).

    On SIGINT / SIGTERM (main thread only) every running cell is stopped and recorded as
    ``interrupted``, no further cell starts, and :class:`MatrixInterrupted` is raised with
    the outcomes so far; the caller writes the report and exits 130 / 143."""
    code = code_digest() + (" coverage" if coverage else "")  # a measured run is another run
    code += fingerprint_extra
    coverage_dir = cellenv.REPORTS / "coverage" if coverage else None
    jobs = max(1, min(jobs or default_jobs(), len(cells) or 1))
    display = make_display(progress)
    logs = cellenv.LOGS_DIR if reports_dir is None else reports_dir / "logs"
    display.finished(f"running {len(cells)} cell(s), {jobs} at a time; logs in {logs}")
    stop = StopRequest()
    supervisor = Supervisor(stop, display)
    done: dict[str, CellOutcome] = {}
    begin = time.perf_counter()

    def collect(finished: set[Future[CellOutcome | None]]) -> None:
        for future in finished:
            outcome = future.result()
            if outcome is not None:
                done[outcome.cell.name] = outcome
                elapsed = time.perf_counter() - begin
                display.finished(_progress_line(len(done), len(cells), outcome, elapsed))

    try:
        with stop.catching(), ThreadPoolExecutor(max_workers=jobs) as pool:
            pending = {
                pool.submit(
                    run_one,
                    c,
                    pytest_args,
                    timeout,
                    run_fingerprint(c, pytest_args, code),
                    rerun,
                    coverage_dir,
                    supervisor=supervisor,
                    reports_dir=reports_dir,
                )
                for c in longest_first(cells, reports_dir)
            }
            try:
                while pending and not stop.requested:
                    finished, pending = wait(
                        pending, timeout=REFRESH_S, return_when=FIRST_COMPLETED
                    )
                    collect(finished)
                    supervisor.refresh()
            except BaseException:
                stop.request(signal.SIGTERM)  # our own failure: leave no cell running
                raise
            finally:
                if stop.requested:
                    for future in pending:
                        future.cancel()
                    supervisor.stop_all(stop.signum or signal.SIGTERM)
            collect({f for f in pending if not f.cancelled()})
    finally:
        display.close()
    if stop.requested:
        assert stop.signum is not None
        not_started = [c.name for c in cells if c.name not in done]
        raise MatrixInterrupted(
            stop.signum, [done[c.name] for c in cells if c.name in done], not_started
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
