"""Planted bugs for suites/shared: each check family turns red when diffusers
misbehaves the way the check exists to catch, and stays green on the unpatched library.

Runs the real suite checks in-process (``pytest.main`` with ``-k``, no compile checks)
against a monkeypatched diffusers (the newest cell's) and reads the verdicts:

b. ``unload_lora_weights`` that skips ``text_encoder_2`` (the module base and refiner
   share): the LoRA layers stay on the shared encoder -> shared-unload check regresses;
s. a safetensors writer that drops one VAE tensor (the VAE both pipelines share) ->
   save/reload check regresses;
c. ``save_pretrained`` that no longer recognises a ``torch.compile`` wrapper (so the
   compiled shared ``text_encoder_2`` is not unwrapped and not saved) -> the compiled
   save/reload check regresses (``-m compile``: CPU opt-in, ``aot_eager``, a few seconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from harness.protocol.records import read_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "suites" / "shared"

CHECKS = {
    # the UNet-only twin never touches text_encoder_2, the module the plant forgets
    "unload": (
        "test_adapters.py",
        "test_lora_unload_shared and refiner and not unet",
        "not compile",
    ),
    "save": ("test_persist.py", "test_save_reload and refiner", "not compile"),
    "compiled": ("test_compile.py", "test_compiled_save_reload", "compile"),
}

#: The tensor the planted writer leaves out (a VAE decoder weight, present in every version).
DROPPED = "decoder.conv_out.weight"


def run_check(tmp_path: Path, key: str) -> dict[str, str]:
    """Run the selected checks in this process; returns check_id -> verdict."""
    module, expr, marks = CHECKS[key]
    results = tmp_path / f"{key}.jsonl"
    code = pytest.main(
        [str(SHARED / module), "-q", "-p", "no:cacheprovider", "-m", marks,
         "-k", expr, "--compat-results", str(results), "--compat-cell", "selftest"]
    )  # fmt: skip
    assert code in (0, 1), f"inner pytest failed to run ({code})"
    records = [r for r in read_records([results]) if r.get("kind") == "check"]
    assert records, "the check wrote no record"
    return {r["check_id"]: r["verdict"] for r in records}


def plant_unload_skips_text_encoder_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pipeline's unload_lora_weights forgets ``text_encoder_2``."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    for cls in (StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline):
        original = cls.unload_lora_weights

        def planted(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            self._lora_loadable_modules = [
                m for m in type(self)._lora_loadable_modules if m != "text_encoder_2"
            ]
            try:
                return _original(self, *args, **kwargs)
            finally:
                del self._lora_loadable_modules

        monkeypatch.setattr(cls, "unload_lora_weights", planted)


def plant_save_drops_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """diffusers' model writer leaves ``DROPPED`` out of the file."""
    import safetensors.torch
    from diffusers.models import modeling_utils

    original = safetensors.torch.save_file

    def planted(tensors: dict, filename: Any, metadata: Any = None) -> None:
        return original({k: v for k, v in tensors.items() if k != DROPPED}, filename, metadata)

    monkeypatch.setattr(modeling_utils.safetensors.torch, "save_file", planted)


def test_unload_unpatched_passes(tmp_path: Path) -> None:
    verdicts = run_check(tmp_path, "unload")
    assert set(verdicts.values()) == {"pass"}, verdicts


def test_unload_skipping_shared_module_regresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_unload_skips_text_encoder_2(monkeypatch)
    verdicts = run_check(tmp_path, "unload")
    assert set(verdicts.values()) == {"regression"}, verdicts
    records = read_records([tmp_path / "unload.jsonl"])
    assert all(r["observed"] == "STALE_STATE" for r in records if r.get("kind") == "check")


def test_save_unpatched_passes(tmp_path: Path) -> None:
    verdicts = run_check(tmp_path, "save")
    assert set(verdicts.values()) == {"pass"}, verdicts


def test_save_dropping_tensor_regresses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant_save_drops_tensor(monkeypatch)
    verdicts = run_check(tmp_path, "save")
    assert set(verdicts.values()) == {"regression"}, verdicts
    records = [r for r in read_records([tmp_path / "save.jsonl"]) if r.get("kind") == "check"]
    assert all(r["observed"] == "DROPPED_KEYS" for r in records), records


def plant_save_keeps_compile_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """``save_pretrained`` stops unwrapping ``OptimizedModule`` components."""
    from diffusers.pipelines import pipeline_utils

    monkeypatch.setattr(pipeline_utils, "is_compiled_module", lambda module: False)


def test_compiled_save_unpatched_passes(tmp_path: Path) -> None:
    verdicts = run_check(tmp_path, "compiled")
    assert set(verdicts.values()) == {"pass"}, verdicts


def test_compiled_save_keeping_wrapper_regresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_save_keeps_compile_wrapper(monkeypatch)
    verdicts = run_check(tmp_path, "compiled")
    assert set(verdicts.values()) == {"regression"}, verdicts
    records = [r for r in read_records([tmp_path / "compiled.jsonl"]) if r.get("kind") == "check"]
    assert all(r["observed"] == "DROPPED_KEYS" for r in records), records
