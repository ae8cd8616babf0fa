"""How the InvokeAI adapter reads the app's layers (no InvokeAI needed: stand-ins with the
same attributes): a ``MergedLayerPatch`` (5.6+) puts each part at its range and the rows of
a part the file lacks stay zero; the app's LoRA model loader is imported first unless the
cell lacks a third-party module for it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from harness.loaders import invokeai


@dataclass
class StandInLoRA:
    up: torch.Tensor
    down: torch.Tensor
    alpha: float

    def scale(self) -> float:
        return self.alpha / self.down.shape[0]


@dataclass
class StandInRange:
    start: int
    end: int


@dataclass
class StandInMerged:
    lora_layers: list[Any]
    ranges: list[StandInRange]


def _part(rows: int, seed: int) -> StandInLoRA:
    gen = torch.Generator().manual_seed(seed)
    return StandInLoRA(torch.randn(rows, 2, generator=gen), torch.randn(2, 5, generator=gen), 1.0)


def test_merged_parts_land_at_their_ranges_and_missing_rows_stay_zero() -> None:
    q, v = _part(4, 1), _part(4, 2)  # k (rows 4-8) is missing from the file
    merged = StandInMerged([q, v], [StandInRange(0, 4), StandInRange(8, 12)])
    delta = invokeai.layer_delta(merged, merged_rows=16)  # e.g. linear1: a trailing part too
    assert (delta.out_features, delta.in_features) == (16, 5)
    x = torch.eye(5, dtype=torch.float64)
    dense = delta.apply(x)
    expected = torch.zeros(16, 5, dtype=torch.float64)
    expected[0:4] = (q.up @ q.down).double() * q.scale()
    expected[8:12] = (v.up @ v.down).double() * v.scale()
    assert torch.allclose(dense, expected)


def test_merged_part_of_the_wrong_height_is_ours_to_report() -> None:
    merged = StandInMerged([_part(3, 1)], [StandInRange(0, 4)])
    with pytest.raises(ValueError, match="rows in range"):
        invokeai.layer_delta(merged, merged_rows=8)


def test_merged_rows_come_from_the_fused_module_name() -> None:
    class Converted:
        layers = {
            "lora_transformer-double_blocks.1.img_attn.qkv": StandInMerged(
                [_part(3072, 1)], [StandInRange(0, 3072)]
            ),
            "lora_transformer-single_blocks.1.linear1": StandInMerged(
                [_part(3072, 2)], [StandInRange(3072, 6144)]
            ),
        }

    loader = object.__new__(invokeai.InvokeAILoader)
    out = loader.deltas(Converted())
    assert out["transformer.double_blocks.1.img_attn.qkv"].out_features == 3 * 3072
    assert out["transformer.single_blocks.1.linear1"].out_features == 7 * 3072


def _entry_raising(exc: BaseException):
    def fake_import(name: str, package: str | None = None) -> Any:
        assert name == invokeai.APP_ENTRY
        raise exc

    return fake_import


def test_app_entry_tolerates_only_a_missing_third_party_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = ModuleNotFoundError("No module named 'diffusers'", name="diffusers")
    monkeypatch.setattr(importlib, "import_module", _entry_raising(missing))
    invokeai._import_app_entry()  # a no-deps cell: the converters' own import decides
    own = ModuleNotFoundError("No module named 'invokeai.x'", name="invokeai.x")
    monkeypatch.setattr(importlib, "import_module", _entry_raising(own))
    with pytest.raises(ModuleNotFoundError):
        invokeai._import_app_entry()
    broken = ImportError("cannot import name 'x' (most likely due to a circular import)")
    monkeypatch.setattr(importlib, "import_module", _entry_raising(broken))
    with pytest.raises(ImportError, match="circular"):
        invokeai._import_app_entry()
