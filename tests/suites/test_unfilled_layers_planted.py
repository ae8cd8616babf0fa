"""Adapter layers the library says it left unfilled are never judged by luck.

diffusers 0.31-0.34 logged "Loading adapter weights from state_dict led to missing keys in
the model: single_transformer_blocks.0.proj_out.lora_A.style.weight, ..." for a second Flux
LoRA and left those layers as allocated: ``multiple_adapters[flux]`` was WRONG_RESULT (NaN,
1e19) in one full-matrix run and a pass in the next, when the memory happened to hold the
right values. Planted here in 0.42.1: the load logs that warning for adapter 'style' while
loading correctly (the lucky run). ``multiple_adapters`` must turn red although the effect
matches; ``delete_adapters``, which deletes 'style' before judging, stays green; unpatched
both pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from harness.drivers.lora import unfilled_adapter_layers  # noqa: E402
from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "lora" / "test_lifecycle.py"
ROWS = "(multiple_adapters or delete_adapters) and sd15 and not denoiser"
MODULE = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"


def test_the_warning_is_read_as_adapter_and_module() -> None:
    msg = (
        "Loading adapter weights from state_dict led to missing keys in the model: "
        "single_transformer_blocks.0.proj_out.lora_A.style.weight, "
        "single_transformer_blocks.0.proj_out.lora_B.style.weight, x.lora_B.detail.weight."
    )
    assert unfilled_adapter_layers([msg, "unrelated"]) == {
        "style": ["single_transformer_blocks.0.proj_out"],
        "detail": ["x"],
    }
    assert unfilled_adapter_layers(["No LoRA keys associated to CLIPTextModel"]) == {}


def _verdicts(tmp_path: Path, tag: str) -> dict[str, tuple[str, str]]:
    records = run_checks(SUITE, ROWS, tmp_path / f"{tag}.jsonl")
    return {r["check_id"]: (r["verdict"], r.get("observed") or "") for r in records}


def test_a_reported_unfilled_layer_is_red_even_when_the_effect_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = _verdicts(tmp_path, "clean")
    assert set(clean) == {
        "lora/lifecycle::multiple_adapters[sd15]",
        "lora/lifecycle::delete_adapters[sd15]",
    }
    assert all(v == "pass" for v, _ in clean.values()), clean

    from diffusers.utils import logging as dlogging

    pipe_cls = diffusers.StableDiffusionPipeline
    original = pipe_cls.load_lora_weights

    def lucky(self, *args, **kwargs):  # planted: loads right, says it left layers unfilled
        out = original(self, *args, **kwargs)
        if kwargs.get("adapter_name") == "style":
            dlogging.get_logger("diffusers.loaders.peft").warning(
                "Loading adapter weights from state_dict led to missing keys in the model: "
                f"{MODULE}.lora_A.style.weight, {MODULE}.lora_B.style.weight."
            )
        return out

    monkeypatch.setattr(pipe_cls, "load_lora_weights", lucky)
    planted = _verdicts(tmp_path, "planted")
    assert planted["lora/lifecycle::multiple_adapters[sd15]"] == ("regression", "WRONG_RESULT")
    assert planted["lora/lifecycle::delete_adapters[sd15]"][0] == "pass", planted
