"""Where the harness keeps what it computed once and may reuse: one root for every kind.

``ADAPTER_COMPAT_CACHE`` moves it (CI caches, read-only checkouts); the default is
``.cache/adapter-compat`` in the repository, ignored by git. Entries are JSON or
safetensors keyed by the content they were computed from, so a stale entry is never
read: a changed input is a different key.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "ADAPTER_COMPAT_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or ROOT / ".cache" / "adapter-compat")


def cache_dir(kind: str) -> Path:
    """``<cache root>/<kind>``, created on demand."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
