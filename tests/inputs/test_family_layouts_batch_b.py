"""The batch-B layout tables (Ideogram4, MiniMax-H3, ACE-Step, Anima, Flux3) against the
layout oracle on the families' tiny models: keys spelled as each trainer spells them, and
the reference's delta for the rows it reorders or splits read off hand-picked keys."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from harness.inputs.checkpoints.lora.layouts import layout_of  # noqa: E402
from harness.inputs.families.layouts import LAYOUTS, row_order, write_layout_lora  # noqa: E402
from harness.inputs.families.pipelines import FamilyZoo  # noqa: E402
from harness.inputs.families.table import FAMILIES  # noqa: E402
from harness.oracles.lora_layouts import layout_reference  # noqa: E402

BATCH_B = ("ideogram4", "minimax-h3", "acestep", "anima", "anima-text-conditioner", "flux3")


@pytest.fixture(scope="module")
def layers() -> dict:
    zoo = FamilyZoo(device=torch.device("cpu"), dtype=torch.float32)
    out = {}
    for name in BATCH_B:
        family = FAMILIES[name]
        out[name] = layout_of(getattr(zoo.get(family), family.attr)).layers
    return out


def test_trainer_spellings(layers: dict) -> None:
    musubi = write_layout_lora(LAYOUTS["minimax-h3-musubi"], layers["minimax-h3"])
    assert "lora_unet_token_refiner_blocks_0_mlp_fc1.lora_down.weight" in musubi.state_dict
    assert "lora_unet_blocks_1_adaln_proj_linear.alpha" in musubi.state_dict
    bare = write_layout_lora(LAYOUTS["minimax-h3-original-downup"], layers["minimax-h3"])
    assert "blocks.0.attn.qkv_proj.lora_up.weight" in bare.state_dict  # no prefix at all
    ace = write_layout_lora(LAYOUTS["acestep-peft"], layers["acestep"])
    assert "base_model.model.layers.1.cross_attn.o_proj.lora_B.weight" in ace.state_dict
    adapter = write_layout_lora(
        LAYOUTS["anima-text-conditioner-original"], layers["anima-text-conditioner"]
    )
    assert "diffusion_model.llm_adapter.blocks.0.mlp.2.lora_A.weight" in adapter.state_dict
    flux3 = write_layout_lora(LAYOUTS["flux3-original"], layers["flux3"])
    assert "diffusion_model.content_mode_blocks.image_cond.0.attn_out.lora_A.weight" in (
        flux3.state_dict
    )
    conditional = write_layout_lora(LAYOUTS["ideogram4-conditional"], layers["ideogram4"])
    assert all(k.startswith("conditional_transformer.layers.") for k in conditional.state_dict)


def test_row_order_applies_to_the_swapped_layer_only() -> None:
    layout = LAYOUTS["minimax-h3-aitoolkit"]
    assert row_order(layout, "blocks.1.mlp.fc1") == (1, 0)
    assert row_order(layout, "token_refiner.blocks.0.mlp.fc1") == (1, 0)
    assert row_order(layout, "blocks.1.mlp.fc2") == ()
    assert row_order(layout, "blocks.1.attn.qkv_proj") == ()


def test_reference_swaps_the_swiglu_halves(layers: dict) -> None:
    """H3's ``fc1`` up rows are ``[gate; value]``; diffusers' proj holds ``[value; gate]``."""
    layout = LAYOUTS["minimax-h3-original-downup"]
    built = write_layout_lora(layout, layers["minimax-h3"], rank=4, alpha=2.0, seed=5)
    sd = built.state_dict
    ref = layout_reference(sd, layout, "transformer", layers["minimax-h3"])
    up = sd["blocks.1.mlp.fc1.lora_up.weight"].double()
    down = sd["blocks.1.mlp.fc1.lora_down.weight"].double()
    gate, value = up.chunk(2, dim=0)
    expected = 0.5 * torch.cat([value, gate]) @ down
    delta = ref.delta("transformer", "transformer_blocks.1.ff.net.0.proj")
    torch.testing.assert_close(delta, expected)
    assert not torch.allclose(delta, 0.5 * up @ down)  # the halves differ: the swap shows


def test_reference_splits_ideogram4_qkv(layers: dict) -> None:
    layout = LAYOUTS["ideogram4-aitoolkit"]
    built = write_layout_lora(layout, layers["ideogram4"], seed=6)
    sd = built.state_dict
    ref = layout_reference(sd, layout, "transformer", layers["ideogram4"])
    stem = "diffusion_model.layers.0.attention.qkv"
    up, down = sd[f"{stem}.lora_B.weight"].double(), sd[f"{stem}.lora_A.weight"].double()
    width = layers["ideogram4"]["layers.0.attention.to_v"].out_features
    expected = up[2 * width :] @ down  # v: the last rows, scale 1 (no alpha)
    torch.testing.assert_close(ref.delta("transformer", "layers.0.attention.to_v"), expected)
