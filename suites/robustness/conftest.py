"""Fixtures of the robustness suite.

:mod:`harness.scenarios.robustness` (shared with the self-tests) holds the session and
the oracle, :mod:`harness.drivers.state_dict` the loader paths; this file only provides
the per-session scratch environment. Memory-risky cases (``memory_risky`` in
``harness.inputs.malformed.files``) run in a forked child under ``RLIMIT_AS``
(``harness.cell.forked.run_forked``), so a loader that believed a header declaring
terabytes could only take that child down, never the cell.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest

from harness.scenarios import robustness as rp

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def robust_env(zoo: Any, tmp_path_factory: pytest.TempPathFactory) -> rp.Env:
    return rp.make_env(zoo, tmp_path_factory.mktemp("robustness"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Plain tracebacks for this suite's checks. Many of them *expect* an exception (a clear
    error is the pass), and pytest's default failure report re-parses the source of every
    library frame before the plugin turns the report into a pass: measured at ~2x the
    suite's run time. The record keeps the full traceback either way."""
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.repr_failure = _native_repr  # type: ignore[method-assign]


def _native_repr(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return "".join(traceback.format_exception(excinfo.value))[-4000:]
