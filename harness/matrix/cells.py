"""The version matrix: diffusers cells (committed data) x a torch axis (chosen per machine).

The cells and their resolved companion pins live in ``fixtures/matrix/`` so a cell is
reproducible; this module only reads that data and answers "which cells, installed how".
Stdlib-only, because ``noxfile.py`` imports it before any venv exists.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from harness.errors import UsageError
from harness.protocol.repro import LOCK_DIR, MATRIX_DIR
from harness.protocol.versions import version_tuple

ROOT = Path(__file__).resolve().parents[2]
#: ``ADAPTER_COMPAT_MATRIX_DIR`` swaps in another cells.json + locks/ (self-tests, forks);
#: MATRIX_DIR and LOCK_DIR come from the protocol, where repro headers cite the locks.
CELLS_FILE = MATRIX_DIR / "cells.json"

TORCH_ENV = "ADAPTER_COMPAT_TORCH"
WHEELHOUSE_ENV = "ADAPTER_COMPAT_WHEELHOUSE"
FIND_LINKS_ENV = "ADAPTER_COMPAT_FIND_LINKS"


@dataclass(frozen=True)
class TorchSpec:
    """How a cell gets torch.

    ``kind``: ``wheel`` (a local wheel file in a find-links folder: no download),
    ``system`` (use the interpreter's own torch via system site-packages: GPU runners),
    ``index`` (``torch==version`` from the package index).
    """

    kind: str
    version: str
    find_links: str | None = None

    @property
    def label(self) -> str:
        return "system" if self.kind == "system" else self.version.split("+")[0]

    def requirement(self) -> list[str]:
        """Requirement strings to add to the cell's install (none for ``system``)."""
        return [] if self.kind == "system" else [f"torch=={self.version}"]


@dataclass(frozen=True)
class Cell:
    """One diffusers release x one torch spec."""

    diffusers: str
    released: str
    torch: TorchSpec
    default_torch: bool = True

    @property
    def name(self) -> str:
        base = f"cell-{self.diffusers}"
        return base if self.default_torch else f"{base}-torch{self.torch.label}"

    @property
    def lock_file(self) -> Path:
        return LOCK_DIR / f"{self.diffusers}.txt"

    def fingerprint(self) -> str:
        """Changes whenever what the cell installs changes (venv reuse key)."""
        lock = self.lock_file.read_bytes() if self.lock_file.exists() else b"no-lock"
        digest = hashlib.sha256(lock)
        digest.update(json.dumps([self.torch.kind, self.torch.version]).encode())
        return digest.hexdigest()[:16]


@cache
def matrix_data() -> dict:
    with open(CELLS_FILE, encoding="utf-8") as handle:
        return json.load(handle)


def known_versions() -> list[str]:
    return [c["diffusers"] for c in matrix_data()["cells"]]


def release_dates() -> dict[str, str]:
    return {c["diffusers"]: c["released"] for c in matrix_data()["cells"]}


# -- torch axis ----------------------------------------------------------------------------
def find_links_dirs() -> list[str]:
    """Folders pip is configured to look in (pip.conf / PIP_FIND_LINKS) plus our own env.

    uv does not read pip's configuration, so we read it and pass it along explicitly."""
    dirs: list[str] = []
    for env in (FIND_LINKS_ENV, "PIP_FIND_LINKS", "UV_FIND_LINKS"):
        dirs.extend(os.environ.get(env, "").split())
    candidates = [
        Path("/etc/pip.conf"),
        Path.home() / ".config" / "pip" / "pip.conf",
        Path.home() / ".pip" / "pip.conf",
    ]
    if os.environ.get("PIP_CONFIG_FILE"):
        candidates.append(Path(os.environ["PIP_CONFIG_FILE"]))
    for conf in candidates:
        if conf.is_file():
            parser = configparser.ConfigParser()
            try:
                parser.read(conf)
            except configparser.Error:
                continue
            for section in ("global", "install"):
                if parser.has_option(section, "find-links"):
                    dirs.extend(parser.get(section, "find-links").split())
    seen: list[str] = []
    for d in dirs:
        d = d.removeprefix("file://")
        if d and d not in seen and Path(d).is_dir():
            seen.append(d)
    return seen


_TORCH_WHEEL = re.compile(r"^torch-(?P<version>[^-]+)-cp(?P<py>\d+)-")


def local_torch_wheels() -> list[TorchSpec]:
    """Torch wheels for this Python in the find-links folders, newest first."""
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    found = []
    for folder in find_links_dirs():
        for wheel in Path(folder).glob("torch-*.whl"):
            match = _TORCH_WHEEL.match(wheel.name)
            if match and match.group("py") == py:
                found.append(TorchSpec("wheel", match.group("version"), folder))
    return sorted(found, key=lambda spec: version_tuple(spec.version), reverse=True)


def local_torch_wheel() -> TorchSpec | None:
    """The newest local torch wheel, if any."""
    wheels = local_torch_wheels()
    return wheels[0] if wheels else None


def system_torch_version() -> str | None:
    try:
        from importlib import metadata

        return metadata.version("torch")
    except Exception:  # noqa: BLE001 - absent or broken metadata both mean "no torch"
        return None


def resolve_torch(value: str | None = None) -> TorchSpec:
    """Turn a torch-axis value into a spec.

    ``local`` (default): the local wheel if a find-links folder has one, else the
    interpreter's own torch (``system``). Never silently picks a multi-GB download.
    """
    value = (value or "local").strip()
    if value == "local":
        spec = local_torch_wheel()
        if spec is not None:
            return spec
        value = "system"
    if value == "system":
        version = system_torch_version()
        if version is None:
            raise UsageError(
                "no local torch found: no torch wheel in pip's find-links folders and no torch "
                f"in this Python; set {TORCH_ENV}=<version> (e.g. 2.5.1) to install one from "
                "the index, or put a torch wheel in a folder named by "
                f"{FIND_LINKS_ENV}"
            )
        return TorchSpec("system", version)
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?([+.\w-]*)", value):
        raise UsageError(
            f"unknown torch axis value {value!r}: use 'local', 'system' or a version like 2.5.1"
        )
    for local in local_torch_wheels():
        if local.version.split("+")[0] == value.split("+")[0]:
            return local
    return TorchSpec("index", value)


def torch_axis(value: str | None = None) -> list[TorchSpec]:
    """The torch axis from a comma list (env ``ADAPTER_COMPAT_TORCH``); first is default."""
    raw = value if value is not None else os.environ.get(TORCH_ENV, "local")
    specs = [resolve_torch(part) for part in raw.split(",") if part.strip()]
    return specs or [resolve_torch("local")]


# -- cell selection ------------------------------------------------------------------------
def all_cells(torch_value: str | None = None) -> list[Cell]:
    """Every diffusers cell x every torch spec on the axis."""
    specs = torch_axis(torch_value)
    cells = []
    for index, spec in enumerate(specs):
        for entry in matrix_data()["cells"]:
            cells.append(Cell(entry["diffusers"], entry["released"], spec, index == 0))
    return cells


def select_cells(selector: str | None = None, torch_value: str | None = None) -> list[Cell]:
    """Cells matching a selector.

    ``default`` (the README's quick set), ``all``, or a comma list of items, each a full
    version (``0.30.3``), a minor (``0.30``) or a range of minors (``0.28-0.31``).
    """
    if selector is not None and not selector.replace(",", "").strip():
        # `--cells ""` (an unset CI variable, say) must not quietly run the default set
        raise UsageError(
            "no cells selected (--cells is empty): name cells like 0.30.3,0.31 or 0.28-0.31, "
            "or pass 'default' or 'all'"
        )
    cells = all_cells(torch_value)
    selector = (selector or "default").strip()
    if selector == "all":
        return cells
    if selector == "default":
        wanted = set(matrix_data()["default_cells"])
        return [c for c in cells if c.diffusers in wanted]
    chosen: list[Cell] = []
    for item in (s.strip() for s in selector.split(",") if s.strip()):
        matched = [c for c in cells if _matches(c.diffusers, item)]
        if not matched:
            raise UsageError(
                f"unknown diffusers version {item!r}: the matrix has "
                f"{', '.join(known_versions())} (or use 'all' / 'default', a minor like 0.30, "
                "or a range like 0.28-0.31)"
            )
        chosen.extend(c for c in matched if c not in chosen)
    return chosen


def _matches(version: str, item: str) -> bool:
    if "-" in item:
        low, high = (version_tuple(x)[:2] for x in item.split("-", 1))
        return low <= version_tuple(version)[:2] <= high
    wanted = version_tuple(item)
    if not wanted:
        return False
    return version_tuple(version)[: len(wanted)] == wanted
