"""The lifecycle pure model and the repro-script generator, without diffusers."""

from __future__ import annotations

import ast

from harness.scenarios.lifecycle.model import LifecycleModel

U1, U2, T1 = ("unet", "a"), ("unet", "b"), ("text_encoder", "q")


def test_load_activates_per_component() -> None:
    m = LifecycleModel()
    m.load("style", "A", [U1, T1])
    m.load("detail", "B", [U1, U2])
    assert m.contributions(U1) == [("B", 1.0)]  # peft >= 0.10: the new adapter is active
    assert m.contributions(T1) == [("A", 1.0)]  # text encoder untouched by B
    old = LifecycleModel()
    old.load("style", "A", [U1, T1], activate=False)
    old.load("detail", "B", [U1, U2], activate=False)
    assert old.contributions(U1) == [("A", 1.0)] and old.contributions(U2) == [("B", 1.0)]


def test_weights_fuse_unload_bakes() -> None:
    m = LifecycleModel()
    m.load("style", "A", [U1])
    m.load("detail", "B", [U1])
    m.set_adapters(["style", "detail"], [0.5, 2.0])
    assert m.contributions(U1) == [("A", 0.5), ("B", 2.0)]
    m.fuse()
    m.unload()
    assert m.contributions(U1) == [("A", 0.5), ("B", 2.0)]  # fuse + unload keeps the fold
    assert not m.adapters and not m.layers


def test_disable_delete_hotswap() -> None:
    m = LifecycleModel()
    m.load("style", "A", [U1, U2])
    m.fuse()
    m.disable()
    assert m.contributions(U1) == [] and not m.fused
    m.enable()
    m.load("detail", "B", [U1])
    m.delete("detail")
    assert m.contributions(U1) == [("A", 1.0)]  # first remaining adapter re-activated
    m.set_adapters(["style"], [0.5])
    m.hotswap("style", "C", [U1])
    assert m.contributions(U1) == [("C", 1.0)]  # weight reset by peft's _update_scaling
    assert m.contributions(U2) == []  # zeroed: not in the new file


def test_repro_template_is_python() -> None:
    from harness.scenarios.lifecycle.scripts import TEMPLATE

    ast.parse(TEMPLATE.replace("@DATA@", repr("{}")))
