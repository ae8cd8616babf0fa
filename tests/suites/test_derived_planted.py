"""Planted bugs for the derived-pipeline rows (newest cell, in-process).

Two ``from_pipe`` implementations that stop sharing the denoiser, one per derivation way:

* the class ``from_pipe`` (``DiffusionPipeline.from_pipe``) hands the derived pipeline a
  deep copy of the UNet, adapter included: the derived pipeline still computes with the
  LoRA (``derived_effect`` stays green), but its ``unload_lora_weights`` leaves the
  original's adapter in place and ``set_adapters`` no longer reaches the other pipeline;
* ``AutoPipelineForImage2Image.from_pipe`` hands over a copy with the adapter removed:
  the derived pipeline loses the LoRA (``derived_effect`` red as well).

The constructor way (``Img2Img(**pipe.components)``) is not patched and must stay green.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DERIVED = ROOT / "suites" / "lora" / "test_derived.py"
CHECKS = ("derived_effect", "derived_unload", "derived_set_adapters")
WAYS = ("from_pipe", "auto", "components")
#: (check, way) -> verdict with the plants in place.
PLANTED = {
    ("derived_effect", "from_pipe"): "pass",
    ("derived_unload", "from_pipe"): "regression",
    ("derived_set_adapters", "from_pipe"): "regression",
    ("derived_effect", "auto"): "regression",
    ("derived_unload", "auto"): "regression",
    ("derived_set_adapters", "auto"): "regression",
    **{(check, "components"): "pass" for check in CHECKS},
}


def _copy_denoiser(pipe: Any, strip_adapter: bool) -> Any:
    unet = copy.deepcopy(pipe.unet)
    if strip_adapter:
        unet.unload_lora()
    pipe.unet = unet
    return pipe


def plant_unshared_denoisers(monkeypatch: pytest.MonkeyPatch) -> None:
    base = diffusers.DiffusionPipeline
    base_from_pipe = base.from_pipe.__func__

    def from_pipe(cls: Any, pipeline: Any, **kwargs: Any) -> Any:
        return _copy_denoiser(base_from_pipe(cls, pipeline, **kwargs), strip_adapter=False)

    monkeypatch.setattr(base, "from_pipe", classmethod(from_pipe))
    auto = diffusers.AutoPipelineForImage2Image
    auto_from_pipe = auto.from_pipe.__func__

    def auto_copy(cls: Any, pipeline: Any, **kwargs: Any) -> Any:
        return _copy_denoiser(auto_from_pipe(cls, pipeline, **kwargs), strip_adapter=True)

    monkeypatch.setattr(auto, "from_pipe", classmethod(auto_copy))


def _verdicts(records: list[dict]) -> dict[tuple[str, str], dict]:
    out = {}
    for record in records:
        name = record["check_id"].split("::")[-1]
        check, param = name.removeprefix("test_").rstrip("]").split("[")
        out[(check, param.removeprefix("sd15-"))] = record
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    results = tmp_path_factory.mktemp("derived-clean") / "clean.jsonl"
    return _verdicts(run_checks(DERIVED, "sd15", results))


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    results = tmp_path_factory.mktemp("derived-planted") / "planted.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        plant_unshared_denoisers(mp)
        return _verdicts(run_checks(DERIVED, "sd15", results))


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("way", WAYS)
def test_unpatched_derived_rows_pass(clean: dict, check: str, way: str) -> None:
    record = clean[(check, way)]
    assert record["verdict"] == "pass", record.get("message")


@pytest.mark.parametrize("check,way", sorted(PLANTED))
def test_unshared_denoiser_flips_its_rows(planted: dict, check: str, way: str) -> None:
    record = planted[(check, way)]
    assert record["verdict"] == PLANTED[(check, way)], (record["observed"], record.get("message"))
    if PLANTED[(check, way)] == "regression" and check == "derived_unload":
        assert record["observed"] == "STALE_STATE" and "original" in record["message"], record
