"""The downstream-loader suite: the loader comes from ``ADAPTER_COMPAT_LOADER`` (default
``invokeai``). Collected only where that loader can run: a cell of the target (its venv
has the app, the env names it) or a maintainer who set the variable - never in a plain
diffusers cell, whose ``pytest suites`` would otherwise grey out a whole suite."""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

import pytest

from harness.loaders.registry import LOADER_ENV, get_spec


def _runnable() -> bool:
    if os.environ.get(LOADER_ENV):
        return True
    try:
        metadata.version(get_spec().distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def pytest_ignore_collect(collection_path: Any, config: pytest.Config) -> bool | None:
    if collection_path.name.startswith("test_") and not _runnable():
        return True
    return None


@pytest.fixture(scope="session")
def loader_under_test() -> Any:
    """(spec, implementation or the reason it could not be built)."""
    from harness.loaders.registry import make_loader

    spec = get_spec()
    try:
        return spec, make_loader(spec)
    except ImportError as exc:  # the release lacks the converters: grey rows, with why
        return spec, f"{type(exc).__name__}: {exc}"
