"""How a cell's environment is installed, and where its outputs go.

One place for the install recipe, used by ``noxfile.py`` (cell sessions), the wheelhouse
builder and the self-tests, so the online, offline (wheelhouse) and GPU-runner (system
torch) paths cannot drift apart. Stdlib-only.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from harness.matrix.cells import ROOT, WHEELHOUSE_ENV, Cell, find_links_dirs

#: ``ADAPTER_COMPAT_REPORTS`` moves results, logs and reports elsewhere (self-tests, CI).
REPORTS = Path(os.environ.get("ADAPTER_COMPAT_REPORTS", ROOT / "reports"))
RESULTS_DIR = REPORTS / "results"
LOGS_DIR = REPORTS / "logs"
STAMP_NAME = ".adapter-compat-stamp"
#: Where nox keeps cell venvs (``nox --envdir``); the driver and ``repro`` look there too.
ENVDIR_ENV = "ADAPTER_COMPAT_ENVDIR"


def envdir() -> Path:
    return Path(os.environ.get(ENVDIR_ENV) or ROOT / ".nox")


def nox_venv_name(session: str) -> str:
    """How nox names a session's venv folder (``cell-0.33.1`` -> ``cell-0-33-1``)."""
    path = re.sub(r"[^\w\s-]", "-", session).strip().lower()
    return re.sub(r"[-\s]+", "-", path).strip("-")


def venv_path(cell: Cell | str) -> Path:
    """The cell's venv as nox creates it (``ADAPTER_COMPAT_ENVDIR`` or ``.nox``)."""
    return envdir() / nox_venv_name(cell if isinstance(cell, str) else cell.name)


def cell_python(cell: Cell | str) -> Path:
    return venv_path(cell) / "bin" / "python"


def results_path(cell: Cell | str, reports_dir: Path | None = None) -> Path:
    """``<reports>/results/<cell>.jsonl``; ``reports_dir`` gives a run its own folder
    (``check`` never writes over the matrix's results)."""
    name = cell if isinstance(cell, str) else cell.name
    return (RESULTS_DIR if reports_dir is None else reports_dir / "results") / f"{name}.jsonl"


def log_path(cell: Cell | str, reports_dir: Path | None = None) -> Path:
    name = cell if isinstance(cell, str) else cell.name
    return (LOGS_DIR if reports_dir is None else reports_dir / "logs") / f"{name}.log"


#: Variables outside ``ADAPTER_COMPAT_*`` that change what a cell's checks observe.
RESULT_ENV = ("HYPOTHESIS_PROFILE", "CUDA_VISIBLE_DEVICES")
#: ``ADAPTER_COMPAT_*`` variables that only say where things go or how the driver runs;
#: every other one (device, dtype, compile, per-check timeout, focus, user file, ...) is
#: assumed to change results, so a new knob can never be reused across by mistake.
NOT_RESULT_ENV = (
    "ADAPTER_COMPAT_REPORTS", "ADAPTER_COMPAT_ENVDIR", "ADAPTER_COMPAT_RERUN",
    "ADAPTER_COMPAT_CACHE", "ADAPTER_COMPAT_CHROMIUM", "ADAPTER_COMPAT_REPO",
    "ADAPTER_COMPAT_RUN_FINGERPRINT", "ADAPTER_COMPAT_CELL_TIMEOUT", "ADAPTER_COMPAT_RESULTS",
    "ADAPTER_COMPAT_CELL", "ADAPTER_COMPAT_DRIFT_WORKERS", "ADAPTER_COMPAT_COVERAGE_DIR",
    "ADAPTER_COMPAT_COVERAGE_DATA", "ADAPTER_COMPAT_MATRIX_DIR", "ADAPTER_COMPAT_FIND_LINKS",
)  # fmt: skip


def result_settings(environ: dict[str, str] | None = None) -> str:
    """The environment settings a run's results depend on, as sorted ``NAME=value`` lines
    (part of the reuse fingerprint: another dtype or device is another run)."""
    environ = dict(os.environ if environ is None else environ)
    names = [
        n
        for n in environ
        if (n.startswith("ADAPTER_COMPAT_") and n not in NOT_RESULT_ENV) or n in RESULT_ENV
    ]
    return "\n".join(f"{n}={environ[n]}" for n in sorted(names))


def wheelhouse() -> str | None:
    """The offline wheel folder, when ``ADAPTER_COMPAT_WHEELHOUSE`` names one."""
    folder = os.environ.get(WHEELHOUSE_ENV)
    return folder or None


def install_args(cell: Cell, offline_dir: str | None = None) -> list[str]:
    """Arguments for ``uv pip install`` (or ``session.install``) that build the cell.

    Online: the committed lock from the index, torch from its local wheel when there is
    one. Offline: ``--no-index`` and only the wheelhouse. System torch: nothing for torch
    (the venv sees the interpreter's own CUDA torch through system site-packages).
    """
    offline_dir = offline_dir if offline_dir is not None else wheelhouse()
    args = ["-r", str(cell.lock_file), *cell.torch.requirement()]
    if offline_dir:
        return [*args, "--no-index", "--find-links", offline_dir]
    links = list(find_links_dirs())
    if cell.torch.find_links and cell.torch.find_links not in links:
        links.append(cell.torch.find_links)
    for folder in links:
        args += ["--find-links", folder]
    return args


def venv_params(cell: Cell) -> list[str]:
    return ["--system-site-packages"] if cell.torch.kind == "system" else []


def stamp_value(cell: Cell) -> str:
    """What the venv was installed from: the lock, torch and the install recipe itself."""
    recipe = hashlib.sha256(" ".join(install_args(cell)).encode()).hexdigest()[:8]
    return f"{cell.fingerprint()}-{recipe}"


def stamp_matches(venv: str | os.PathLike[str], cell: Cell) -> bool:
    stamp = Path(venv) / STAMP_NAME
    return stamp.is_file() and stamp.read_text().strip() == stamp_value(cell)


def write_stamp(venv: str | os.PathLike[str], cell: Cell) -> None:
    (Path(venv) / STAMP_NAME).write_text(stamp_value(cell) + "\n")
