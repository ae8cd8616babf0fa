"""Planted bugs in a family's LoRA path must turn its step rows red, while the unpatched
library (the newest cell's diffusers) keeps them green.

Runs the real checks of ``suites/smoke/test_family_steps.py`` for Wan in-process
(``pytest.main`` with ``-k``) against a monkeypatched diffusers and reads the verdicts:

* ``skip-block``: ``WanLoraLoaderMixin.lora_state_dict`` drops every key of the second
  block (``blocks.1.``): the loaded step no longer matches our merge -> WRONG_RESULT in
  both LoRA rows, while ``family_step`` (no LoRA) stays green;
* ``scale-ignored``: the Wan transformer's forward loses ``scale`` from its
  ``attention_kwargs``: the default-scale row stays green, the scale row -> WRONG_RESULT;
* ``load-noop``: ``load_lora_weights`` returns without loading -> SILENT_NOOP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "smoke" / "test_family_steps.py"
#: Wan's three rows (SkyReels-V2 has no complete pipeline in the data, so "wan" is exact).
SELECT = "wan"
ROWS = {
    "family_step[wan]",
    "family_lora_step[wan]",
    "family_lora_scale[wan]",
}


def verdicts(records: list[dict]) -> dict[str, str]:
    return {r["check_id"].rsplit("::", 1)[-1]: f"{r['verdict']}:{r['observed']}" for r in records}


def plant_skip_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wan's lora_state_dict loses every key of block 1."""
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.WanLoraLoaderMixin.lora_state_dict.__func__

    def lora_state_dict(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        kept = {k: v for k, v in sd.items() if ".blocks.1." not in k}
        return (kept, *out[1:]) if isinstance(out, tuple) else kept

    monkeypatch.setattr(
        lora_pipeline.WanLoraLoaderMixin, "lora_state_dict", classmethod(lora_state_dict)
    )


def plant_scale_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Wan transformer never sees the ``scale`` its pipeline passes."""
    from diffusers import WanTransformer3DModel

    original = WanTransformer3DModel.forward

    def forward(self, *args, **kwargs):
        attention_kwargs = kwargs.get("attention_kwargs")
        if attention_kwargs:
            kwargs["attention_kwargs"] = {k: v for k, v in attention_kwargs.items() if k != "scale"}
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WanTransformer3DModel, "forward", forward)


def plant_load_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_lora_weights`` returns at once: nothing loads, no word."""
    from diffusers.loaders import lora_pipeline

    monkeypatch.setattr(
        lora_pipeline.WanLoraLoaderMixin, "load_lora_weights", lambda self, *a, **k: None
    )


#: plant -> (the verdicts it must produce (row -> "verdict:observed"), what every red
#: row's message must say).
PLANTS = {
    "skip-block": (
        plant_skip_block,
        {
            "family_step[wan]": "pass:OK",
            "family_lora_step[wan]": "regression:WRONG_RESULT",
            "family_lora_scale[wan]": "regression:WRONG_RESULT",
        },
        "differs from the step with our merge",
    ),
    "scale-ignored": (
        plant_scale_ignored,
        {
            "family_step[wan]": "pass:OK",
            "family_lora_step[wan]": "pass:OK",
            "family_lora_scale[wan]": "regression:WRONG_RESULT",
        },
        "attention_kwargs={'scale': 0.5} had no effect on the step",
    ),
    "load-noop": (
        plant_load_noop,
        {
            "family_step[wan]": "pass:OK",
            "family_lora_step[wan]": "regression:SILENT_NOOP",
            "family_lora_scale[wan]": "regression:SILENT_NOOP",
        },
        "equals the pristine one",
    ),
}


def test_unpatched_library_passes(tmp_path: Path) -> None:
    records = run_checks(SUITE, SELECT, tmp_path / "unpatched.jsonl")
    shown = verdicts(records)
    assert set(shown) == ROWS, json.dumps(shown, indent=1)
    assert set(shown.values()) == {"pass:OK"}, json.dumps(shown, indent=1)
    # The comparison has room: the LoRA moves the step far more than the tolerance.
    for record in records:
        details = record.get("details") or {}
        if "relative_error" in details:
            assert details["relative_error"] < 1e-4, json.dumps(details, indent=1)
            assert details["max_abs_merge_effect"] > 1e-3, json.dumps(details, indent=1)


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_bug_flips_family_step_rows(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, expected, says = PLANTS[key]
    plant(monkeypatch)
    records = run_checks(SUITE, SELECT, tmp_path / f"{key}.jsonl")
    assert verdicts(records) == expected, json.dumps(verdicts(records), indent=1)
    for record in records:
        if record["verdict"] != "pass":
            assert says in record["message"], record["message"]
