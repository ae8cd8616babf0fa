"""Writing and reading release checkpoints, and hub-like folders of them.

Two on-disk forms, as the hub has them:

* ``.bin``: ``torch.save`` of the nested ``{"image_proj": {...}, "ip_adapter": {...}}``
  (the harness writes it; it is never read back with pickle);
* ``.safetensors``: flat keys prefixed ``image_proj.`` / ``ip_adapter.``.

``write_repo`` lays adapters and image encoders out like ``h94/IP-Adapter``
(``models/``, ``sdxl_models/``, ``<subfolder>/image_encoder/`` saved with
``save_pretrained``) so checks call ``load_ip_adapter(folder, subfolder=..., weight_name=...,
image_encoder_folder=...)`` from local paths the way users do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SECTIONS = ("image_proj", "ip_adapter")
FORMATS = ("safetensors", "bin")


def flatten(release: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Nested release dict -> flat ``image_proj.*`` / ``ip_adapter.*`` keys."""
    return {
        f"{section}.{k}": v for section in SECTIONS for k, v in release.get(section, {}).items()
    }


def nest(flat: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Flat prefixed keys -> nested release dict (other keys are dropped)."""
    out: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        section, _, rest = key.partition(".")
        if section in out and rest:
            out[section][rest] = value
    return out


def save_release(release: Mapping[str, Mapping[str, torch.Tensor]], path: str | Path) -> Path:
    """Write a release checkpoint; the format follows the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        flat = {k: v.detach().contiguous().cpu() for k, v in flatten(release).items()}
        save_file(flat, str(path), metadata={"format": "pt"})
    elif path.suffix == ".bin":
        nested = {s: {k: v.detach().cpu() for k, v in release.get(s, {}).items()} for s in SECTIONS}
        torch.save(nested, str(path))
    else:
        raise ValueError(f"unknown checkpoint suffix {path.suffix!r}; use .safetensors or .bin")
    return path


def load_release(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Read a release checkpoint safely (safetensors, or a ``.bin`` with weights_only)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return nest(load_file(str(path)))
    data = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a dict, found {type(data).__name__}")
    if all(s in data for s in SECTIONS):
        return {s: dict(data[s]) for s in SECTIONS}
    return nest(data)


@dataclass(frozen=True)
class RepoFile:
    """One adapter file of a hub-like folder."""

    subfolder: str
    weight_name: str
    release: Mapping[str, Mapping[str, torch.Tensor]]


def write_repo(
    root: str | Path,
    files: list[RepoFile],
    encoders: Mapping[str, Any] | None = None,
    processors: Mapping[str, Any] | None = None,
) -> Path:
    """Write adapters and image encoders under ``root``.

    ``encoders`` maps a folder relative to ``root`` (``models/image_encoder``) to a
    transformers model saved there with ``save_pretrained`` (safetensors); ``processors``
    maps the same kind of folder to an image processor saved beside it."""
    root = Path(root)
    for entry in files:
        save_release(entry.release, root / entry.subfolder / entry.weight_name)
    for folder, model in (encoders or {}).items():
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(target), safe_serialization=True)
    for folder, processor in (processors or {}).items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        processor.save_pretrained(str(root / folder))
    return root
