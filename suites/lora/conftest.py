"""Fixtures of the LoRA suite: one :class:`~harness.scenarios.lora.Scene` per zoo
architecture (canonical layout + pristine weights, measured once per session)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

ARCHES = ("sd15", "sdxl", "sd3", "flux")


@pytest.fixture(scope="session")
def scene_for(zoo: Any) -> Callable[[str], Any]:
    """``scene_for(arch)`` -> Scene; raises Unsupported (grey) where the pipeline class is
    absent in this version (Flux before 0.30)."""
    from harness.scenarios.lora import scene_cache

    return scene_cache(zoo)
