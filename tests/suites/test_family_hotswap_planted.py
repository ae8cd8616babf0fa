"""Planted hot-swap bugs: the family hot-swap rows must turn red, while the unpatched
library (the newest cell's diffusers) keeps them green.

Runs the real checks of ``suites/families/test_hotswap.py`` in-process against a
monkeypatched library and reads the verdicts from the records:

* ``keeps-old-to_k``: peft's ``hotswap_adapter_from_state_dict`` (which diffusers imports
  at call time) swaps every module but puts the old ``to_k`` LoRA weights back - one module
  type keeps the first file, no word;
* ``new-adapter``: the model-level ``load_lora_adapter`` ignores ``hotswap=True`` and loads
  the file as a new adapter next to the old one (the new one active, so the effect alone
  cannot tell: only the adapter count can).

Both must turn ``hotswap[wan]`` and ``hotswap[qwenimage]`` to STALE_STATE.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "families" / "test_hotswap.py"

#: The equal-rank row and the rank-mismatch row of two families.
UNPATCHED = "(wan or qwenimage) and not i2v"
#: The planted runs: the equal-rank rows only (a swap documented to work).
PLANTED = UNPATCHED + " and not rank_mismatch"


def verdicts(records: list[dict]) -> dict[str, str]:
    return {
        r["check_id"]: f"{r['verdict']}:{r['observed']}:{r.get('message', '')}" for r in records
    }


def plant_keeps_old_to_k(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the real swap, every ``to_k`` LoRA layer gets its old weights back."""
    import torch
    from peft.utils import hotswap

    original = hotswap.hotswap_adapter_from_state_dict

    def hotswap_adapter_from_state_dict(model, state_dict, adapter_name, *args, **kwargs):
        kept = {
            name: (m.lora_A[adapter_name].weight.detach().clone(),
                   m.lora_B[adapter_name].weight.detach().clone())
            for name, m in model.named_modules()
            if name.endswith(".to_k") and adapter_name in getattr(m, "lora_A", {})
        }  # fmt: skip
        out = original(model, state_dict, adapter_name, *args, **kwargs)
        for name, (down, up) in kept.items():
            module = model.get_submodule(name)
            module.lora_A[adapter_name].weight = torch.nn.Parameter(down)
            module.lora_B[adapter_name].weight = torch.nn.Parameter(up)
        return out

    monkeypatch.setattr(hotswap, "hotswap_adapter_from_state_dict", hotswap_adapter_from_state_dict)


def plant_new_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hotswap=True`` loads the file under a new adapter name instead."""
    from diffusers.loaders import peft

    original = peft.PeftAdapterMixin.load_lora_adapter

    def load_lora_adapter(self, *args, hotswap: bool = False, **kwargs):
        if hotswap:
            kwargs["adapter_name"] = f"{kwargs.get('adapter_name')}_swapped"
        return original(self, *args, hotswap=False, **kwargs)

    monkeypatch.setattr(peft.PeftAdapterMixin, "load_lora_adapter", load_lora_adapter)


PLANTS = {
    "keeps-old-to_k": (plant_keeps_old_to_k, ".to_k"),
    "new-adapter": (plant_new_adapter, "_swapped"),
}


def test_unpatched_library_passes(tmp_path: Path) -> None:
    records = run_checks(SUITE, UNPATCHED, tmp_path / "unpatched.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    assert len(records) == 4, shown
    assert all(r["verdict"] == "pass" and r["observed"] == "OK" for r in records), shown


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_hotswap_bug_turns_rows_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, marker = PLANTS[key]
    plant(monkeypatch)
    records = run_checks(SUITE, PLANTED, tmp_path / f"{key}.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    assert len(records) == 2, shown
    assert all(r["verdict"] == "regression" for r in records), shown
    assert {r["observed"] for r in records} == {"STALE_STATE"}, shown
    assert all(marker in (r.get("message") or "") for r in records), shown
