"""Unit tests of two writer / reference pairs: XLabs' single-block keys (the q/k/v rows of
``linear1`` only, ``linear2`` whole) and Wan's norm differences (original names -> the
diffusers parameters), with the param-difference oracle's three outcomes.

Pure torch (no diffusers): hand-written layouts and parameter shapes; every expected key,
shape and row range is written out by hand from x-flux's processors and Wan's model code.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.inputs.checkpoints.lora.cases import candidates, full_case, realise  # noqa: E402
from harness.inputs.checkpoints.lora.formats import FORMATS, expressible  # noqa: E402
from harness.inputs.families.wan_norm_diffs import norm_diff_targets, write_norm_diffs  # noqa: E402
from harness.oracles.lora import parse  # noqa: E402
from harness.oracles.param_diffs import compare_params, expected_params  # noqa: E402
from tests.inputs.tiny_flux_layout import D, flux_layout  # noqa: E402

XLABS = FORMATS["xlabs"]


def test_xlabs_single_blocks_are_optional() -> None:
    layout = flux_layout()
    plain = {g.native for g, _ in expressible(XLABS, "flux", layout)}
    assert plain == {
        "double_blocks.0.img_attn.qkv",
        "double_blocks.0.img_attn.proj",
        "double_blocks.0.txt_attn.qkv",
        "double_blocks.0.txt_attn.proj",
    }
    wide = {g.native for g, _ in expressible(XLABS, "flux", layout, ("single-blocks",))}
    assert wide - plain == {"single_blocks.0.linear1", "single_blocks.0.linear2"}


def test_xlabs_single_block_keys_shapes_and_rows() -> None:
    """``qkv_lora``: up 3 x D high (not linear1's 7 x D), rows q | k | v; ``proj_lora``:
    down 5 x D wide (linear2's input); nothing on ``proj_mlp``; eligible on a tiny model."""
    layout = flux_layout()
    cands = candidates(XLABS, "flux", layout, families=("single-blocks",))
    assert "single_blocks.0.linear1" in {g.native for g, _ in cands}
    case = full_case(XLABS, "flux", layout, rank=2, families=("single-blocks",))
    sd = realise(XLABS, "flux", layout, case).state_dict
    qkv, proj = "single_blocks.0.processor.qkv_lora", "single_blocks.0.processor.proj_lora"
    assert tuple(sd[f"{qkv}.down.weight"].shape) == (2, D)
    assert tuple(sd[f"{qkv}.up.weight"].shape) == (3 * D, 2)
    assert tuple(sd[f"{proj}.down.weight"].shape) == (2, 5 * D)
    assert tuple(sd[f"{proj}.up.weight"].shape) == (D, 2)
    assert not [k for k in sd if "alpha" in k]
    ref = parse(sd, XLABS, "flux", layout)
    assert not ref.unknown_keys
    modules = {m for c, m in ref.modules() if m.startswith("single_")}
    assert modules == {
        "single_transformer_blocks.0.attn.to_q",
        "single_transformer_blocks.0.attn.to_k",
        "single_transformer_blocks.0.attn.to_v",
        "single_transformer_blocks.0.proj_out",
    }
    up, down = sd[f"{qkv}.up.weight"].double(), sd[f"{qkv}.down.weight"].double()
    for i, part in enumerate(("to_q", "to_k", "to_v")):
        delta = ref.delta("transformer", f"single_transformer_blocks.0.attn.{part}")
        torch.testing.assert_close(delta, up[i * D : (i + 1) * D] @ down)  # scale 1: no alpha


def test_xlabs_pattern_reads_single_block_keys() -> None:
    assert XLABS.pattern.match("single_blocks.3.processor.qkv_lora.down.weight")
    assert XLABS.pattern.match("diffusion_model.single_blocks.3.processor.proj_lora.up.weight")
    assert not XLABS.pattern.match("single_blocks.3.processor.qkv_lora1.down.weight")
    assert XLABS.pattern.match("double_blocks.0.processor.qkv_lora2.up.weight")


# ----------------------------------------------------------------------------- Wan norms
W = 6


def wan_shapes(i2v: bool) -> dict[str, tuple[int, ...]]:
    """Parameters of a 2-block diffusers Wan transformer with qk_norm and cross_attn_norm."""
    out: dict[str, tuple[int, ...]] = {"proj_out.weight": (4, W)}
    for i in range(2):
        for norm in ("attn1.norm_q", "attn1.norm_k", "attn2.norm_q", "attn2.norm_k"):
            out[f"blocks.{i}.{norm}.weight"] = (W,)
        out[f"blocks.{i}.norm2.weight"] = (W,)
        out[f"blocks.{i}.norm2.bias"] = (W,)
        out[f"blocks.{i}.scale_shift_table"] = (1, 6, W)
        if i2v:
            out[f"blocks.{i}.attn2.norm_added_k.weight"] = (W,)
    return out


def test_wan_norm_names_map_to_diffusers_parameters() -> None:
    targets = norm_diff_targets(wan_shapes(i2v=False))
    assert targets["blocks.1.norm3.diff"] == "blocks.1.norm2.weight"
    assert targets["blocks.1.norm3.diff_b"] == "blocks.1.norm2.bias"
    assert targets["blocks.0.self_attn.norm_q.diff"] == "blocks.0.attn1.norm_q.weight"
    assert targets["blocks.0.cross_attn.norm_k.diff"] == "blocks.0.attn2.norm_k.weight"
    assert len(targets) == 12 and not any("norm_k_img" in k for k in targets)
    i2v = norm_diff_targets(wan_shapes(i2v=True))
    assert i2v["blocks.1.cross_attn.norm_k_img.diff"] == "blocks.1.attn2.norm_added_k.weight"
    assert len(i2v) == 14


@pytest.mark.parametrize("fill", ["random", "zero"])
def test_wan_norm_diff_writer(fill: str) -> None:
    norms = write_norm_diffs("diffusion_model.", wan_shapes(i2v=False), fill, seed=1)
    assert "diffusion_model.blocks.0.norm3.diff_b" in norms.entries
    for key, (path, tensor) in norms.entries.items():
        assert tuple(tensor.shape) == wan_shapes(False)[path], key
        assert bool(tensor.abs().sum() > 0) == (fill == "random"), key


def test_param_diff_oracle_tells_applied_dropped_wrong() -> None:
    base = {p: torch.ones(W, dtype=torch.float64) for p in ("a", "b", "c", "z")}
    diffs = {p: torch.full((W,), 0.1) for p in ("a", "b", "c")} | {"z": torch.zeros(W)}
    expected = expected_params(base, diffs)
    observed = {
        "a": torch.full((W,), 1.1),  # applied
        "b": torch.ones(W),  # left pristine: dropped
        "c": torch.full((W,), 0.9),  # applied with the wrong sign
        "z": torch.ones(W),  # zero difference: nothing to apply
    }
    result = compare_params(observed, base, expected, {})
    assert (result.applied, result.dropped, result.wrong) == (["a", "z"], ["b"], ["c"])
    missing = compare_params({}, base, expected, {})
    assert sorted(missing.wrong) == ["a", "b", "c", "z"]
