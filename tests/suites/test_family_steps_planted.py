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

* ``rfd4-skip-layer``: ``RFD4ProteinaLoraLoaderMixin.lora_state_dict`` drops every key of
  the second trunk layer (``transformer_layers.1.``): both RFD4-Proteina LoRA rows ->
  WRONG_RESULT, its ``family_step`` green;
* ``rfd4-scale-ignored``: the RFD4-Proteina transformer's forward loses ``scale`` from its
  ``attention_kwargs``: only ``family_lora_scale[rfd4proteina]`` red;
* ``minimax-skip-refiner``: the modular MiniMax-H3's ``MiniMaxH3LoraLoaderMixin.lora_state_dict``
  drops the text token refiner's keys (``token_refiner.``): both MiniMax-H3 LoRA rows ->
  WRONG_RESULT (the refined text reaches the video latents through the packed attention),
  its ``family_step`` green;
* ``ltx2-connectors-skip-video-connector``: ``LTX2LoraLoaderMixin.lora_state_dict`` drops
  the video text connector's keys of a ``connectors.``-named file: the companion row
  ``family_lora_step[ltx2-connectors]`` (its file in LTX-2's pipeline) -> WRONG_RESULT.

Wan's LoRA rows step with our ``prompt_embeds`` (the data's ``PromptEmbeds``), Sana's with
the prompt, FLUX.3 through a modular pipeline's default blocks, RFD4-Proteina with
prepared molecular tensors and output fields instead of latents: all four routes are
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
FAMILIES = ("wan", "sana", "flux3", "rfd4proteina", "minimax-h3")
#: Companion rows (a second LoRA target inside a host family's pipeline): one row each.
COMPANIONS = ("ltx2-connectors",)
ROWS = {
    f"{row}[{family}]"
    for family in FAMILIES
    for row in ("family_step", "family_lora_step", "family_lora_scale")
} | {f"family_lora_step[{companion}]" for companion in COMPANIONS}


def verdicts(records: list[dict]) -> dict[str, str]:
    return {r["check_id"].rsplit("::", 1)[-1]: f"{r['verdict']}:{r['observed']}" for r in records}


def _drop_keys(monkeypatch: pytest.MonkeyPatch, mixin_name: str, marker: str) -> None:
    """``mixin_name.lora_state_dict`` loses every key containing ``marker``."""
    from diffusers.loaders import lora_pipeline

    mixin = getattr(lora_pipeline, mixin_name)
    original = mixin.lora_state_dict.__func__

    def lora_state_dict(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        kept = {k: v for k, v in sd.items() if marker not in k}
        return (kept, *out[1:]) if isinstance(out, tuple) else kept

    monkeypatch.setattr(mixin, "lora_state_dict", classmethod(lora_state_dict))


def plant_skip_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wan's lora_state_dict loses every key of block 1."""
    _drop_keys(monkeypatch, "WanLoraLoaderMixin", ".blocks.1.")


def plant_rfd4_skip_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFD4-Proteina's lora_state_dict loses every key of trunk layer 1."""
    _drop_keys(monkeypatch, "RFD4ProteinaLoraLoaderMixin", ".transformer_layers.1.")


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
    _drop_keys(monkeypatch, "SanaLoraLoaderMixin", ".attn2.")


def plant_flux3_skip_single_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """FLUX.3's lora_state_dict loses every single-stream block key."""
    _drop_keys(monkeypatch, "Flux3LoraLoaderMixin", ".single_transformer_blocks.")


def plant_flux3_scale_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FLUX.3 transformer never sees the ``scale`` its denoise block passes."""
    from diffusers import Flux3Transformer2DModel

    _drop_scale(monkeypatch, Flux3Transformer2DModel)


def plant_minimax_skip_refiner(monkeypatch: pytest.MonkeyPatch) -> None:
    """MiniMax-H3's lora_state_dict loses every key of the text token refiner."""
    _drop_keys(monkeypatch, "MiniMaxH3LoraLoaderMixin", ".token_refiner.")


def plant_ltx2_skip_video_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    """LTX-2's lora_state_dict loses every key of the video text connector."""
    _drop_keys(monkeypatch, "LTX2LoraLoaderMixin", ".video_connector.")


def plant_rfd4_scale_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RFD4-Proteina transformer never sees the ``scale`` its pipeline passes."""
    from diffusers import RFD4ProteinaTransformer

    _drop_scale(monkeypatch, RFD4ProteinaTransformer)


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
    "rfd4-skip-layer": (
        "rfd4proteina",
        plant_rfd4_skip_layer,
        {
            "family_step[rfd4proteina]": "pass:OK",
            "family_lora_step[rfd4proteina]": "regression:WRONG_RESULT",
            "family_lora_scale[rfd4proteina]": "regression:WRONG_RESULT",
        },
        "differs from the step with our merge",
    ),
    "rfd4-scale-ignored": (
        "rfd4proteina",
        plant_rfd4_scale_ignored,
        {
            "family_step[rfd4proteina]": "pass:OK",
            "family_lora_step[rfd4proteina]": "pass:OK",
            "family_lora_scale[rfd4proteina]": "regression:WRONG_RESULT",
        },
        "attention_kwargs={'scale': 0.5} had no effect on the step",
    ),
    "minimax-skip-refiner": (
        "minimax-h3",
        plant_minimax_skip_refiner,
        {
            "family_step[minimax-h3]": "pass:OK",
            "family_lora_step[minimax-h3]": "regression:WRONG_RESULT",
            "family_lora_scale[minimax-h3]": "regression:WRONG_RESULT",
        },
        "differs from the step with our merge",
    ),
    "ltx2-connectors-skip-video-connector": (
        "ltx2-connectors",
        plant_ltx2_skip_video_connector,
        {"family_lora_step[ltx2-connectors]": "regression:WRONG_RESULT"},
        "differs from the step with our merge",
    ),
}


def test_unpatched_library_passes(tmp_path: Path) -> None:
    selector = " or ".join((*FAMILIES, *COMPANIONS))
    records = run_checks(SUITE, selector, tmp_path / "unpatched.jsonl")
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
