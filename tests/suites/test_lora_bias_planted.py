"""Planted bugs for the up-bias check (``load[flux-control-with-biases]``): control LoRAs
carry ``lora_B.bias`` on every pair, and the row must turn red when the library drops those
biases without a word (DROPPED_KEYS) or applies them with another value (WRONG_RESULT),
while the unpatched library stays green.

Runs the real suite row in-process (``pytest.main`` on suites/lora/test_formats.py) against a
monkeypatched diffusers (this venv's), then reads the verdicts from the records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ROW = "test_load and flux-control-with-biases"


def run_row(tmp_path: Path) -> list[dict]:
    return run_checks(ROOT / "suites" / "lora" / "test_formats.py", ROW, tmp_path / "bias.jsonl")


def _wrap_state_dict(monkeypatch: pytest.MonkeyPatch, change) -> None:
    """Let ``FluxLoraLoaderMixin.lora_state_dict`` run, then ``change`` its bias keys."""
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.FluxLoraLoaderMixin.lora_state_dict.__func__

    def lora_state_dict(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        changed = change(sd)
        return (changed, *out[1:]) if isinstance(out, tuple) else changed

    monkeypatch.setattr(
        lora_pipeline.FluxLoraLoaderMixin, "lora_state_dict", classmethod(lora_state_dict)
    )


def plant_biases_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The converter forgets the up biases (as a loader without ``lora_bias`` would)."""
    _wrap_state_dict(monkeypatch, lambda sd: {k: v for k, v in sd.items() if ".bias" not in k})


def plant_biases_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The up biases are applied twice over (a scaling applied to them a second time)."""
    _wrap_state_dict(
        monkeypatch, lambda sd: {k: v * 2 if k.endswith(".bias") else v for k, v in sd.items()}
    )


PLANTS = {
    "dropped": (plant_biases_dropped, "DROPPED_KEYS"),
    "doubled": (plant_biases_doubled, "WRONG_RESULT"),
}


@pytest.fixture(scope="module")
def flux_available() -> None:
    if not hasattr(diffusers, "FluxPipeline"):
        pytest.skip("this diffusers has no FluxPipeline")


def test_unpatched_library_passes(tmp_path: Path, flux_available: None) -> None:
    records = run_row(tmp_path)
    assert all(r["verdict"] == "pass" for r in records), json.dumps(records[:1], indent=1)


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_bias_bug_turns_row_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flux_available: None
) -> None:
    plant, outcome = PLANTS[key]
    plant(monkeypatch)
    records = run_row(tmp_path)
    got = {(r["verdict"], r["observed"]) for r in records}
    assert got == {("regression", outcome)}, got
