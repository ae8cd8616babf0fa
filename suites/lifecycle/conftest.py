"""Fixtures and budgets of the lifecycle suite.

Machine budgets per hypothesis profile (``HYPOTHESIS_PROFILE``, registered in
suites/conftest.py): a state-machine example is a whole sequence, so the machine runs
fewer examples than the per-file profiles and caps shrinking in seconds.

=========  ============  ===================  ==============
profile    max_examples  stateful_step_count  shrink seconds
=========  ============  ===================  ==============
default    2             5                    5
ci         1             5                    5
nightly    50            20                   300
=========  ============  ===================  ==============

``ADAPTER_COMPAT_LIFECYCLE_EXAMPLES`` / ``_STEPS`` / ``_SHRINK_S`` override them,
``ADAPTER_COMPAT_LIFECYCLE_RULES`` / ``_PARTS`` / ``_RANKS`` narrow the rules, target subsets and
ranks drawn; ``ADAPTER_COMPAT_LIFECYCLE_IP`` narrows the IP-Adapter entries the machine switches
between (comma list of hub entry names).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

ARCHES = ("sd15", "sdxl", "flux")


@pytest.fixture(scope="session")
def life_scene(zoo: Any) -> Callable[[str], Any]:
    """``life_scene(arch)`` -> Scene (layout + pristine weights); Unsupported where the
    pipeline class is absent in this version."""
    from harness.scenarios.lora import scene_cache

    return scene_cache(zoo)


@pytest.fixture(scope="session")
def life_ipa(zoo: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from harness.scenarios.ip_adapter import IPAWorld

    return IPAWorld(zoo, tmp_path_factory.mktemp("lifecycle_ip_hub"))
