"""Versions of the libraries a record is about. Stdlib-only (importlib.metadata)."""

from __future__ import annotations

import platform
import re
from importlib import metadata

#: Distributions recorded with every check, in report order.
TRACKED = (
    "diffusers",
    "torch",
    "peft",
    "transformers",
    "huggingface_hub",
    "accelerate",
    "safetensors",
    "numpy",
)
#: Downstream apps whose converters a target cell tests (``harness.loaders``): recorded
#: only where installed, so a diffusers cell's records do not grow an "absent" column.
TRACKED_IF_PRESENT = ("invokeai",)


def installed_versions() -> dict[str, str]:
    """Installed version of each tracked distribution ("absent" when not installed)."""
    found = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    for name in TRACKED_IF_PRESENT:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.30.3"`` -> ``(0, 30, 3)``: the release numbers, as ``packaging``'s
    ``Version.release`` gives them; local (``+cpu``) and pre-release or dev tails
    (``rc1``, ``.dev0``) are ignored. The one version parser of the harness."""
    out: list[int] = []
    for part in text.split("+")[0].split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        out.append(int(digits.group()))
        if digits.group() != part:
            break
    return tuple(out)


def default_cell_name(versions: dict[str, str] | None = None) -> str:
    """A cell name for records written outside nox (someone else's venv)."""
    v = versions or installed_versions()
    return f"diffusers-{v.get('diffusers', '?')}+torch-{v.get('torch', '?').split('+')[0]}"
