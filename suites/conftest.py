"""Every test under suites/ is a compatibility check: it gets a ``compat`` context and
writes a record (see harness/plugin.py). Works in any venv with torch + diffusers:
``pytest suites --compat-results results.jsonl``.

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``default`` for local runs, ``ci`` for the
self-test budget, ``nightly`` for the GPU job. All are derandomized so every cell of the
matrix tries the *same* examples and grid rows stay comparable across versions.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["harness.plugin"]

_COMMON = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
settings.register_profile("default", max_examples=12, **_COMMON)
settings.register_profile("ci", max_examples=6, **_COMMON)
settings.register_profile("nightly", max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _every_test_is_a_check(compat):
    return compat
