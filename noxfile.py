"""Nox sessions: one venv per matrix cell, plus the matrix driver, report, tests, lint, bench.

    nox                        default cells (oldest, middle, newest) in parallel, then report
    nox -l                     list sessions (one per cell)
    nox -s cell-0.30.3 -- -k lora     one cell; posargs go to pytest
    nox -s matrix              all 17 cells (ADAPTER_COMPAT_CELLS / ADAPTER_COMPAT_JOBS), report
    nox -s source -- SRC       a cell of diffusers built from a commit (PATH, PATH@REF, URL@REF)
    nox -s report              rebuild reports/latest from reports/results
    nox -s tests               the harness's own self-tests (what CI runs)

Torch axis: ADAPTER_COMPAT_TORCH=local (default; local wheel, else the interpreter's
torch), system (GPU runners: reuse the preinstalled CUDA torch), or versions "2.13.0,2.5.1".
Offline: ADAPTER_COMPAT_WHEELHOUSE=DIR installs from DIR only (see `adapter-compat wheelhouse`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.cell import coverage as cell_coverage  # noqa: E402
from harness.matrix import cellenv, cells, install_errors, targets  # noqa: E402
from harness.protocol.records import CellRecord, write_record  # noqa: E402

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["default"]

PYTHON = cells.matrix_data()["python"]
OUTER_DEPS = ["jinja2>=3.1", "packaging>=23", "nox", "uv", "rich>=13"]
TEST_DEPS = ["pytest", "hypothesis", "pytest-xdist", "markdown-it-py>=3"]


def _cells() -> list[cells.Cell]:
    try:
        return cells.all_cells()
    except Exception as exc:  # noqa: BLE001 - `nox -l` must still work without a torch
        print(f"adapter-compat: {exc}; cell sessions are not available", file=sys.stderr)
        return []


def install_cell(session: nox.Session, cell: cells.Cell) -> float:
    """Install the cell's lock + torch unless the venv's stamp says it is current.

    Returns the seconds spent; a failure is recorded as INSTALL_FAILED and ends the session.
    """
    begin = time.perf_counter()
    venv = session.virtualenv.location
    if not cellenv.stamp_matches(venv, cell):
        # uv's output goes to a file, not nox's "Returned code 1": its reason is the message
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as output:
            try:
                session.install(*cellenv.install_args(cell), silent=False, stdout=output)
                failure = None
            except nox.command.CommandFailed as exc:
                output.seek(0)
                text = output.read()
                sys.stdout.write(text)  # the whole of it stays in the cell's log
                failure = install_errors.uv_reason(text) or str(exc.reason or exc)
        if failure is not None:
            record = CellRecord(
                cell=cell.name,
                status="install_failed",
                message=f"installing {cell.lock_file.name} failed: {failure}",
                versions={"diffusers": cell.diffusers, "torch": cell.torch.version},
                duration_s=round(time.perf_counter() - begin, 3),
                started_at=time.time(),
            )
            results = cellenv.results_path(cell)
            results.unlink(missing_ok=True)
            write_record(results, record)
            session.error(f"{cell.name}: install failed (recorded in {results})")
        cellenv.write_stamp(venv, cell)
    if os.environ.get(cell_coverage.COVERAGE_DIR_ENV) and not cell_coverage.installed_in(venv):
        # `adapter-compat run --coverage` only: a plain cell never carries coverage.py
        session.install(cell_coverage.REQUIREMENT, silent=True)
    return time.perf_counter() - begin


def make_cell_session(cell: cells.Cell):
    def cell_session(session: nox.Session) -> None:
        install_s = install_cell(session, cell)
        session.run(
            "python", "-m", "harness.cell.run",
            "--cell", cell.name,
            "--results", str(cellenv.results_path(cell)),
            "--install-seconds", f"{install_s:.3f}",
            "--", *session.posargs,
        )  # fmt: skip

    cell_session.__doc__ = f"diffusers {cell.diffusers} x torch {cell.torch.label}"
    return cell_session


for _cell in _cells():
    nox.session(
        make_cell_session(_cell),
        name=_cell.name,
        python=PYTHON,
        venv_params=cellenv.venv_params(_cell),
        tags=["cell"],
        default=False,
        allow_parallel=True,
    )


def make_target_session(cell):  # a harness.matrix.targets.TargetCell
    """``nox -s invokeai-5.4.1``: the same install and venv as ``adapter-compat run
    --target invokeai`` (harness.matrix.targets), then that app's suite."""

    def target_session(session: nox.Session) -> None:
        reason, install_s = targets.install(cell, session.log)
        if reason is not None:
            targets.install_failed(cell, reason, install_s)
            session.error(f"{cell.name}: install failed: {reason}")
        session.run(
            str(cellenv.cell_python(cell)), "-m", "harness.cell.run",
            "--cell", cell.name,
            "--results", str(cellenv.results_path(cell)),
            "--install-seconds", f"{install_s:.3f}",
            "--", targets.SUITES[cell.target], *session.posargs,
            external=True,
        )  # fmt: skip

    target_session.__doc__ = f"{cell.target} {cell.version} x torch {cell.torch.label}"
    return target_session


