"""Fixtures of the family suite: the family zoo (each tiny pipeline built once per
session) and one :class:`~harness.scenarios.families.FamilyScene` per family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(scope="session")
def family_zoo(device: Any, dtype: Any) -> Any:
    from harness.inputs.families.pipelines import FamilyZoo

    return FamilyZoo(device=device, dtype=dtype)


@pytest.fixture(scope="session")
def family_scene(family_zoo: Any) -> Callable[[str], Any]:
    """``family_scene(name)`` -> FamilyScene; raises Unsupported (grey) where the release
    lacks the family's mixin, pipeline or denoiser class."""
    from harness.scenarios.families import family_scene_cache

    return family_scene_cache(family_zoo)
