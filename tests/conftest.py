"""Self-tests of the harness. They run in the newest cell's environment (`nox -s tests`)."""

import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def cell_python() -> str:
    """The interpreter of the environment under test (has torch + diffusers)."""
    return sys.executable


@pytest.fixture
def source_cache_lock() -> Iterator[None]:
    """The end-to-end source-cell and bisect tests share one build cache and its venvs
    (``.cache/adapter-compat-selftest``, so a rerun is fast): under ``-n 2`` two of them
    built the same venv at once. This lock makes them take turns, across xdist workers."""
    folder = ROOT / ".cache" / "adapter-compat-selftest"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
