"""``check``'s reading of a user's file before any cell runs (stdlib only, no torch):
architecture from block structure and widths, placement ("not understood"), layouts it
recognises but does not check (LoKR, LoHa), truncated data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.byo import arch as arch_rules
from harness.byo import data_problem, read_header, truncation
from harness.byo.lora import detect, placement, understand_file
from harness.byo.unsupported import recognise
from tests.byo.files import write_file

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "fixtures" / "lora"


def manifest(arch: str, fmt: str) -> dict[str, list[int]]:
    keys = json.loads((MANIFESTS / f"manifest-{arch}-{fmt}.json").read_text())["keys"]
    return {k: v[0] for k, v in keys.items()}


def sdxl_without_cross_attention() -> dict[str, list[int]]:
    """The issue's file: kohya keys with diffusers block names on SDXL's UNet, no attn2
    (the old rule "``lora_unet_`` without ``attn2`` is SD1.5" judged it as SD1.5)."""
    shapes = {}
    for key, shape in manifest("sdxl", "peft").items():
        if key.startswith("unet.") and "attn2" not in key:
            stem = "lora_unet_" + key[len("unet.") : -len(".lora_A.weight")].replace(".", "_")
            role = "lora_down" if key.endswith(".lora_A.weight") else "lora_up"
            shapes[f"{stem}.{role}.weight"] = shape
            shapes[f"{stem}.alpha"] = []
    return shapes


def test_sdxl_with_diffusers_block_names_is_sdxl() -> None:
    shapes = sdxl_without_cross_attention()
    found = detect(list(shapes), shapes)
    assert found is not None and (found.format, found.arch) == ("kohya_diffusers", "sdxl")
    assert any("transformer depth" in fact for fact in found.evidence.seen)
    placed = placement(found, list(shapes))
    assert placed.understood and not placed.unplaced and placed.modules == len(shapes) // 3


def test_sdxl_read_as_sd15_is_not_understood_never_a_pass(monkeypatch) -> None:
    """Planted: the old key-absence rule. The file is then read against SD1.5 and most of
    its keys place nowhere: "not understood", with the families listed, not a pass."""
    shapes = sdxl_without_cross_attention()
    monkeypatch.setattr(
        "harness.byo.lora.identify",
        lambda keys, shapes=None: arch_rules.ArchEvidence("sd15", ("lora_unet_, no attn2",)),
    )
    found = detect(list(shapes), shapes)
    assert found.arch == "sd15"
    placed = placement(found, list(shapes))
    assert not placed.understood and len(placed.unplaced) > len(shapes) / 2
    line = placed.verdict("sd15")
    assert line.startswith("not understood:") and "module(s) placed" in line
    assert "lora_unet_down_blocks_N_attentions_N" in line


@pytest.mark.parametrize(
    "arch,fmt,drop",
    [
        ("sd15", "kohya", "attn2"),  # SD1.5 without cross-attention: block structure
        ("sdxl", "kohya", "attn2"),  # SGM names
        ("sdxl", "peft", "attn2"),
        ("sdxl", "peft", r"transformer_blocks\.[1-9]"),  # depth 1: width, up block 0
        ("flux", "peft", "single_transformer_blocks"),  # double-stream only: width 3072
    ],
)
def test_architecture_from_structure_and_widths(arch: str, fmt: str, drop: str) -> None:
    shapes = {k: s for k, s in manifest(arch, fmt).items() if not re.search(drop, k)}
    assert arch_rules.identify(list(shapes), shapes).arch == arch


def test_sd3_peft_file_is_checked_against_the_sd3_layout() -> None:
    """SD3-medium PEFT keys: identified as SD3 (joint-attention width 1536) and every module
    placed in the committed SD3 layout, so ``check`` judges it like an SD1.5 / SDXL / Flux
    file instead of refusing it."""
    shapes = manifest("sd3", "peft")
    found = detect(list(shapes), shapes)
    assert found is not None and (found.format, found.arch) == ("peft", "sd3")
    placed = placement(found, list(shapes))
    assert placed.understood and not placed.unplaced
    assert placed.modules == len(shapes) // 2


def test_an_architecture_without_a_layout_is_named_and_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """SD2.x (cross-attention width 1024) has no committed layout: one line naming it and
    what is covered, never a pass on nothing."""
    shapes = {}
    for block in range(3):
        for name in ("to_q", "to_k", "to_v"):
            stem = f"unet.down_blocks.{block}.attentions.0.transformer_blocks.0.attn2.{name}"
            width = 320 * min(2**block, 4)
            shapes[f"{stem}.lora_A.weight"] = [4, width if name == "to_q" else 1024]
            shapes[f"{stem}.lora_B.weight"] = [width, 4]
    found = detect(list(shapes), shapes)
    assert found is not None and found.arch == "sd2"
    line = understand_file(read_header(write_file(tmp_path / "sd2.safetensors", shapes)))
    assert "SD2.x" in line and "SD1.5, SDXL, SD3, Flux only" in line and "\n" not in line


def test_zero_placeable_modules_is_not_understood(tmp_path: Path) -> None:
    """SDXL block structure, layer names that exist in no model: nothing to judge."""
    shapes = {}
    for i in range(4):
        stem = f"lora_unet_down_blocks_1_attentions_0_transformer_blocks_{i}_attn1_to_qq"
        shapes[f"{stem}.lora_down.weight"] = [4, 640]
        shapes[f"{stem}.lora_up.weight"] = [640, 4]
    user = read_header(write_file(tmp_path / "odd.safetensors", shapes))
    line = understand_file(user)
    assert line.startswith("not understood: 8 of 8 keys") and "(0 module(s) placed)" in line
    assert "lora_unet_down_blocks_N_attentions_N (8)" in line


@pytest.mark.parametrize(
    "suffixes,name",
    [(("lokr_w1", "lokr_w2", "alpha"), "LoKR"), (("hada_w1_a", "hada_w1_b", "hada_w2_a"), "LoHa")],
)
def test_lycoris_layouts_are_named(suffixes: tuple[str, ...], name: str) -> None:
    keys = [f"lora_unet_down_blocks_{i}_attn1_to_q.{s}" for i in range(5) for s in suffixes]
    line = recognise(keys)
    assert line is not None and line.startswith(name)
    assert recognise(list(manifest("sd15", "kohya"))) is None  # a LoRA is not LoKR


def test_truncated_data_is_named_with_the_tensor(tmp_path: Path) -> None:
    shapes = {"a.lora_down.weight": [4, 8], "a.lora_up.weight": [8, 4]}
    whole = read_header(write_file(tmp_path / "whole.safetensors", shapes))
    assert truncation(whole) is None and data_problem(whole) is None
    cut = read_header(write_file(tmp_path / "cut.safetensors", shapes, cut=10))
    message = truncation(cut)
    assert "truncated" in message and "a.lora_up.weight" in message and "128 bytes" in message
    assert data_problem(cut) == message
