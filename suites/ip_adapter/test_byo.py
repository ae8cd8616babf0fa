"""Bring your own IP-Adapter: the checks ``adapter-compat check FILE`` runs on a user's file.

The file arrives in ``ADAPTER_COMPAT_USER_FILE`` (NOT_RUN without it, or when it is not an
IP-Adapter: the normal state of a plain suite run). A real file is full size, so it is
loaded into a denoiser of the real architecture built on the meta device; the template
check compares its keys and shapes with the real UNet layout first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.byo import ip_adapter as byo
from harness.byo import user_file
from harness.drivers.ip_adapter import KWARG_SINCE
from harness.drivers.probe import at_least
from harness.protocol.outcomes import Outcome

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def user_ip_adapter(compat: Any) -> tuple[Path, Any]:
    """(path, description) of the user's IP-Adapter; NOT_RUN when none was given."""
    path = user_file(compat)
    try:
        info = byo.describe(path)
    except Exception as exc:  # noqa: BLE001 - not readable as an IP-Adapter: not ours
        compat.not_run(f"{path.name} is not an IP-Adapter release file ({exc})")
    if info.n_keys == 0:
        compat.not_run(f"{path.name} has no image_proj / ip_adapter keys")
    compat.param(file=path.name, variant=info.variant or "?", arch=info.arch or "?")
    compat.detail(description=info.line())
    return path, info


def test_template(compat: Any, user_ip_adapter: tuple[Path, Any]) -> None:
    """The file's keys and shapes match the real SD1.5 / SDXL UNet layout."""
    path, info = user_ip_adapter
    compat.require(info.arch in ("sd15", "sdxl"), f"no template for {info.arch!r} adapters")
    report = byo.validate(path, info.arch)
    compat.detail(report=report.render().splitlines())
    if report.missing:
        compat.finding(Outcome.DROPPED_KEYS, "; ".join(report.problems()[:4]))
    if not report.ok:
        compat.finding(Outcome.WRONG_RESULT, "; ".join(report.problems()[:4]))


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True], ids=["eager", "meta"])
def test_loads(compat: Any, user_ip_adapter: tuple[Path, Any], low_cpu_mem_usage: bool) -> None:
    """This diffusers version loads the file into the real architecture (meta device)."""
    path, info = user_ip_adapter
    if low_cpu_mem_usage:
        since = KWARG_SINCE["low_cpu_mem_usage"]
        compat.require(at_least("diffusers", since), f"low_cpu_mem_usage from {since}")
    compat.require(info.arch is not None, "cannot tell which denoiser this IP-Adapter is for")
    with compat.library_call():
        byo.load_check(path, info.arch, low_cpu_mem_usage=low_cpu_mem_usage)
