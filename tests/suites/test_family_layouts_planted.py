"""Planted bugs in the families' non-diffusers converters: the layout rows they affect must
turn red, the rows of other layouts stay green, and the unpatched library (the newest
cell's diffusers) keeps every valid-file row green.

Runs ``suites/families/test_layouts.py`` in-process (``pytest.main`` with ``-k``) against
a monkeypatched ``diffusers.loaders.lora_pipeline`` (the mixins call the converters by
the names imported there) and reads the verdicts from the records:

* ``wan-original-ffn``: ``_convert_non_diffusers_wan_lora_to_diffusers`` loses both
  feed-forward layers of every block (``ffn.0`` / ``ffn.2``), no word: DROPPED_KEYS;
* ``wan-musubi-alpha``: ``_convert_musubi_wan_lora_to_diffusers`` reads every ``.alpha``
  as the rank (scale 1 instead of 2 / 4): WRONG_RESULT;
* ``qwenimage-alpha``: ``_convert_non_diffusers_qwen_lora_to_diffusers`` drops the
  ``.alpha`` keys before converting: the files with alpha load at scale 1 (WRONG_RESULT),
  the ``no-alpha`` files stay right;
* ``flux2-kohya-qkv``: ``_convert_kohya_flux2_lora_to_diffusers`` splits a fused qkv with
  q and k swapped: WRONG_RESULT;
* ``hunyuanvideo-qkv``: ``_convert_hunyuan_video_lora_to_diffusers`` splits the fused
  ``img_attn_qkv`` / ``txt_attn_qkv`` with q and k swapped: both HunyuanVideo layouts'
  complete rows and the real-width view rows WRONG_RESULT;
* ``zimage-noise-refiner``: ``_convert_non_diffusers_z_image_lora_to_diffusers`` loses the
  ``noise_refiner`` blocks, no word: every Z-Image layout's valid and partial rows
  DROPPED_KEYS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS_SUITE = ROOT / "suites" / "families" / "test_layouts.py"


def verdicts(records: list[dict]) -> dict[str, str]:
    return {r["check_id"].split("::")[-1]: f"{r['verdict']}:{r['observed']}" for r in records}


def _wrap(monkeypatch: pytest.MonkeyPatch, name: str, before=None, after=None) -> None:
    """Replace converter ``name`` where the mixins look it up, editing its input / output."""
    from diffusers.loaders import lora_pipeline

    original = getattr(lora_pipeline, name)

    def converter(state_dict, *args, **kwargs):
        if before is not None:
            state_dict = before(dict(state_dict))
        out = original(state_dict, *args, **kwargs)
        return after(out) if after is not None else out

    monkeypatch.setattr(lora_pipeline, name, converter)


def plant_wan_original_drops_ffn(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap(
        monkeypatch,
        "_convert_non_diffusers_wan_lora_to_diffusers",
        after=lambda sd: {k: v for k, v in sd.items() if ".ffn." not in k},
    )


def plant_musubi_ignores_alpha(monkeypatch: pytest.MonkeyPatch) -> None:
    def alpha_is_rank(sd: dict) -> dict:
        for key in [k for k in sd if k.endswith(".alpha")]:
            rank = sd[key.removesuffix(".alpha") + ".lora_down.weight"].shape[0]
            sd[key] = sd[key].new_tensor(float(rank))
        return sd

    _wrap(monkeypatch, "_convert_musubi_wan_lora_to_diffusers", before=alpha_is_rank)


def plant_qwen_drops_alpha(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap(
        monkeypatch,
        "_convert_non_diffusers_qwen_lora_to_diffusers",
        before=lambda sd: {k: v for k, v in sd.items() if not k.endswith(".alpha")},
    )


def _swap_qk(sd: dict) -> dict:
    """Converted q and k up matrices exchanged (image and text stream)."""
    out = dict(sd)
    for first, second in (("to_q", "to_k"), ("add_q_proj", "add_k_proj")):
        for key in [k for k in sd if f".attn.{first}.lora_B" in k]:
            other = key.replace(f".attn.{first}.", f".attn.{second}.")
            out[key], out[other] = sd[other], sd[key]
    return out


def plant_flux2_kohya_swaps_qk(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap(monkeypatch, "_convert_kohya_flux2_lora_to_diffusers", after=_swap_qk)


def plant_hunyuan_swaps_qk(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap(monkeypatch, "_convert_hunyuan_video_lora_to_diffusers", after=_swap_qk)


def plant_zimage_drops_noise_refiner(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap(
        monkeypatch,
        "_convert_non_diffusers_z_image_lora_to_diffusers",
        after=lambda sd: {k: v for k, v in sd.items() if ".noise_refiner." not in k},
    )


#: plant -> (install, -k selector of the rows it must turn red, their outcome, -k selector
#: of rows of the same family it must leave green).
PLANTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str, str, str]] = {
    "wan-original-ffn": (
        plant_wan_original_drops_ffn,
        "wan-original and (complete or no-alpha or partial)",
        "DROPPED_KEYS",
        "wan-musubi-complete",
    ),
    "wan-musubi-alpha": (
        plant_musubi_ignores_alpha,
        "wan-musubi-complete",
        "WRONG_RESULT",
        "wan-original and complete",
    ),
    "qwenimage-alpha": (
        plant_qwen_drops_alpha,
        "qwenimage and not peft-default and (complete or partial)",  # peft-default: no alpha
        "WRONG_RESULT",
        "qwenimage and no-alpha",
    ),
    "flux2-kohya-qkv": (
        plant_flux2_kohya_swaps_qk,
        "flux2-kohya and (complete or partial)",
        "WRONG_RESULT",
        "flux2-aitoolkit-complete",
    ),
    "hunyuanvideo-qkv": (
        plant_hunyuan_swaps_qk,
        # not the tiny partial rows: without ``img_attn_qkv`` the mixin never converts
        "hunyuanvideo and (complete or test_view)",
        "WRONG_RESULT",
        "ltxvideo-original-complete or hidream-original-complete",
    ),
    "zimage-noise-refiner": (
        plant_zimage_drops_noise_refiner,
        "test_load and zimage and (complete or no-alpha or partial)",
        "DROPPED_KEYS",
        "hunyuanvideo-original-complete",
    ),
}

#: Valid-file rows of every layout (complete and no-alpha): green in unpatched 0.42.1,
#: except ``flux2-original-downup``, a library finding there (the Flux2 mixin sends every
#: ``lora_down`` file to the kohya converter, which loads nothing: suites/families/README.md).
VALID_ROWS = "(complete or no-alpha) and not flux2-original-downup"


def test_unpatched_library_loads_every_valid_layout_file(tmp_path: Path) -> None:
    records = run_checks(LAYOUTS_SUITE, VALID_ROWS, tmp_path / "clean.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    assert len(records) >= 8, shown  # one complete row per layout
    assert all(r["verdict"] == "pass" and r["observed"] == "OK" for r in records), shown


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_converter_bug_turns_its_rows_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, red, outcome, green = PLANTS[key]
    clean = run_checks(LAYOUTS_SUITE, red, tmp_path / f"{key}-clean.jsonl")
    assert all(r["verdict"] == "pass" for r in clean), json.dumps(verdicts(clean), indent=1)
    plant(monkeypatch)
    flipped = run_checks(LAYOUTS_SUITE, red, tmp_path / f"{key}.jsonl")
    shown = json.dumps(verdicts(flipped), indent=1)
    assert len(flipped) == len(clean), shown
    assert all(r["verdict"] == "regression" for r in flipped), shown
    assert {r["observed"] for r in flipped} == {outcome}, shown
    others = run_checks(LAYOUTS_SUITE, green, tmp_path / f"{key}-others.jsonl")
    assert all(r["verdict"] == "pass" for r in others), json.dumps(verdicts(others), indent=1)
