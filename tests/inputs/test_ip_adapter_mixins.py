"""The IP-Adapter loader inventory: every mixin of the newest release is driven by a row,
and a mixin the table does not know is named by the suite's inventory row (NOT_RUN)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from harness.inputs.checkpoints.ip_adapter.mixins import COVERED_MIXINS  # noqa: E402
from harness.inputs.families.probe import (  # noqa: E402
    IP_ADAPTER_MODULES,
    IP_ADAPTER_SUFFIX,
    probe,
    unknown_mixins,
)
from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROBE_ROW = ROOT / "suites" / "ip_adapter" / "test_probe.py"
FAKE = "ZzzTestIPAdapterMixin"


def test_every_mixin_of_the_newest_release_is_covered() -> None:
    """0.42.1's IP-Adapter loaders are exactly the table's, each inherited by a pipeline."""
    found = probe(IP_ADAPTER_MODULES, IP_ADAPTER_SUFFIX)
    assert set(found) == set(COVERED_MIXINS), sorted(found)
    assert all(info.pipelines for info in found.values()), {
        name: info.as_dict() for name, info in found.items()
    }
    assert "StableDiffusionPipeline" in found["IPAdapterMixin"].pipelines


def test_unknown_mixin_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A planted mixin: listed by ``unknown_mixins`` and by the row (NOT_RUN naming it);
    without it the row is OK."""
    from diffusers.loaders import ip_adapter

    clean = run_checks(PROBE_ROW, "unknown_ip_adapter_mixins", tmp_path / "clean.jsonl")
    assert clean[0]["observed"] == "OK", clean[0]
    monkeypatch.setattr(ip_adapter, FAKE, type(FAKE, (), {}), raising=False)
    found = probe(IP_ADAPTER_MODULES, IP_ADAPTER_SUFFIX)
    assert unknown_mixins(found, COVERED_MIXINS) == [FAKE]
    planted = run_checks(PROBE_ROW, "unknown_ip_adapter_mixins", tmp_path / "planted.jsonl")
    assert planted[0]["observed"] == "NOT_RUN", planted[0]
    assert FAKE in planted[0]["message"]
