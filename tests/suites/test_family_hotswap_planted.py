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

Both must turn ``hotswap[wan]`` and ``hotswap[qwenimage]`` to STALE_STATE, and the same
families' chains after ``enable_lora_hotswap`` red. For the ``enable_lora_hotswap`` rows:

* ``stale-padding``: a swap into the padded weights leaves the rows beyond the new file's
  rank as they were (peft's ``fill_(0)`` lost), so the rank-8 file's rows 4-7 keep acting
  after the swap back to rank 4: the eager and the compiled chains WRONG_RESULT;
* ``enable-ignored``: the model-level ``enable_lora_hotswap`` does nothing (the first load
  is neither padded nor given tensor scalings). Eager swaps still act right (peft swaps in
  the larger tensors), so only the compiled chain can see it: its swap recompiles, red
  under ``error_on_recompile``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

import torch  # noqa: E402

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "families" / "test_hotswap.py"

#: Every hot-swap row of two families: equal rank, rank mismatch, the enabled chain
#: (eager and compiled).
UNPATCHED = "(wan or qwenimage) and not i2v"
#: The eager swaps documented to work: the equal-rank rows and the enabled chains.
PLANTED = UNPATCHED + " and not rank_mismatch and not compiled"
#: The enabled chains, eager and compiled.
ENABLED = UNPATCHED + " and enabled"
COMPILED = UNPATCHED + " and enabled_compiled"
FAMILIES = ("wan", "qwenimage")


def verdicts(records: list[dict]) -> dict[str, str]:
    return {
        r["check_id"]: f"{r['verdict']}:{r['observed']}:{r.get('message', '')}" for r in records
    }


def plant_keeps_old_to_k(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the real swap, every ``to_k`` LoRA layer gets its old weights back."""
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


def plant_stale_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A swap into padded weights leaves the rows (``lora_A``) / columns (``lora_B``)
    beyond the new file's rank as they were, instead of zeroing them."""
    from peft.utils import hotswap

    original = hotswap.hotswap_adapter_from_state_dict

    def hotswap_adapter_from_state_dict(model, state_dict, adapter_name, *args, **kwargs):
        params = dict(model.named_parameters())
        before = {k: params[k].detach().clone() for k in state_dict if k in params}
        out = original(model, state_dict, adapter_name, *args, **kwargs)
        with torch.no_grad():
            for key, old in before.items():
                if ".lora_A." in key:
                    rank = state_dict[key].shape[0]
                    params[key][rank:] = old[rank:]
                else:
                    rank = state_dict[key].shape[1]
                    params[key][:, rank:] = old[:, rank:]
        return out

    monkeypatch.setattr(hotswap, "hotswap_adapter_from_state_dict", hotswap_adapter_from_state_dict)


def plant_enable_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``enable_lora_hotswap`` on the model accepts its arguments and does nothing."""
    import functools

    from diffusers.loaders import peft

    @functools.wraps(peft.PeftAdapterMixin.enable_lora_hotswap)  # the real signature
    def enable_lora_hotswap(self, *args, **kwargs) -> None:
        return None

    monkeypatch.setattr(peft.PeftAdapterMixin, "enable_lora_hotswap", enable_lora_hotswap)


#: plant -> (its function, what the message must name, the enabled chain's outcome). The
#: equal-rank rows are STALE_STATE for both. In the chain the kept ``to_k`` weights act
#: under the new file's scale (alpha / 8, not the first file's alpha / 4): neither file's
#: effect, so WRONG_RESULT; a second adapter is STALE_STATE there too.
PLANTS = {
    "keeps-old-to_k": (plant_keeps_old_to_k, ".to_k", "WRONG_RESULT"),
    "new-adapter": (plant_new_adapter, "_swapped", "STALE_STATE"),
}


@pytest.fixture
def compile_on_cpu_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled rows as the default CPU grid runs them (``aot_eager``, no opt-in)."""
    for name in ("ADAPTER_COMPAT_COMPILE", "ADAPTER_COMPAT_COMPILE_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADAPTER_COMPAT_DEVICE", "cpu")


def _outcomes(records: list[dict]) -> dict[str, str]:
    return {r["check_id"].split("::")[-1]: r["observed"] for r in records}


def test_unpatched_library_passes(tmp_path: Path, compile_on_cpu_default: None) -> None:
    records = run_checks(SUITE, UNPATCHED, tmp_path / "unpatched.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    rows = ("hotswap", "hotswap_rank_mismatch", "hotswap_enabled", "hotswap_enabled_compiled")
    assert _outcomes(records) == {f"{r}[{f}]": "OK" for r in rows for f in FAMILIES}, shown
    assert all(r["verdict"] == "pass" for r in records), shown
    compiled = [r for r in records if "compiled" in r["check_id"]]
    assert {r["details"]["compile_backend"] for r in compiled} == {"aot_eager"}, shown


@pytest.mark.parametrize("key", list(PLANTS))
def test_planted_hotswap_bug_turns_rows_red(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, marker, enabled_outcome = PLANTS[key]
    plant(monkeypatch)
    records = run_checks(SUITE, PLANTED, tmp_path / f"{key}.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    want = {f"hotswap[{f}]": "STALE_STATE" for f in FAMILIES}
    want |= {f"hotswap_enabled[{f}]": enabled_outcome for f in FAMILIES}
    assert _outcomes(records) == want, shown
    assert all(r["verdict"] == "regression" for r in records), shown
    assert all(marker in (r.get("message") or "") for r in records), shown


def test_stale_padding_turns_enabled_chains_red(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compile_on_cpu_default: None
) -> None:
    plant_stale_padding(monkeypatch)
    records = run_checks(SUITE, ENABLED, tmp_path / "stale-padding.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    rows = ("hotswap_enabled", "hotswap_enabled_compiled")
    assert _outcomes(records) == {f"{r}[{f}]": "WRONG_RESULT" for r in rows for f in FAMILIES}, (
        shown
    )
    assert all(r["verdict"] == "regression" for r in records), shown
    # the rank-8 swap (no row beyond its rank held anything yet) passed; the swap back is named
    assert all("rank 4, alpha 6" in (r.get("message") or "") for r in records), shown


def test_ignored_enable_turns_compiled_chains_red(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compile_on_cpu_default: None
) -> None:
    plant_enable_ignored(monkeypatch)
    records = run_checks(SUITE, COMPILED, tmp_path / "enable-ignored.jsonl")
    shown = json.dumps(verdicts(records), indent=1)
    assert set(_outcomes(records)) == {f"hotswap_enabled_compiled[{f}]" for f in FAMILIES}, shown
    assert all(r["verdict"] == "regression" for r in records), shown
    assert all("ecompil" in (r.get("message") or "") for r in records), shown
