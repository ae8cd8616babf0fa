"""Cells of a downstream loader (InvokeAI): one release of the app x the torch axis.

The releases, recipes and locks are committed data (``fixtures/invokeai/``, read through
:mod:`harness.loaders.registry`). A target cell is installed by the driver itself - a uv
venv, the lock next to the pinned torch, the app ``--no-deps`` where the recipe says so,
then the import probe - so ``adapter-compat run --target invokeai`` and ``nox -s
invokeai-5.4.1`` build the same venv the same way. uv ignores pip's constraints file, so
torch is always named with its exact version (the local wheel): an unpinned torch would
pull multi-GB CUDA wheels. A release that needs the app's whole stack (recipe ``full``)
brings its own torch: the ``torch_pair`` its lock was resolved with (torch + the
torchvision built for it - a torchvision beside another torch fails to load its
kernels), from the index or a wheel folder named by :data:`APP_FIND_LINKS_ENV`. A failed
install or probe is recorded as ``install_failed`` with its reason. Stdlib-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError
from harness.loaders.registry import INVOKEAI_DIR, get_spec, invokeai_data
from harness.loaders.spec import InstallRecipe
from harness.matrix import cellenv, cells
from harness.matrix.cells import ROOT
from harness.protocol.records import CellRecord, write_record

if TYPE_CHECKING:
    from harness.matrix.runner import CellOutcome

#: Targets with committed releases (the default target, diffusers, is the main matrix).
TARGETS = {"invokeai": invokeai_data}
#: The suite a target cell runs.
SUITES = {"invokeai": "suites/invokeai"}
#: Extra wheel folders (space-separated) for the ``full`` recipe's torch pairs: a machine
#: with local CUDA wheels names them here; without it the pair comes from the index. Not
#: read for the diffusers matrix, whose ``local`` torch is the newest wheel it finds.
APP_FIND_LINKS_ENV = "ADAPTER_COMPAT_APP_FIND_LINKS"


@dataclass(frozen=True)
class TargetCell(cells.Cell):
    """One release of a downstream app. ``diffusers`` holds the app's version (what the
    runner and report read as the column's version); ``target`` says whose."""

    target: str = "invokeai"

    @property
    def version(self) -> str:
        return self.diffusers

    @property
    def name(self) -> str:
        base = f"{self.target}-{self.version}"  # also the nox session's name
        return base if self.default_torch else f"{base}-torch{self.torch.label}"

    @property
    def lock_file(self) -> Path:
        return INVOKEAI_DIR / "locks" / f"{self.version}.txt"

    @property
    def recipe(self) -> InstallRecipe:
        return get_spec(self.target).recipe(self.version)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(super().fingerprint().encode())
        digest.update(json.dumps([self.target, self.recipe.no_deps, self.recipe.probe]).encode())
        return digest.hexdigest()[:16]


def target_cells(target: str, selector: str | None = None) -> list[TargetCell]:
    """The target's cells matching ``selector`` (``all``, ``default``, versions, minors)."""
    if target not in TARGETS:
        raise UsageError(f"unknown --target {target!r}: diffusers (default), {', '.join(TARGETS)}")
    data = TARGETS[target]()
    specs = cells.torch_axis()
    every = [
        TargetCell(c["version"], c["released"], spec, index == 0, target)
        for index, spec in enumerate(specs)
        for c in data["cells"]
        if "torch_pair" not in c
    ]
    every += [  # their own torch: one cell each, whatever the axis
        TargetCell(c["version"], c["released"], pair_torch(c["torch_pair"]["torch"]), True, target)
        for c in data["cells"]
        if "torch_pair" in c
    ]
    order = {c["version"]: index for index, c in enumerate(data["cells"])}
    every.sort(key=lambda cell: (not cell.default_torch, order[cell.version]))
    selector = (selector or "default").strip()
    if selector == "all":
        return every
    if selector == "default":
        return [c for c in every if c.version in data["default_cells"]]
    chosen: list[TargetCell] = []
    for item in (s.strip() for s in selector.split(",") if s.strip()):
        matched = [c for c in every if cells._matches(c.version, item)]
        if not matched:
            known = ", ".join(c["version"] for c in data["cells"])
            raise UsageError(f"unknown {target} version {item!r}: the cells are {known}")
        chosen += [c for c in matched if c not in chosen]
    return chosen


def install_commands(cell: TargetCell, python: Path) -> list[list[str]]:
    """The uv commands that build the cell (also what its log shows)."""
    uv = [sys.executable, "-m", "uv"] if _has_uv_module() else ["uv"]
    base = [*uv, "pip", "install", "--quiet", "--python", str(python)]
    links = [a for folder in _links(cell) for a in ("--find-links", folder)]
    first = [*base, *cell.torch.requirement(), *links]
    for requirement in cell.recipe.requirements:
        first += requirement.split(" ", 1) if requirement.startswith("-r ") else [requirement]
    steps = [first]
    if cell.recipe.no_deps:
        steps.append([*base, "--no-deps", *cell.recipe.no_deps])
    return steps


