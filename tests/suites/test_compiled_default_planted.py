"""The compiled hot-swap row of the default CPU grid (newest cell, in-process).

* without any opt-in (no ``-m compile``, no ``ADAPTER_COMPAT_COMPILE``) on CPU,
  ``compiled_hotswap[sd15]`` runs (``aot_eager``) and passes on the unpatched library,
  while the rest of the compile set stays NOT_RUN;
* planted: a hot-swap that writes one layer's LoRA scaling back as a Python float (the
  same value, so every output is unchanged) after ``enable_lora_hotswap`` made it a
  tensor. Dynamo guards a float attribute as a constant, so the next step recompiles:
  under ``error_on_recompile`` the row turns red. Only the guard can see this bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("peft.utils.hotswap")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HOTSWAP = ROOT / "suites" / "lifecycle" / "test_hotswap.py"
DEFAULT_ROW = "compiled_hotswap[sd15]"
OPT_IN_ROW = "compiled_hotswap[sd15-then-set_adapters-unload]"


def plant_float_scaling(monkeypatch: pytest.MonkeyPatch) -> None:
    import peft.utils.hotswap as hotswap

    real = hotswap.hotswap_adapter_from_state_dict

    def swap(model: Any, state_dict: dict, adapter_name: str, *args: Any, **kw: Any) -> Any:
        out = real(model, state_dict, adapter_name, *args, **kw)
        for module in model.modules():
            scaling = getattr(module, "scaling", None)
            if isinstance(scaling, dict) and hasattr(scaling.get(adapter_name), "item"):
                scaling[adapter_name] = float(scaling[adapter_name].item())
                break
        return out

    monkeypatch.setattr(hotswap, "hotswap_adapter_from_state_dict", swap)


def _rows(records: list[dict]) -> dict[str, dict]:
    return {r["check_id"].split("::")[-1]: r for r in records}


@pytest.fixture(scope="module")
def no_opt_in() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("ADAPTER_COMPAT_COMPILE", "ADAPTER_COMPAT_COMPILE_BACKEND"):
            mp.delenv(name, raising=False)
        mp.setenv("ADAPTER_COMPAT_DEVICE", "cpu")
        yield


@pytest.fixture(scope="module")
def clean(no_opt_in: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    results = tmp_path_factory.mktemp("compiled-clean") / "clean.jsonl"
    return _rows(run_checks(HOTSWAP, "test_compiled_hotswap", results))


@pytest.fixture(scope="module")
def planted(no_opt_in: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    results = tmp_path_factory.mktemp("compiled-planted") / "planted.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        plant_float_scaling(mp)
        return _rows(run_checks(HOTSWAP, "test_compiled_hotswap and not then", results))


def test_default_compiled_row_runs_and_passes(clean: dict[str, dict]) -> None:
    record = clean[DEFAULT_ROW]
    assert record["verdict"] == "pass", record.get("message")
    assert record["details"]["compile_backend"] == "aot_eager"


def test_rest_of_the_compile_set_stays_opt_in(clean: dict[str, dict]) -> None:
    assert clean[OPT_IN_ROW]["observed"] == "NOT_RUN", clean[OPT_IN_ROW]


def test_recompiling_hotswap_is_caught(planted: dict[str, dict]) -> None:
    record = planted[DEFAULT_ROW]
    assert record["verdict"] == "regression", record.get("message")
    assert "ecompil" in (record.get("message") or "") + str(record.get("details")), record
