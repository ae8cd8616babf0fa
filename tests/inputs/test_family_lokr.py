"""The LoKr spellings and writer on the families' tiny models of the installed diffusers:
every block Linear is named by each spelling, keys are spelled as the trainers spell them,
factor shapes follow LyCORIS's rules (cross-read with peft's copy of its ``factorization``),
and the written file's reference has one term per module, with alpha read as defined."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
peft_lokr = pytest.importorskip("peft.tuners.lokr.layer")

from harness.inputs.checkpoints.lora.layouts import layout_of  # noqa: E402
from harness.inputs.families.lokr import (  # noqa: E402
    FORMS,
    LOKR_LAYOUT_LIST,
    LOKR_LAYOUTS,
    factor_shapes,
    kron_split,
    lokr_modules,
    write_lokr,
)
from harness.inputs.families.pipelines import FamilyZoo  # noqa: E402
from harness.inputs.families.table import FAMILIES  # noqa: E402
from harness.oracles.lokr import lokr_reference  # noqa: E402


@pytest.fixture(scope="module")
def layers() -> dict:
    zoo = FamilyZoo(device=torch.device("cpu"), dtype=torch.float32)
    out = {}
    for name in sorted({layout.family for layout in LOKR_LAYOUT_LIST}):
        family = FAMILIES[name]
        out[name] = layout_of(getattr(zoo.get(family), family.attr)).layers
    return out


@pytest.mark.parametrize("layout", LOKR_LAYOUT_LIST, ids=lambda layout: layout.row)
def test_spelling_names_every_block_linear(layers: dict, layout) -> None:
    model = layers[layout.family]
    named = {t for targets in lokr_modules(layout, model).values() for t in targets}
    prefixes = FAMILIES[layout.family].blocks
    blocks = {p for p, layer in model.items() if p.startswith(prefixes) and not layer.conv}
    assert blocks and blocks == named, sorted(blocks ^ named)


@pytest.mark.parametrize(
    ("dim", "factor", "expected"),
    [(32, -1, (4, 8)), (85, -1, (5, 17)), (224, -1, (14, 16)), (96, -1, (8, 12)),
     (64, -1, (8, 8)), (32, 4, (4, 8)), (32, 3, (2, 16)), (13, -1, (1, 13))],
)  # fmt: skip
def test_kron_split_by_hand_and_as_peft_cuts(dim: int, factor: int, expected: tuple) -> None:
    assert kron_split(dim, factor) == expected
    assert tuple(peft_lokr.factorization(dim, factor)) == expected


def test_kron_split_puts_the_small_side_first() -> None:
    """A dividing factor above the square root: current LyCORIS orders the sides small
    first (peft's copy of an older LyCORIS returns ``(factor, rest)``); the writer follows
    LyCORIS, and the tiny rows use factor -1, where both agree."""
    assert kron_split(32, 16) == (2, 16)


def test_factor_forms_follow_the_rank_rule() -> None:
    # 32 x 32, factor -1: w1 4 x 4, w2 8 x 8; rank 2 < 8 / 2 splits w2, 2 < 4 / 2 does not split w1
    assert set(factor_shapes(32, 32, FORMS["full"], -1)) == {"lokr_w1", "lokr_w2"}
    assert factor_shapes(32, 32, FORMS["lowrank"], -1) == {
        "lokr_w1": (4, 4),
        "lokr_w2_a": (8, 2),
        "lokr_w2_b": (2, 8),
    }
    assert set(factor_shapes(32, 32, FORMS["both-lowrank"], -1)) == {
        "lokr_w1",
        "lokr_w2_a",
        "lokr_w2_b",
    }
    # 128 x 32: w1 8 x 4 (2 < 8 / 2), so decompose_both splits it too
    assert factor_shapes(128, 32, FORMS["both-lowrank"], -1) == {
        "lokr_w1_a": (8, 2),
        "lokr_w1_b": (2, 4),
        "lokr_w2_a": (16, 2),
        "lokr_w2_b": (2, 8),
    }


def test_trainer_spellings(layers: dict) -> None:
    lycoris = write_lokr(LOKR_LAYOUTS["flux2-lokr-lycoris"], layers["flux2"])
    assert "lycoris_transformer_blocks_0_attn_to_q.lokr_w2_a" in lycoris.state_dict
    assert "lycoris_single_transformer_blocks_0_attn_to_qkv_mlp_proj.alpha" in lycoris.state_dict
    ait = write_lokr(LOKR_LAYOUTS["flux2-lokr-aitoolkit"], layers["flux2"], form="full")
    w1 = ait.state_dict["diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1"]
    w2 = ait.state_dict["diffusion_model.double_blocks.0.img_attn.qkv.lokr_w2"]
    width = layers["flux2"]["transformer_blocks.0.attn.to_q"].out_features
    assert w1.shape[0] * w2.shape[0] == 3 * width  # one Kronecker delta over fused q/k/v
    # whole factors: LyCORIS saves its forced alpha (the full-matrix dim), not a scale
    assert float(ait.state_dict["diffusion_model.double_blocks.0.img_attn.qkv.alpha"]) == 10000
    peft = write_lokr(LOKR_LAYOUTS["flux2-lokr-peft"], layers["flux2"])
    assert "transformer.transformer_blocks.0.attn.to_q.lokr_w1" in peft.state_dict
    assert not any(k.endswith(".alpha") for k in peft.state_dict)
    zimage = write_lokr(LOKR_LAYOUTS["zimage-lokr-aitoolkit"], layers["zimage"])
    assert "diffusion_model.layers.1.feed_forward.w2.lokr_w2_b" in zimage.state_dict


def test_reference_of_a_written_file(layers: dict) -> None:
    layout = LOKR_LAYOUTS["flux2-lokr-dotted"]
    built = write_lokr(layout, layers["flux2"], form="lowrank", alpha=1.0, seed=3)
    sd = built.state_dict
    ref = lokr_reference(sd, layout, "transformer", layers["flux2"])
    assert ref.unknown_keys == []
    stem = "transformer_blocks.0.ff.linear_in"
    w2 = sd[f"{stem}.lokr_w2_a"].double() @ sd[f"{stem}.lokr_w2_b"].double()
    expected = 0.5 * torch.kron(sd[f"{stem}.lokr_w1"].double(), w2)  # alpha 1 / rank 2
    torch.testing.assert_close(ref.delta("transformer", stem), expected)
    stray = write_lokr(layout, layers["flux2"], stray=True)
    ref = lokr_reference(stray.state_dict, layout, "transformer", layers["flux2"])
    assert sorted(ref.unknown_keys) == sorted(stray.stray_keys) and stray.stray_keys
