"""Checkpoints whose pickle runs code: the payload only creates a marker file.

Why: ``.bin`` / ``.pt`` adapters are pickles, and a pickle can call any importable
function while it is read. The robustness suite hands such files to every loader path
that accepts them and then looks for the marker: the file exists only if the loader
unpickled without restrictions. Checked by the marker, never by reading the loader's code.

The payload is ``open(marker, "a")`` - it creates (or touches) one empty file in a folder
the test chose, and nothing else. Writing these files is safe: ``pickle`` only *records*
the call; it runs when an unrestricted unpickler reads the file.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

#: Serialisations of the same payload: torch's zip container (what ``torch.save`` writes
#: today), torch's legacy (pre-1.6) stream, and a bare pickle (what some trainers write).
VARIANTS = ("zip", "legacy", "raw")

#: Where the payload sits in the checkpoint (an extra key next to real tensors).
PAYLOAD_KEY = "__marker__"


class MarkerPayload:
    """Unpickling this object calls ``open(marker, "a")``: the marker file appears."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "a"))


def with_payload(obj: Mapping[str, Any], marker: str | Path, section: str | None = None) -> dict:
    """A copy of a (possibly nested) checkpoint dict carrying the payload; ``section``
    puts it inside a nested dict (e.g. ``"ip_adapter"``) instead of at the top."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in obj.items()}
    target = out if section is None else out[section]
    target[PAYLOAD_KEY] = MarkerPayload(marker)
    return out


def write(path: str | Path, obj: Any, variant: str = "zip") -> Path:
    """Serialise ``obj`` (which carries a :class:`MarkerPayload`) as ``variant``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if variant == "zip":
        torch.save(obj, path)
    elif variant == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif variant == "raw":
        buffer = io.BytesIO()
        pickle.Pickler(buffer, protocol=2).dump(obj)
        path.write_bytes(buffer.getvalue())
    else:
        raise ValueError(f"unknown payload variant {variant!r}; known: {VARIANTS}")
    return path


def write_malicious(
    path: str | Path,
    tensors: Mapping[str, Any],
    marker: str | Path,
    variant: str = "zip",
    section: str | None = None,
) -> Path:
    """A realistic checkpoint (``tensors``) plus the payload, written as ``variant``."""
    return write(path, with_payload(tensors, marker, section), variant)
