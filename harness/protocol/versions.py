"""Versions of the libraries a record is about. Stdlib-only (importlib.metadata)."""

from __future__ import annotations

import platform
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


def installed_versions() -> dict[str, str]:
    """Installed version of each tracked distribution ("absent" when not installed)."""
    found = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.30.3"`` -> ``(0, 30, 3)``; local and pre-release tails are ignored."""
    head = text.split("+")[0]
    out: list[int] = []
    for part in head.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
        if digits != part:
            break
    return tuple(out)


def default_cell_name(versions: dict[str, str] | None = None) -> str:
    """A cell name for records written outside nox (someone else's venv)."""
    v = versions or installed_versions()
    return f"diffusers-{v.get('diffusers', '?')}+torch-{v.get('torch', '?').split('+')[0]}"