def _target_cells() -> list:
    try:
        return [c for target in targets.TARGETS for c in targets.target_cells(target, "all")]
    except Exception as exc:  # noqa: BLE001 - `nox -l` must still work without a torch
        print(f"adapter-compat: {exc}; downstream sessions are not available", file=sys.stderr)
        return []


for _cell in _target_cells():
    nox.session(
        make_target_session(_cell),
        name=_cell.name,
        venv_backend="none",  # targets.install builds the venv (one recipe for both paths)
        tags=["target", _cell.target],
        default=False,
    )


def _drive(session: nox.Session, selector: str) -> None:
    """Run the selected cells in parallel (each a `nox -s cell-...` child), then report."""
    session.install(*OUTER_DEPS, "-e", ".", silent=True)
    selector = os.environ.get("ADAPTER_COMPAT_CELLS", selector)
    # On Ctrl-C the driver stops its cells, records them and writes the report itself:
    # nox must wait for that, not SIGKILL it after its default 0.5 s.
    session.run(
        "adapter-compat", "run", "--cells", selector, "--", *session.posargs,
        interrupt_timeout=None,
    )  # fmt: skip


@nox.session(python=PYTHON)
def default(session: nox.Session) -> None:
    """Default cells (oldest, middle, newest), then reports/latest/compat.html."""
    _drive(session, "default")


@nox.session(python=PYTHON, default=False, name="matrix")
def full_matrix(session: nox.Session) -> None:
    """Every cell of the matrix (ADAPTER_COMPAT_CELLS narrows it), then the report."""
    _drive(session, "all")


@nox.session(python=PYTHON, default=False)
def source(session: nox.Session) -> None:
    """A cell of diffusers built from source: `nox -s source -- SRC [run options] [-- pytest args]`
    (SRC: a checkout PATH, PATH@REF or URL@REF), reported after the releases."""
    if not session.posargs or session.posargs[0].startswith("-"):
        session.error("usage: nox -s source -- SRC [--companions-of 0.42.1] [-- pytest args]")
    session.install(*OUTER_DEPS, "-e", ".", silent=True)
    src, *rest = session.posargs
    session.run("adapter-compat", "run", "--source", src, *rest, interrupt_timeout=None)


@nox.session(python=PYTHON, default=False)
def report(session: nox.Session) -> None:
    """Rebuild the report from reports/results/*.jsonl into reports/runs/<ts>, update latest."""
    session.install(*OUTER_DEPS, "-e", ".", silent=True)
    session.run("adapter-compat", "report", str(cellenv.RESULTS_DIR), "--latest", *session.posargs)


@nox.session(python=PYTHON, default=False)
def tests(session: nox.Session) -> None:
    """The harness's self-tests, in the newest cell's environment (what .ci/run calls)."""
    newest = cells.select_cells(cells.known_versions()[-1])[0]
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # many test subprocesses import torch
    install_cell(session, newest)
    session.install(*OUTER_DEPS, *TEST_DEPS, cell_coverage.REQUIREMENT, silent=True)
    session.install("-e", ".", "--no-deps", silent=True)
    args = session.posargs or ["-n", os.environ.get("ADAPTER_COMPAT_TEST_JOBS", "2")]
    session.run("pytest", "tests", "-p", "no:cacheprovider", *args, env={"HF_HUB_OFFLINE": "1"})


@nox.session(python=PYTHON, default=False)
def lint(session: nox.Session) -> None:
    """ruff check + format check."""
    session.install("ruff", silent=True)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Per-cell install / import / suite seconds and whole-matrix wall time."""
    session.install(*OUTER_DEPS, "-e", ".", silent=True)
    session.run("python", "-m", "harness.matrix.bench", *session.posargs)
