"""A constructor that leaves a parameter as ``torch.empty`` (diffusers 0.37 Z-Image's pad
tokens, filled only by ``from_pretrained``) must not hand the zoo whatever memory held: the
same seed gives the same finite weights in every build, and the record names them."""

from __future__ import annotations

import sys
import types

import pytest

torch = pytest.importorskip("torch")

from harness.inputs.models.build import build_component  # noqa: E402
from harness.inputs.models.specs import Component  # noqa: E402


class PadTokenModel(torch.nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(dim, dim)
        self.pad_token = torch.nn.Parameter(torch.empty((1, dim)))  # left for loading
        mask = torch.full((dim, dim), float("-inf")).triu(1)  # -inf on purpose
        self.register_buffer("mask", mask)


@pytest.fixture
def fake_library(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("fake_models_lib")
    module.PadTokenModel = PadTokenModel
    monkeypatch.setitem(sys.modules, "fake_models_lib", module)
    return "fake_models_lib"


def test_unset_parameters_are_drawn_from_the_seed(fake_library: str) -> None:
    component = Component(fake_library, "PadTokenModel", {"dim": 8})
    first, second = build_component(component, seed=3), build_component(component, seed=3)
    assert "pad_token" in first.reinitialised
    assert torch.isfinite(first.obj.pad_token).all()
    assert torch.equal(first.obj.pad_token, second.obj.pad_token)
    assert torch.equal(first.obj.proj.weight, second.obj.proj.weight)
    assert not torch.are_deterministic_algorithms_enabled()  # the switch is put back
    assert "mask" not in first.reinitialised  # a deliberate -inf buffer stays as built
    assert torch.isneginf(first.obj.mask).sum() == 8 * 7 // 2
