"""Planted bugs in diffusers' LoKr route: the LoKr rows they affect must turn red, rows the
bug cannot touch stay green, and the unpatched library (the newest cell's diffusers) keeps
every valid-file LoKr row green.

Runs ``suites/families/test_lokr.py`` in-process (``pytest.main`` with ``-k``) against a
monkeypatched diffusers and reads the verdicts from the records:

* ``bake-ignores-alpha``: ``_bake_lokr_alpha_`` (``lora_conversion_utils``, called by every
  LoKr converter) drops ``.alpha`` without scaling the left factor: the files with a
  low-rank pair and alpha 1 != rank 2 load at scale 1 (WRONG_RESULT); whole-factor files
  (alpha carries no scale) and files without alpha stay green;
* ``aitoolkit-swaps-qkv``: ``_convert_non_diffusers_flux2_lokr_to_diffusers`` sends
  ``img_attn.qkv`` to the fused ``to_added_qkv`` and ``txt_attn.qkv`` to ``to_qkv`` (same
  shapes): WRONG_RESULT on the ai-toolkit files, the LyCORIS ones stay green;
* ``lycoris-drops-single``: ``_convert_lycoris_flux2_lokr_to_diffusers`` loses the single
  blocks' modules, no word: DROPPED_KEYS; the bare dotted files stay green.
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
LOKR_SUITE = ROOT / "suites" / "families" / "test_lokr.py"


def verdicts(records: list[dict]) -> dict[str, str]:
    return {r["check_id"].split("::")[-1]: f"{r['verdict']}:{r['observed']}" for r in records}


def _wrap_converter(monkeypatch: pytest.MonkeyPatch, name: str, after) -> None:
    """Replace LoKr converter ``name`` where the Flux2 mixin looks it up, editing its output."""
    from diffusers.loaders import lora_pipeline

    original = getattr(lora_pipeline, name)

    def converter(state_dict, *args, **kwargs):
        return after(original(state_dict, *args, **kwargs))

    monkeypatch.setattr(lora_pipeline, name, converter)


def plant_bake_ignores_alpha(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.loaders import lora_conversion_utils

    def drop_alpha(state_dict: dict) -> None:
        for key in [k for k in state_dict if k.endswith(".alpha")]:
            del state_dict[key]

    monkeypatch.setattr(lora_conversion_utils, "_bake_lokr_alpha_", drop_alpha)


def plant_aitoolkit_swaps_qkv(monkeypatch: pytest.MonkeyPatch) -> None:
    swap = {".attn.to_qkv.": ".attn.to_added_qkv.", ".attn.to_added_qkv.": ".attn.to_qkv."}

    def rename(key: str) -> str:
        for old, new in swap.items():
            if old in key:
                return key.replace(old, new)
        return key

    _wrap_converter(
        monkeypatch,
        "_convert_non_diffusers_flux2_lokr_to_diffusers",
        lambda sd: {rename(k): v for k, v in sd.items()},
    )


def plant_lycoris_drops_single_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap_converter(
        monkeypatch,
        "_convert_lycoris_flux2_lokr_to_diffusers",
        lambda sd: {k: v for k, v in sd.items() if ".single_transformer_blocks." not in k},
    )


#: plant -> (install, -k selector of the rows it must turn red, their outcome, -k selector
#: of rows it must leave green).
PLANTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str, str, str]] = {
    "bake-ignores-alpha": (
        plant_bake_ignores_alpha,
        "lowrank and not peft",
        "WRONG_RESULT",
        "complete-full or no-alpha or (peft and lowrank)",
    ),
    "aitoolkit-swaps-qkv": (
        plant_aitoolkit_swaps_qkv,
        "flux2-lokr-aitoolkit-complete",
        "WRONG_RESULT",
        "flux2-lokr-lycoris-complete",
    ),
    "lycoris-drops-single": (
        plant_lycoris_drops_single_blocks,
        "flux2-lokr-lycoris-complete",
        "DROPPED_KEYS",
        "flux2-lokr-dotted-complete",
    ),
}

#: Valid-file rows of every spelling (complete-* and no-alpha): green in unpatched 0.42.1.
VALID_ROWS = "complete or no-alpha"


def test_unpatched_library_loads_every_valid_lokr_file(tmp_path: Path) -> None:
    records = run_checks(LOKR_SUITE, VALID_ROWS, tmp_path / "clean.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    assert len(records) >= 12, shown  # two or more forms per spelling, five spellings
    assert all(r["verdict"] == "pass" and r["observed"] == "OK" for r in records), shown


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_lokr_bug_turns_its_rows_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, red, outcome, green = PLANTS[key]
    clean = run_checks(LOKR_SUITE, red, tmp_path / f"{key}-clean.jsonl")
    assert all(r["verdict"] == "pass" for r in clean), json.dumps(verdicts(clean), indent=1)
    plant(monkeypatch)
    flipped = run_checks(LOKR_SUITE, red, tmp_path / f"{key}.jsonl")
    shown = json.dumps(verdicts(flipped), indent=1)
    assert len(flipped) == len(clean), shown
    assert all(r["verdict"] == "regression" for r in flipped), shown
    assert {r["observed"] for r in flipped} == {outcome}, shown
    others = run_checks(LOKR_SUITE, green, tmp_path / f"{key}-others.jsonl")
    assert others and all(r["verdict"] == "pass" for r in others), json.dumps(
        verdicts(others), indent=1
    )
