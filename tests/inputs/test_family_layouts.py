"""The non-diffusers layout tables and writer against the layout oracle, on the families'
tiny models of the installed diffusers (and, for converters that hard-code widths, their
real-width meta models): every block Linear is named by each layout, every module of a
group outside the blocks exists, width-pinned rules place modules only at real width, the
keys are spelled as the trainers spell them, and the reference reads alpha, fused rows,
strays and lone tensors from the file alone (values checked against hand-picked keys)."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from harness.inputs.checkpoints.lora.layouts import layout_of  # noqa: E402
from harness.inputs.families.layouts import (  # noqa: E402
    LAYOUT_LIST,
    LAYOUTS,
    MAX_BLOCKS,
    expand,
    write_layout_lora,
)
from harness.inputs.families.pipelines import FamilyZoo  # noqa: E402
from harness.inputs.families.table import FAMILIES  # noqa: E402
from harness.oracles.lora_layouts import layout_reference  # noqa: E402


@pytest.fixture(scope="module")
def layers() -> dict:
    zoo = FamilyZoo(device=torch.device("cpu"), dtype=torch.float32)
    out = {}
    for name in sorted({layout.family for layout in LAYOUT_LIST}):
        family = FAMILIES[name]
        out[name] = layout_of(getattr(zoo.get(family), family.attr)).layers
    return out


def _pinned_targets(layout, model: dict) -> set[str]:
    """Targets of the width-pinned rules wherever the model has their modules."""
    out: set[str] = set()
    for rule in layout.rules:
        for i in range(MAX_BLOCKS) if rule.widths else ():
            targets = {t.format(i=i) for t in rule.targets}
            if not targets <= set(model):
                break
            out |= targets
    return out


@pytest.mark.parametrize("layout", LAYOUT_LIST, ids=lambda layout: layout.row)
def test_layout_names_every_block_linear(layers: dict, layout) -> None:
    """Tiny model: every block Linear is named, except the parts of width-pinned rules
    (which must then place nothing); each group outside the blocks places every rule."""
    model = layers[layout.family]
    named = {t for targets in expand(layout, model).values() for t in targets}
    pinned = _pinned_targets(layout, model)
    prefixes = FAMILIES[layout.family].blocks
    blocks = {p for p, layer in model.items() if p.startswith(prefixes) and not layer.conv}
    assert blocks and blocks <= named | pinned, sorted(blocks - named - pinned)
    assert not named & pinned, sorted(named & pinned)  # a tiny model cannot take them
    assert layout.tiny_rows or pinned  # no tiny rows only where widths are pinned
    for name, rules in layout.extras:
        placed = expand(layout, model, extras=(name,))
        missing = [r.source for r in rules if r.source.replace("{i}", "0") not in placed]
        assert not missing, (name, missing)


@pytest.mark.parametrize(
    "layout", [x for x in LAYOUT_LIST if x.real_config], ids=lambda layout: layout.row
)
def test_real_width_model_takes_every_rule(layout) -> None:
    """At the published widths every block Linear is named, width-pinned rules included."""
    from harness.inputs.families.real_width import real_width_layers

    model, _ = real_width_layers(layout)
    named = {t for targets in expand(layout, model).values() for t in targets}
    prefixes = FAMILIES[layout.family].blocks
    blocks = {p for p, layer in model.items() if p.startswith(prefixes) and not layer.conv}
    assert blocks and blocks <= named, sorted(blocks - named)
    assert _pinned_targets(layout, model) <= named


def test_width_pinned_rule_places_only_at_real_width(layers: dict) -> None:
    from harness.inputs.families.real_width import real_width_layers

    layout = LAYOUTS["hunyuanvideo-original"]
    assert "single_blocks.0.linear1" not in expand(layout, layers["hunyuanvideo"])
    real, _ = real_width_layers(layout)
    parts = expand(layout, real)["single_blocks.0.linear1"]
    assert parts[-1] == "single_transformer_blocks.0.proj_mlp"
    built = write_layout_lora(layout, real, rank=2, alpha=None, seed=5)
    sd = built.state_dict
    stem = "diffusion_model.single_blocks.0.linear1"
    up, down = sd[f"{stem}.lora_B.weight"].double(), sd[f"{stem}.lora_A.weight"].double()
    assert up.shape[0] == 3 * 3072 + real[parts[-1]].out_features
    ref = layout_reference(sd, layout, "transformer", real)
    torch.testing.assert_close(
        ref.delta("transformer", "single_transformer_blocks.0.attn.to_v"), up[6144:9216] @ down
    )
    torch.testing.assert_close(ref.delta("transformer", parts[-1]), up[9216:] @ down)


def test_extras_are_written_only_when_asked(layers: dict) -> None:
    layout = LAYOUTS["wan-original-ab"]
    plain = write_layout_lora(layout, layers["wan"])
    assert not any("head.head" in k for k in plain.state_dict)
    outer = write_layout_lora(layout, layers["wan"], extras=("outer",))
    assert "diffusion_model.head.head.lora_A.weight" in outer.state_dict
    assert "diffusion_model.time_projection.1.alpha" in outer.state_dict
    ref = layout_reference(outer.state_dict, layout, "transformer", layers["wan"])
    assert not ref.unknown_keys
    assert ("transformer", "condition_embedder.time_proj") in ref.terms
    assert ("transformer", "proj_out") in ref.terms


def test_new_layouts_spell_keys_as_their_trainers(layers: dict) -> None:
    fused = write_layout_lora(LAYOUTS["zimage-kohya-fused"], layers["zimage"]).state_dict
    dim = layers["zimage"]["layers.0.attention.to_q"].out_features
    assert fused["lora_unet_layers_0_attention_qkv.lora_up.weight"].shape[0] == 3 * dim
    assert "lora_unet_noise_refiner_0_attention_out.alpha" in fused
    assert "lora_unet_context_refiner_0_feed_forward_w2.lora_down.weight" in fused
    peft = write_layout_lora(LAYOUTS["zimage-peft-default"], layers["zimage"]).state_dict
    assert "layers.1.adaLN_modulation.0.lora_B.default.weight" in peft
    hunyuan = write_layout_lora(LAYOUTS["hunyuanvideo-transformer-prefix"], layers["hunyuanvideo"])
    assert "transformer.double_blocks.0.txt_attn_qkv.lora_A.weight" in hunyuan.state_dict
    assert "transformer.single_blocks.0.modulation.linear.lora_B.weight" in hunyuan.state_dict
    ltx = write_layout_lora(LAYOUTS["ltxvideo-original"], layers["ltxvideo"]).state_dict
    assert "diffusion_model.transformer_blocks.0.attn2.to_out.0.lora_A.weight" in ltx


def test_trainer_spellings(layers: dict) -> None:
    musubi = write_layout_lora(LAYOUTS["wan-musubi"], layers["wan"])
    assert "lora_unet_blocks_1_ffn_2.lora_down.weight" in musubi.state_dict
    assert "lora_unet_blocks_0_cross_attn_o.alpha" in musubi.state_dict
    original = write_layout_lora(LAYOUTS["wan-original-ab"], layers["wan"])
    assert "diffusion_model.blocks.0.self_attn.q.lora_B.weight" in original.state_dict
    kohya = write_layout_lora(LAYOUTS["flux2-kohya"], layers["flux2"])
    assert kohya.state_dict["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"].shape[0] == (
        3 * layers["flux2"]["transformer_blocks.0.attn.to_q"].out_features
    )
    ait = write_layout_lora(LAYOUTS["flux2-aitoolkit"], layers["flux2"])
    assert not any(k.endswith(".alpha") for k in ait.state_dict)


def test_reference_reads_alpha_from_the_module_key(layers: dict) -> None:
    layout = LAYOUTS["wan-musubi"]
    built = write_layout_lora(layout, layers["wan"], rank=4, alpha=2.0, seed=3)
    sd = built.state_dict
    ref = layout_reference(sd, layout, "transformer", layers["wan"])
    stem = "lora_unet_blocks_1_ffn_0"
    expected = 0.5 * sd[f"{stem}.lora_up.weight"].double() @ sd[f"{stem}.lora_down.weight"].double()
    torch.testing.assert_close(ref.delta("transformer", "blocks.1.ffn.net.0.proj"), expected)
    del sd[f"{stem}.alpha"]  # no alpha: scale 1
    ref = layout_reference(sd, layout, "transformer", layers["wan"])
    torch.testing.assert_close(ref.delta("transformer", "blocks.1.ffn.net.0.proj"), 2 * expected)


def test_reference_splits_a_fused_layer_by_rows(layers: dict) -> None:
    layout = LAYOUTS["flux2-aitoolkit"]
    built = write_layout_lora(layout, layers["flux2"], seed=4)
    sd = built.state_dict
    ref = layout_reference(sd, layout, "transformer", layers["flux2"])
    stem = "diffusion_model.double_blocks.0.txt_attn.qkv"
    up, down = sd[f"{stem}.lora_B.weight"].double(), sd[f"{stem}.lora_A.weight"].double()
    width = layers["flux2"]["transformer_blocks.0.attn.add_k_proj"].out_features
    expected = up[width : 2 * width] @ down  # k: the middle rows, scale 1 (no alpha)
    torch.testing.assert_close(
        ref.delta("transformer", "transformer_blocks.0.attn.add_k_proj"), expected
    )


def test_reference_sets_aside_strays_and_lone_tensors(layers: dict) -> None:
    layout = LAYOUTS["qwenimage-kohya"]
    built = write_layout_lora(layout, layers["qwenimage"], stray=True)
    assert built.stray_keys and all("bogus0" in k for k in built.stray_keys)
    sd = dict(built.state_dict)
    lone = "lora_unet_transformer_blocks_1_attn_to_v.lora_up.weight"
    del sd["lora_unet_transformer_blocks_1_attn_to_v.lora_down.weight"]
    ref = layout_reference(sd, layout, "transformer", layers["qwenimage"])
    assert set(built.stray_keys) < set(ref.unknown_keys)
    assert lone in ref.unknown_keys
    assert ("transformer", "transformer_blocks.1.attn.to_v") not in ref.terms
    assert ("transformer", "transformer_blocks.1.attn.to_q") in ref.terms


def test_partial_case_leaves_out_one_module(layers: dict) -> None:
    for layout in LAYOUT_LIST:
        missing, group = layout.partial
        assert missing in group
        full = write_layout_lora(layout, layers[layout.family])
        part = write_layout_lora(layout, layers[layout.family], omit=(missing,))
        assert set(full.modules) - set(part.modules) == {missing}, layout.row


def test_reference_reads_difference_keys(layers: dict) -> None:
    """``.diff_b`` moves the bias by itself (scale 1, whatever the alpha), a pair's weight
    delta is unchanged by it; a full ``.diff`` is the weight delta itself; a ``.diff`` of a
    parameter no rule places is a stray key."""
    layout, model = LAYOUTS["wan-original-downup"], layers["wan"]
    assert layout.cases()[-3:] == ("with-diff_b", "with-head-diff", "with-modulation-diff")
    assert not LAYOUTS["wan-musubi"].diff_cases()
    built = write_layout_lora(layout, model, seed=7, extras=("outer",), diffs=("diff_b",))
    sd = built.state_dict
    assert "diffusion_model.head.head.diff_b" in sd
    ref = layout_reference(sd, layout, "transformer", model)
    assert not ref.unknown_keys
    stem = "diffusion_model.blocks.1.ffn.2"
    torch.testing.assert_close(
        ref.bias_delta("transformer", "blocks.1.ffn.net.2"), sd[f"{stem}.diff_b"].double()
    )
    pair = sd[f"{stem}.lora_up.weight"].double() @ sd[f"{stem}.lora_down.weight"].double()
    torch.testing.assert_close(ref.delta("transformer", "blocks.1.ffn.net.2"), 0.5 * pair)
    full = write_layout_lora(layout, model, seed=7, diffs=("full",)).state_dict
    assert not any(k.startswith("diffusion_model.head.head.lora") for k in full)
    ref = layout_reference(full, layout, "transformer", model)
    head = "diffusion_model.head.head"
    torch.testing.assert_close(ref.delta("transformer", "proj_out"), full[f"{head}.diff"].double())
    torch.testing.assert_close(
        ref.bias_delta("transformer", "proj_out"), full[f"{head}.diff_b"].double()
    )
    unplaced = write_layout_lora(layout, model, diffs=("unplaced",))
    key = "diffusion_model.blocks.0.modulation.diff"
    assert unplaced.stray_keys == [key]
    assert unplaced.state_dict[key].shape == (1, 6, model["blocks.0.attn1.to_q"].out_features)
    assert layout_reference(unplaced.state_dict, layout, "transformer", model).unknown_keys == [key]


def test_i2v_layout_reaches_the_image_branch(layers: dict) -> None:
    """Wan I2V: ``cross_attn.k_img`` / ``v_img`` are ``attn2.add_k_proj`` / ``add_v_proj``
    in every block, ``img_emb.proj.1`` / ``.3`` the image embedder's feed-forward; the T2V
    model has none of them."""
    layout, model = LAYOUTS["wan-i2v-original-downup"], layers["wan-i2v"]
    table = expand(layout, model, extras=None)
    assert table["blocks.1.cross_attn.v_img"] == ("blocks.1.attn2.add_v_proj",)
    assert table["img_emb.proj.3"] == ("condition_embedder.image_embedder.ff.net.2",)
    assert not any("k_img" in s or "img_emb" in s for s in expand(layout, layers["wan"], None))
    assert layout.partial_case() == "partial-no-k_img"
    built = write_layout_lora(layout, model, seed=2, extras=("image",))
    sd = built.state_dict
    ref = layout_reference(sd, layout, "transformer", model)
    assert not ref.unknown_keys
    stem = "diffusion_model.blocks.0.cross_attn.k_img"
    expected = 0.5 * sd[f"{stem}.lora_up.weight"].double() @ sd[f"{stem}.lora_down.weight"].double()
    torch.testing.assert_close(ref.delta("transformer", "blocks.0.attn2.add_k_proj"), expected)
    assert ("transformer", "condition_embedder.image_embedder.ff.net.0.proj") in ref.terms
