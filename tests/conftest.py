"""Self-tests of the harness. They run in the newest cell's environment (`nox -s tests`)."""

import os
import sys
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
