"""Unpacked sources of every matrix version, for static drift checks without installing.

``fetch_sources("/tmp/drift-src")`` downloads the diffusers wheel of each cell in
``fixtures/matrix/cells.json`` (``pip download --no-deps``) and, from the cell's lock file
``fixtures/matrix/locks/<version>.txt``, the pinned companions (peft, transformers,
accelerate, huggingface_hub, safetensors). Each wheel's Python files are unpacked into
``<src>/<diffusers version>/<package>/``, a directory ``drift scan --path`` and ``drift
snapshot --src`` accept. Wheels are cached in ``<src>/_wheels``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

from harness.drift.resolver import COMPANIONS
from harness.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
CELLS = REPO_ROOT / "fixtures" / "matrix" / "cells.json"
LOCKS = REPO_ROOT / "fixtures" / "matrix" / "locks"
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)")


def matrix_versions() -> list[str]:
    try:
        cells = json.loads(CELLS.read_text(encoding="utf-8"))["cells"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read the matrix from {CELLS} ({exc}); pass --versions") from None
    return [cell["diffusers"] for cell in cells]


def companion_pins(version: str) -> dict[str, str]:
    """Companion pins of a cell from its lock file (empty when there is none)."""
    lock = LOCKS / f"{version}.txt"
    pins: dict[str, str] = {}
    if not lock.is_file():
        return pins
    wanted = {c.replace("_", "-").lower(): c for c in COMPANIONS}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            name = match.group(1).replace("_", "-").lower()
            if name in wanted:
                pins[wanted[name]] = match.group(2)
    return pins


def _download(requirement: str, wheels: Path) -> Path:
    dist, _, version = requirement.partition("==")
    stem = dist.replace("-", "_").lower()
    for existing in wheels.glob("*.whl"):
        name, _, rest = existing.name.partition("-")
        if name.lower() == stem and rest.startswith(version + "-"):
            return existing
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(wheels),
        requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UsageError(f"pip could not download {requirement}: {tail[0]} (is PyPI reachable?)")
    for existing in wheels.glob("*.whl"):
        name, _, rest = existing.name.partition("-")
        if name.lower() == stem and rest.startswith(version + "-"):
            return existing
    raise UsageError(f"pip reported success but no wheel for {requirement} is in {wheels}")


def _unpack(wheel: Path, package: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(package + "/") and member.endswith(".py"):
                target = dest / member
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))


def fetch_sources(
    src: str | os.PathLike[str],
    versions: Iterable[str] | None = None,
    companions: bool = True,
    log=print,  # type: ignore[no-untyped-def]
) -> list[Path]:
    root = Path(src)
    wheels = root / "_wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    out = []
    for version in versions or matrix_versions():
        dest = root / version
        reqs = {"diffusers": version}
        if companions:
            reqs.update(companion_pins(version))
        for package, pin in reqs.items():
            if (dest / package / "__init__.py").is_file():
                continue
            wheel = _download(f"{package.replace('_', '-')}=={pin}", wheels)
            _unpack(wheel, package, dest)
        log(f"{version}: {', '.join(f'{k} {v}' for k, v in reqs.items())} -> {dest}")
        out.append(dest)
    return out


if __name__ == "__main__":  # pragma: no cover - thin wrapper
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default="/tmp/drift-src")
    parser.add_argument("--versions", nargs="*")
    parser.add_argument("--no-companions", action="store_true")
    ns = parser.parse_args()
    try:
        fetch_sources(ns.src, ns.versions, not ns.no_companions)
    except UsageError as exc:
        print(f"adapter-compat: error: {exc}", file=sys.stderr)
        sys.exit(2)
