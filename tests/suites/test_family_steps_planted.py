"""Planted bugs in a family's LoRA path must turn its step rows red, while the unpatched
library (the newest cell's diffusers) keeps them green.

Runs the real checks of ``suites/smoke/test_family_steps.py`` for Wan and Sana in-process
(``pytest.main`` with ``-k``) against a monkeypatched diffusers and reads the verdicts:

* ``skip-block``: ``WanLoraLoaderMixin.lora_state_dict`` drops every key of the second
  block (``blocks.1.``): the loaded step no longer matches our merge -> WRONG_RESULT in
  both LoRA rows, while ``family_step`` (no LoRA) stays green;
* ``scale-ignored``: the Wan transformer's forward loses ``scale`` from its
  ``attention_kwargs``: the default-scale row stays green, the scale row -> WRONG_RESULT;
* ``load-noop``: ``load_lora_weights`` returns without loading -> SILENT_NOOP;
* ``sana-skip-cross-attention``: ``SanaLoraLoaderMixin.lora_state_dict`` drops the
  cross-attention (``attn2``) keys: both Sana LoRA rows -> WRONG_RESULT;
* ``sana-scale-ignored``: the Sana transformer's forward loses ``scale``: only
  ``family_lora_scale[sana]`` -> WRONG_RESULT.
* ``sana-bare-tensor``: ``SanaPipeline.__call__`` returns the bare latent tensor for
  ``return_dict=False``: only ``family_step[sana]`` -> WRONG_RESULT (the LoRA rows
  compare whole batches either way).

* ``flux3-skip-single-blocks``: the modular FLUX.3's ``Flux3LoraLoaderMixin.lora_state_dict``
  drops the single-stream blocks' keys: both FLUX.3 LoRA rows -> WRONG_RESULT, its
  ``family_step`` (the modular pipeline's own call) green;
* ``flux3-scale-ignored``: the FLUX.3 transformer's forward loses ``scale`` from the
  ``attention_kwargs`` its denoise block passes: only ``family_lora_scale[flux3]`` red.

Wan's LoRA rows step with our ``prompt_embeds`` (the data's ``PromptEmbeds``), Sana's with
the prompt, FLUX.3 through a modular pipeline's default blocks: all three routes are
covered.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "smoke" / "test_family_steps.py"
#: The families planted here (``-k wan`` does not select ``skyreels-v2``).
FAMILIES = ("wan", "sana", "flux3")
ROWS = {
    f"{row}[{family}]"
    for family in FAMILIES
    for row in ("family_step", "family_lora_step", "family_lora_scale")
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


def _drop_scale(monkeypatch: pytest.MonkeyPatch, model_cls: type) -> None:
    """``model_cls.forward`` never sees the ``scale`` its pipeline passes."""
    original = model_cls.forward

    @functools.wraps(original)  # FLUX.3's denoise block reads the forward's signature
    def forward(self, *args, **kwargs):
        attention_kwargs = kwargs.get("attention_kwargs")
        if attention_kwargs:
            kwargs["attention_kwargs"] = {k: v for k, v in attention_kwargs.items() if k != "scale"}
        return original(self, *args, **kwargs)

    monkeypatch.setattr(model_cls, "forward", forward)


def plant_scale_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Wan transformer never sees the ``scale`` its pipeline passes."""
    from diffusers import WanTransformer3DModel

    _drop_scale(monkeypatch, WanTransformer3DModel)


