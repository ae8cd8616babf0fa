"""Fixtures of the IP-Adapter suite (its session object lives in
:mod:`harness.scenarios.ip_adapter`)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.scenarios.ip_adapter import IPAWorld


@pytest.fixture(scope="session")
def ipa(zoo: Any, tmp_path_factory: pytest.TempPathFactory) -> IPAWorld:
    """One hub-like folder of synthetic adapters and cached oracle outputs per session."""
    return IPAWorld(zoo, tmp_path_factory.mktemp("ip_adapter_hub"))
