"""Resolve and commit companion pins per diffusers cell (``adapter-compat matrix --refresh``).

Old diffusers releases break with today's companions (diffusers <= 0.28 imports a function
huggingface_hub 0.26 removed; old diffusers breaks with transformers 5). So each cell's
companions are resolved *as of that diffusers release* with uv's ``--exclude-newer``,
except for torch, its own dependencies and our test tooling (``undated`` in cells.json),
which follow the machine's torch and today's pytest. Torch itself is not written to the
lock: it is the torch axis, chosen per machine.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from harness.errors import UsageError
from harness.matrix.cells import LOCK_DIR, Cell, TorchSpec, find_links_dirs, matrix_data

#: Packages left out of the lock: torch is the torch axis; these are torch-only
#: dependencies whose pins must follow whichever torch a cell gets.
NOT_LOCKED = ("torch", "sympy", "mpmath", "networkx", "triton")
FAR_FUTURE = "2100-01-01"


def cutoff_for(released: str) -> str:
    """One day after the release, so the release itself and same-day fixes are in."""
    moment = dt.datetime.fromisoformat(released.replace("Z", "+00:00"))
    return (moment + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def requirements_for(cell: Cell) -> list[str]:
    data = matrix_data()
    return [f"diffusers=={cell.diffusers}", *data["companions"], *data["tooling"]]


def compile_command(cell: Cell, torch: TorchSpec, output: Path, req_file: Path) -> list[str]:
    uv = shutil.which("uv")
    if uv is None:
        raise UsageError("uv is not installed: run `pip install uv` (pins are resolved with uv)")
    cmd = [
        uv, "pip", "compile", str(req_file), "--quiet", "--no-header", "--no-annotate",
        "--python-version", matrix_data()["python"],
        "--exclude-newer", cutoff_for(cell.released),
        "-o", str(output),
    ]  # fmt: skip
    for package in matrix_data()["undated"]:
        cmd += ["--exclude-newer-package", f"{package}={FAR_FUTURE}"]
    for package in NOT_LOCKED:
        cmd += ["--no-emit-package", package]
    for folder in find_links_dirs():
        cmd += ["--find-links", folder]
    if torch.find_links:
        cmd += ["--find-links", torch.find_links]
    return cmd


def refresh(cells: Iterable[Cell], log=print) -> list[Path]:
    """Resolve and write ``fixtures/matrix/locks/<version>.txt`` for each cell."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for cell in cells:
        torch = cell.torch
        with tempfile.TemporaryDirectory() as tmp:
            req = Path(tmp) / "requirements.in"
            req.write_text("\n".join([f"torch=={torch.version}", *requirements_for(cell)]) + "\n")
            out = Path(tmp) / "lock.txt"
            proc = subprocess.run(
                compile_command(cell, torch, out, req), capture_output=True, text=True
            )
            if proc.returncode != 0:
                log(f"[{cell.name}] resolution failed:\n{proc.stderr.strip()}")
                continue
            header = (
                f"# diffusers {cell.diffusers} companions as of {cutoff_for(cell.released)}\n"
                f"# regenerate: adapter-compat matrix --refresh --cells {cell.diffusers}\n"
            )
            cell.lock_file.write_text(header + out.read_text())
            written.append(cell.lock_file)
            log(f"[{cell.name}] wrote {cell.lock_file}")
    return written
