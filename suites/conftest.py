"""Every test under suites/ is a compatibility check: it gets a ``compat`` context and
writes a record (see harness/cell/plugin.py). Works in any venv with torch + diffusers:
``pytest suites --compat-results results.jsonl``.

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``default`` for local runs, ``ci`` for the
self-test budget, ``nightly`` for the GPU job. All are derandomized so every cell of the
matrix tries the *same* examples and grid rows stay comparable across versions.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["harness.cell.plugin"]

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


#: ``ADAPTER_COMPAT_COMPILE=1`` runs the ``compile``-marked checks on CPU too.
COMPILE_ENV = "ADAPTER_COMPAT_COMPILE"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "compile: runs torch.compile; on CPU only with -m compile or ADAPTER_COMPAT_COMPILE=1 "
        "(recorded NOT_RUN otherwise), except harness.cell.compiling.CPU_DEFAULT",
    )


def compile_opted_in(config: pytest.Config, device_type: str) -> bool:
    """Compile checks cost 15 s - 4 min each on a CPU runner (inductor builds C++), so a CPU
    cell runs them only when asked (``-m compile`` or ``ADAPTER_COMPAT_COMPILE=1``); on CUDA
    they are part of every run. The exceptions, compiled hot-swaps with ``aot_eager``
    (SD1.5 and six families, seconds each), are listed in
    ``harness.cell.compiling.CPU_DEFAULT``."""
    markexpr = str(config.getoption("markexpr", "") or "")
    asked = "compile" in markexpr and "not compile" not in markexpr
    return device_type == "cuda" or asked or os.environ.get(COMPILE_ENV) == "1"


def _compile_runs(request: pytest.FixtureRequest, device_type: str) -> bool:
    if compile_opted_in(request.config, device_type):
        return True
    from harness.cell.compiling import runs_by_default

    return runs_by_default(request.node.name, device_type)


@pytest.fixture(autouse=True)
def _every_test_is_a_check(compat, request, device):
    if request.node.get_closest_marker("compile") and not _compile_runs(request, device.type):
        compat.not_run(
            "compile check on CPU: opt in with `-m compile` or ADAPTER_COMPAT_COMPILE=1 "
            "(nox -s cell-X -- -m compile)"
        )
    return compat
