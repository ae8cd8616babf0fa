"""``save_reload`` is grey only where the family offers no save: the pipeline's
``save_lora_weights`` is ``LoraBaseMixin``'s stub (0.42.1: Anima). A family whose own save
raises ``NotImplementedError`` (planted on Wan's mixin) is red, never grey."""

from __future__ import annotations

from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "families" / "test_lifecycle.py"


def test_stub_is_unsupported_and_a_broken_own_save_is_red(tmp_path: Path, monkeypatch) -> None:
    selector = "save_reload and (wan or anima) and not text and not wan-i2v"
    clean = {r["check_id"]: r["verdict"] for r in run_checks(SUITE, selector, tmp_path / "a.jsonl")}
    assert clean == {
        "families/lifecycle::save_reload[wan]": "pass",
        "families/lifecycle::save_reload[anima]": "unsupported",
    }, clean

    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

    def not_implemented(cls, *args, **kwargs):
        raise NotImplementedError("save_lora_weights() not implemented.")

    monkeypatch.setattr(WanLoraLoaderMixin, "save_lora_weights", classmethod(not_implemented))
    planted = run_checks(SUITE, selector, tmp_path / "b.jsonl")
    verdicts = {r["check_id"]: (r["verdict"], r.get("observed")) for r in planted}
    assert verdicts["families/lifecycle::save_reload[wan]"][0] == "regression", verdicts
    assert verdicts["families/lifecycle::save_reload[anima]"][0] == "unsupported"