def plant_sana_scale_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Sana transformer never sees the ``scale`` its pipeline passes."""
    from diffusers import SanaTransformer2DModel

    _drop_scale(monkeypatch, SanaTransformer2DModel)


def plant_sana_skip_cross_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sana's lora_state_dict loses every cross-attention (``attn2``) key."""
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.SanaLoraLoaderMixin.lora_state_dict.__func__

    def lora_state_dict(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        kept = {k: v for k, v in sd.items() if ".attn2." not in k}
        return (kept, *out[1:]) if isinstance(out, tuple) else kept

    monkeypatch.setattr(
        lora_pipeline.SanaLoraLoaderMixin, "lora_state_dict", classmethod(lora_state_dict)
    )


def plant_flux3_skip_single_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """FLUX.3's lora_state_dict loses every single-stream block key."""
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.Flux3LoraLoaderMixin.lora_state_dict.__func__

    def lora_state_dict(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        kept = {k: v for k, v in sd.items() if ".single_transformer_blocks." not in k}
        return (kept, *out[1:]) if isinstance(out, tuple) else kept

    monkeypatch.setattr(
        lora_pipeline.Flux3LoraLoaderMixin, "lora_state_dict", classmethod(lora_state_dict)
    )


def plant_flux3_scale_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FLUX.3 transformer never sees the ``scale`` its denoise block passes."""
    from diffusers import Flux3Transformer2DModel

    _drop_scale(monkeypatch, Flux3Transformer2DModel)


def plant_load_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_lora_weights`` returns at once: nothing loads, no word."""
    from diffusers.loaders import lora_pipeline

    monkeypatch.setattr(
        lora_pipeline.WanLoraLoaderMixin, "load_lora_weights", lambda self, *a, **k: None
    )


def plant_sana_bare_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """SanaPipeline returns the bare latent tensor for ``return_dict=False`` (as ERNIE-Image
    0.38 does), not the documented tuple."""
    from diffusers import SanaPipeline

    original = SanaPipeline.__call__

    @functools.wraps(original)  # the harness reads the call's keywords off its signature
    def call(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        return out[0] if kwargs.get("return_dict") is False else out

    monkeypatch.setattr(SanaPipeline, "__call__", call)


#: plant -> (the family, the verdicts it must produce (row -> "verdict:observed"), what
#: every red row's message must say).
PLANTS = {
    "skip-block": (
        "wan",
        plant_skip_block,
        {
            "family_step[wan]": "pass:OK",
            "family_lora_step[wan]": "regression:WRONG_RESULT",
            "family_lora_scale[wan]": "regression:WRONG_RESULT",
        },
        "differs from the step with our merge",
    ),
    "scale-ignored": (
        "wan",
        plant_scale_ignored,
        {
            "family_step[wan]": "pass:OK",
            "family_lora_step[wan]": "pass:OK",
            "family_lora_scale[wan]": "regression:WRONG_RESULT",
        },
        "attention_kwargs={'scale': 0.5} had no effect on the step",
    ),
    "load-noop": (
        "wan",
        plant_load_noop,
        {
            "family_step[wan]": "pass:OK",
            "family_lora_step[wan]": "regression:SILENT_NOOP",
            "family_lora_scale[wan]": "regression:SILENT_NOOP",
        },
        "equals the pristine one",
    ),
    "sana-skip-cross-attention": (
        "sana",
        plant_sana_skip_cross_attention,
        {
            "family_step[sana]": "pass:OK",
            "family_lora_step[sana]": "regression:WRONG_RESULT",
            "family_lora_scale[sana]": "regression:WRONG_RESULT",
        },
        "differs from the step with our merge",
    ),
    "sana-bare-tensor": (
        "sana",
        plant_sana_bare_tensor,
        {
            "family_step[sana]": "regression:WRONG_RESULT",
            "family_lora_step[sana]": "pass:OK",
            "family_lora_scale[sana]": "pass:OK",
        },
        "returned a bare tensor (1, 4, 4, 4), not a tuple",
    ),
    "sana-scale-ignored": (
        "sana",
        plant_sana_scale_ignored,
        {
            "family_step[sana]": "pass:OK",
            "family_lora_step[sana]": "pass:OK",
            "family_lora_scale[sana]": "regression:WRONG_RESULT",
        },
        "attention_kwargs={'scale': 0.5} had no effect on the step",
    ),
    "flux3-skip-single-blocks": (
        "flux3",
        plant_flux3_skip_single_blocks,
        {
            "family_step[flux3]": "pass:OK",
            "family_lora_step[flux3]": "regression:WRONG_RESULT",
            "family_lora_scale[flux3]": "regression:WRONG_RESULT",
        },
        "differs from the step with our merge",
    ),
    "flux3-scale-ignored": (
        "flux3",
        plant_flux3_scale_ignored,
        {
            "family_step[flux3]": "pass:OK",
            "family_lora_step[flux3]": "pass:OK",
            "family_lora_scale[flux3]": "regression:WRONG_RESULT",
        },
        "attention_kwargs={'scale': 0.5} had no effect on the step",
    ),
}


def test_unpatched_library_passes(tmp_path: Path) -> None:
    records = run_checks(SUITE, " or ".join(FAMILIES), tmp_path / "unpatched.jsonl")
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
    family, plant, expected, says = PLANTS[key]
    plant(monkeypatch)
    records = run_checks(SUITE, family, tmp_path / f"{key}.jsonl")
    assert verdicts(records) == expected, json.dumps(verdicts(records), indent=1)
    for record in records:
        if record["verdict"] != "pass":
            assert says in record["message"], record["message"]