def app_find_links() -> list[str]:
    """The folders named by :data:`APP_FIND_LINKS_ENV` that exist."""
    folders = os.environ.get(APP_FIND_LINKS_ENV, "").split()
    return [f.removeprefix("file://") for f in folders if Path(f.removeprefix("file://")).is_dir()]


def pair_torch(version: str) -> cells.TorchSpec:
    """A ``torch_pair``'s torch: its wheel from a local folder when one has it (no
    download), else ``torch==version`` from the index - never the torch axis's."""
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in [*app_find_links(), *cells.find_links_dirs()]:
        if any(Path(folder).glob(f"torch-{version}-{py}-*.whl")):
            return cells.TorchSpec("wheel", version, folder)
    return cells.TorchSpec("index", version)


def _links(cell: TargetCell) -> list[str]:
    links = list(cells.find_links_dirs())
    if not cell.recipe.no_deps:  # the full recipe: its torch pair may lie in the app folders
        links += [f for f in app_find_links() if f not in links]
    if cell.torch.find_links and cell.torch.find_links not in links:
        links.append(cell.torch.find_links)
    return links


def _has_uv_module() -> bool:
    import importlib.util

    return importlib.util.find_spec("uv") is not None


def install(cell: TargetCell, log: Callable[[str], None] = print) -> tuple[str | None, float]:
    """Build the cell's venv unless its stamp is current; (reason it failed, seconds)."""
    begin = time.perf_counter()
    venv = cellenv.venv_path(cell)
    python = venv / "bin" / "python"
    if python.exists() and cellenv.stamp_matches(venv, cell):
        return None, time.perf_counter() - begin
    uv = [sys.executable, "-m", "uv"] if _has_uv_module() else ["uv"]
    steps = [
        [*uv, "venv", "--quiet", "--clear", "--python", cells.matrix_data()["python"],
         *cellenv.venv_params(cell), str(venv)],
        *install_commands(cell, python),
    ]  # fmt: skip
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            return _last_line(proc.stdout + proc.stderr), time.perf_counter() - begin
    probe = subprocess.run(
        [str(python), "-c", cell.recipe.probe], capture_output=True, text=True, cwd=ROOT
    )
    if probe.returncode != 0:
        reason = f"import probe failed: {_probe_reason(probe.stdout + probe.stderr)}"
        return reason, time.perf_counter() - begin
    cellenv.write_stamp(venv, cell)
    return None, time.perf_counter() - begin


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no output"


_EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception): .+")


def _probe_reason(text: str) -> str:
    """The probe's last exception line, and the first one of the chain where it differs
    (a failed import is often re-raised with a vaguer message: the cause comes first)."""
    found = [line.strip() for line in text.splitlines() if _EXCEPTION_LINE.match(line.strip())]
    if not found:
        return _last_line(text)
    if found[0] == found[-1]:
        return found[-1][:500]
    return f"{found[-1][:300]} (cause: {found[0][:300]})"


def install_failed(
    cell: TargetCell, reason: str, seconds: float, reports_dir: Path | None = None
) -> None:
    results = cellenv.results_path(cell, reports_dir)
    results.unlink(missing_ok=True)
    write_record(
        results,
        CellRecord(
            cell=cell.name,
            status="install_failed",
            message=f"installing {cell.target} {cell.version} failed: {reason}",
            versions={cell.target: cell.version, "torch": cell.torch.version},
            duration_s=round(seconds, 3),
            phase_seconds={"install": round(seconds, 3)},
            started_at=time.time(),
        ),
    )


def prepare(
    target: str,
    selector: str | None,
    log: Callable[[str], None] = print,
    reports_dir: Path | None = None,
) -> tuple[list[TargetCell], list[CellOutcome]]:
    """Install the selected cells: (ready cells, an install_failed outcome per failure,
    recorded under ``reports_dir`` when given: ``check`` keeps its own folder)."""
    from harness.matrix.runner import CellOutcome

    ready: list[TargetCell] = []
    failures: list[CellOutcome] = []
    for cell in target_cells(target, selector):
        reason, seconds = install(cell, log)
        if reason is None:
            log(f"{cell.name}: installed ({seconds:.1f} s)")
            ready.append(cell)
        else:
            log(f"{cell.name}: install failed ({seconds:.1f} s): {reason}")
            install_failed(cell, reason, seconds, reports_dir)
            failures.append(CellOutcome(cell, "install_failed", seconds, message=reason))
    return ready, failures
