"""Build a folder of wheels from which the chosen cells install with no index at all.

Air-gapped GPU runners (CUDA torch preinstalled, no network, no diffusers) run the matrix
with ``ADAPTER_COMPAT_WHEELHOUSE=DIR`` and ``ADAPTER_COMPAT_TORCH=system``: every lock pin
comes from DIR. The folder is built where there is an index, for the runner's Python.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.matrix.cells import Cell

#: What the outer tool needs on the runner besides the cells (nox, uv, the report).
OUTER_TOOLS = ("nox", "uv", "jinja2", "packaging")


def lock_requirements(cells: Sequence[Cell]) -> list[str]:
    reqs: list[str] = []
    for cell in cells:
        for line in cell.lock_file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and line not in reqs:
                reqs.append(line)
    return reqs


def download(
    reqs: Sequence[str],
    dest: Path,
    python_version: str,
    platforms: Sequence[str] = (),
    no_deps: bool = True,
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest),
           "--only-binary=:all:", "--python-version", python_version]  # fmt: skip
    for platform in platforms:
        cmd += ["--platform", platform]
    if no_deps:
        cmd.append("--no-deps")
    return subprocess.run([*cmd, *reqs], capture_output=True, text=True)


def build(
    dest: Path,
    cells: Sequence[Cell],
    python_version: str,
    platforms: Sequence[str] = (),
    with_tools: bool = True,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Download every wheel the cells need into ``dest``; returns requirement errors."""
    dest.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    reqs = lock_requirements(cells)
    log(f"downloading {len(reqs)} pinned wheels for {len(cells)} cell(s) into {dest}")
    # One call for the lot is fast; on failure, retry one by one to name the culprits.
    if download(reqs, dest, python_version, platforms).returncode != 0:
        for req in reqs:
            proc = download([req], dest, python_version, platforms)
            if proc.returncode != 0:
                errors.append(
                    f"{req}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'failed'}"
                )
    torch_specs = {c.torch for c in cells}
    for spec in torch_specs:
        if spec.kind == "system":
            continue  # the runner's own torch
        if spec.kind == "wheel" and spec.find_links:
            for wheel in Path(spec.find_links).glob(f"torch-{spec.version}-*.whl"):
                shutil.copy2(wheel, dest / wheel.name)
            # torch's own dependencies, resolved from the copied wheel's metadata
            wheel_files = list(dest.glob(f"torch-{spec.version}-*.whl"))
            if wheel_files:
                proc = download(
                    [str(wheel_files[0])], dest, python_version, platforms, no_deps=False
                )
                if proc.returncode != 0:
                    errors.append(f"torch dependencies: {proc.stderr.strip()[-300:]}")
        else:
            proc = download(
                [f"torch=={spec.version}"], dest, python_version, platforms, no_deps=False
            )
            if proc.returncode != 0:
                errors.append(f"torch=={spec.version}: {proc.stderr.strip()[-300:]}")
    if with_tools:
        proc = download(list(OUTER_TOOLS), dest, python_version, platforms, no_deps=False)
        if proc.returncode != 0:
            errors.append(f"outer tools: {proc.stderr.strip()[-300:]}")
    log(f"{len(list(dest.glob('*.whl')))} wheels in {dest}")
    return errors
