"""Fixtures of the shared-components suite. Its torch.compile checks carry the
``compile`` marker (suites/conftest.py: opt-in on CPU, always on CUDA)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.scenarios.sharing.session import SharedWorld


@pytest.fixture(scope="session")
def world(zoo: Any, tmp_path_factory: pytest.TempPathFactory) -> SharedWorld:
    return SharedWorld(zoo, tmp_path_factory.mktemp("shared"))
