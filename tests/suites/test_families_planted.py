"""Planted bugs in new families' loading: their family rows must turn red, while the
unpatched library (the newest cell's diffusers) keeps them green.

Runs the real checks of suites/families in-process (``pytest.main`` with ``-k``) against
a monkeypatched diffusers and reads the verdicts from the records:

* ``wan-ffn``: ``WanLoraLoaderMixin.lora_state_dict`` (Wan's converter entry) drops every
  key of the blocks' feed-forward layers (``.ffn.``) - one block type gone, no word;
* ``qwenimage-mlp``: the shared peft path (``load_lora_adapter`` of the denoiser) drops
  Qwen-Image's ``img_mlp`` keys before injecting.

Every row of the family that loads a valid file must flip (``load[-complete]``,
``load[-no-alpha]`` and the four lifecycle rows). The partial and stray-key rows are left
out of the planted run: the plant's drop comes with diffusers' warning naming the missing
keys (the header's ``target_modules`` still lists them), and for input the library may
refuse, a drop it reported by name passes (the LoRA suite's rule).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ROOT / "suites" / "families"

#: -k selector of each family's rows that load its complete (or no-alpha) file.
#: (The non-diffusers layout rows, ``test_layouts.py``, have their own planted test.)
SELECT = {
    "wan": "(test_load or test_unload or test_fuse or test_set_adapters or test_save) "
    "and wan and not skyreels and not test_layouts and not wan-i2v and not test_wan_variants",
    "qwenimage": "(test_load or test_unload or test_fuse or test_set_adapters or test_save) "
    "and qwenimage and not test_layouts",
}

#: Four load rows (complete, partial, no-alpha, stray) + four lifecycle rows.
ROWS_PER_FAMILY = 8
#: Of these, the rows whose file is valid input (a drop is never excused by a warning).
VALID_ROWS = 6
WITHOUT_PARTIAL_OR_STRAY = " and not partial and not stray"


def verdicts(records: list[dict]) -> dict[str, str]:
    return {r["check_id"]: f"{r['verdict']}:{r['observed']}" for r in records}


def plant_wan_drops_ffn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wan's lora_state_dict loses the feed-forward keys of every block."""
    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.WanLoraLoaderMixin.lora_state_dict.__func__

    def lora_state_dict(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        sd = out[0] if isinstance(out, tuple) else out
        kept = {k: v for k, v in sd.items() if ".ffn." not in k}
        return (kept, *out[1:]) if isinstance(out, tuple) else kept

    monkeypatch.setattr(
        lora_pipeline.WanLoraLoaderMixin, "lora_state_dict", classmethod(lora_state_dict)
    )


def plant_qwen_peft_drops_mlp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model-level peft loader drops Qwen-Image's image-stream MLP keys."""
    from diffusers.loaders import peft

    original = peft.PeftAdapterMixin.load_lora_adapter

    def load_lora_adapter(self, pretrained_model_name_or_path_or_dict, *args, **kwargs):
        sd = pretrained_model_name_or_path_or_dict
        if type(self).__name__ == "QwenImageTransformer2DModel" and isinstance(sd, dict):
            sd = {k: v for k, v in sd.items() if ".img_mlp." not in k}
        return original(self, sd, *args, **kwargs)

    monkeypatch.setattr(peft.PeftAdapterMixin, "load_lora_adapter", load_lora_adapter)


#: plant -> (family, outcomes its rows may show): a silent drop, or a drop the library
#: warned about by name (REFUSED: a complete file's keys refused), never a pass.
PLANTS = {
    "wan-ffn": (plant_wan_drops_ffn, "wan", {"DROPPED_KEYS", "REFUSED"}),
    "qwenimage-mlp": (plant_qwen_peft_drops_mlp, "qwenimage", {"DROPPED_KEYS", "REFUSED"}),
}


@pytest.mark.parametrize("family", list(SELECT))
def test_unpatched_library_passes(family: str, tmp_path: Path) -> None:
    records = run_checks(FAMILIES, SELECT[family], tmp_path / f"{family}.jsonl")
    assert len(records) == ROWS_PER_FAMILY, json.dumps(verdicts(records), indent=1)
    assert all(r["verdict"] == "pass" for r in records), json.dumps(verdicts(records), indent=1)


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_drop_turns_family_rows_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, family, outcomes = PLANTS[key]
    plant(monkeypatch)
    selector = SELECT[family] + WITHOUT_PARTIAL_OR_STRAY
    records = run_checks(FAMILIES, selector, tmp_path / f"{key}.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    assert len(records) == VALID_ROWS, shown
    assert all(r["verdict"] == "regression" for r in records), shown
    assert {r["observed"] for r in records} <= outcomes, shown
    dropped = " ".join(r.get("message") or "" for r in records)
    marker = ".ffn." if family == "wan" else ".img_mlp."
    assert marker in dropped, shown  # the finding names the dropped block type
