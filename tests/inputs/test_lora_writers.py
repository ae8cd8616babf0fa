"""Unit tests of the LoRA writers, reference, detector normaliser and byo detection.

Pure torch (no diffusers): tiny hand-written layouts, the committed full-size layouts and
manifests. Every expected value here is written out by hand from the format definitions.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from harness.byo import UserFile, find_weight_file, read_header  # noqa: E402
from harness.byo.lora import detect  # noqa: E402
from harness.drivers.lora_detector import compare_view, read_converted, split_key  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.inputs.checkpoints.lora.build import Pick, build, write_safetensors  # noqa: E402
from harness.inputs.checkpoints.lora.cases import full_case, realise  # noqa: E402
from harness.inputs.checkpoints.lora.formats import FORMATS, expressible  # noqa: E402
from harness.inputs.checkpoints.lora.layouts import ComponentLayout, Layer, sgm_unet_map, to_sgm  # noqa: E402
from harness.inputs.checkpoints.lora.manifests import (  # noqa: E402
    FIXTURES,
    MANIFEST_DTYPE,
    load_layout,
    manifest,
)
from harness.oracles.lora import (  # noqa: E402
    Reference,
    Term,
    compare,
    compare_bias,
    effective_bias,
    effective_weight,
    parse,
)
from tests.inputs.tiny_flux_layout import HEAD, D, flux_layout  # noqa: E402


def group(layout, native: str):
    for g, parts in expressible(FORMATS["kohya"], "flux", layout, FORMATS["kohya"].optional):
        if g.native == native:
            return g, parts
    raise KeyError(native)


def test_kohya_flux_partial_qkv_dense_reference() -> None:
    layout = flux_layout()
    g, _ = group(layout, "double_blocks.0.img_attn.qkv")
    built = build(
        "kohya", "flux", layout, [Pick(g, (g.parts[0], g.parts[2]), rank=4, alpha=2.0)], seed=1
    )
    sd = built.state_dict
    assert set(sd) == {
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",
        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight",
        "lora_unet_double_blocks_0_img_attn_qkv.alpha",
    }
    up, down = (
        sd["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"].double(),
        sd["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].double(),
    )
    assert up.shape == (3 * D, 4) and bool((up[D : 2 * D] == 0).all())  # k absent: zero rows
    ref = parse(sd, "kohya", "flux", layout)
    assert not ref.unknown_keys
    q, k, v = (f"transformer_blocks.0.attn.to_{x}" for x in "qkv")
    torch.testing.assert_close(ref.delta("transformer", q), 0.5 * up[:D] @ down)
    torch.testing.assert_close(ref.delta("transformer", v), 0.5 * up[2 * D :] @ down)
    assert float(ref.delta("transformer", k).abs().max()) == 0.0


def test_stacked_layout_and_linear1_split() -> None:
    layout = flux_layout()
    g, parts = group(layout, "single_blocks.0.linear1")
    assert g.widths == (D, D, D, 4 * D)
    present = (parts[1], parts[3])  # to_k and proj_mlp
    sd = build(
        "kohya", "flux", layout, [Pick(g, present, rank=2, layout="stacked")], seed=2
    ).state_dict
    down = sd["lora_unet_single_blocks_0_linear1.lora_down.weight"].double()
    up = sd["lora_unet_single_blocks_0_linear1.lora_up.weight"].double()
    assert down.shape == (4, D) and up.shape == (7 * D, 4)
    ref = parse(sd, "kohya", "flux", layout)
    # no alpha: scale 1; block-diagonal up: to_k uses columns 0:2, proj_mlp 2:4
    torch.testing.assert_close(ref.delta("transformer", parts[1]), up[D : 2 * D] @ down)
    torch.testing.assert_close(ref.delta("transformer", parts[3]), up[3 * D :, 2:] @ down[2:])
    assert float(ref.delta("transformer", parts[0]).abs().max()) == 0.0


def test_final_layer_rows_are_swapped_only_for_bfl_names() -> None:
    layout = flux_layout()
    g, parts = group(layout, "final_layer.adaLN_modulation.1")
    sd = build("kohya", "flux", layout, [Pick(g, parts, rank=1)], seed=3).state_dict
    up = sd["lora_unet_final_layer_adaLN_modulation_1.lora_up.weight"].double()
    down = sd["lora_unet_final_layer_adaLN_modulation_1.lora_down.weight"].double()
    want = torch.cat([up[D:], up[:D]]) @ down  # BFL shift|scale -> diffusers scale|shift
    torch.testing.assert_close(
        parse(sd, "kohya", "flux", layout).delta("transformer", "norm_out.linear"), want
    )
    peft = build("peft", "flux", layout, [Pick(g, parts, rank=1)], seed=3).state_dict
    p_up = peft["transformer.norm_out.linear.lora_B.weight"].double()
    p_down = peft["transformer.norm_out.linear.lora_A.weight"].double()
    torch.testing.assert_close(
        parse(peft, "peft", "flux", layout).delta("transformer", "norm_out.linear"), p_up @ p_down
    )


@pytest.mark.parametrize("fmt", [f for f in FORMATS if FORMATS[f].supports("flux")])
def test_every_flux_format_round_trips_through_the_reference(fmt: str) -> None:
    layout = flux_layout()
    case = full_case(FORMATS[fmt], "flux", layout, rank=2, alpha=3.0, narrow=False)
    built = realise(FORMATS[fmt], "flux", layout, case)
    ref = parse(built.state_dict, fmt, "flux", layout)
    assert not ref.unknown_keys
    expected = {(p.group.component, part) for p in case.picks for part in p.present}
    assert set(ref.terms) == expected


def test_stray_keys_are_unknown_to_the_reference() -> None:
    layout = flux_layout()
    for fmt in ("kohya", "peft", "xlabs", "mixture", "comfy"):
        case = full_case(FORMATS[fmt], "flux", layout)
        case.stray = 1
        built = realise(FORMATS[fmt], "flux", layout, case)
        ref = parse(built.state_dict, fmt, "flux", layout)
        assert sorted(ref.unknown_keys) == sorted(built.stray_keys) and built.stray_keys, fmt
        assert all("bogus0" in k for k in built.stray_keys)


def test_sgm_names_of_the_real_sdxl_unet() -> None:
    """kohya's SDXL names, as in released files (facts of the SGM UNet numbering)."""
    blocks = sgm_unet_map(load_layout("sdxl")["unet"])
    assert blocks["down_blocks.1.attentions.0"] == "input_blocks.4.1"
    assert blocks["down_blocks.2.attentions.1"] == "input_blocks.8.1"
    assert blocks["mid_block.attentions.0"] == "middle_block.1"
    assert blocks["up_blocks.0.attentions.2"] == "output_blocks.2.1"
    assert blocks["up_blocks.1.attentions.0"] == "output_blocks.3.1"
    path = "down_blocks.2.attentions.0.transformer_blocks.9.attn2.to_k"
    assert to_sgm(path, blocks) == "input_blocks.7.1.transformer_blocks.9.attn2.to_k"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("manifest-*.json")), ids=lambda p: p.stem)
def test_committed_manifest_matches_the_writer(path: Path) -> None:
    """The manifests are what the writers produce on the committed layouts (regenerate with
    ``python -m harness.inputs.checkpoints.lora.manifests`` when a format changes)."""
    data = json.loads(path.read_text())
    families = tuple(data.get("families", ()))
    again = manifest(data["format"], data["arch"], load_layout(data["arch"]), families)
    assert again["keys"] == data["keys"], path.name
    assert {d for _, d in data["keys"].values()} == {MANIFEST_DTYPE[data["arch"]]}


def test_real_layout_shapes() -> None:
    keys = json.loads((FIXTURES / "manifest-flux-kohya.json").read_text())["keys"]
    assert keys["lora_unet_single_blocks_37_linear1.lora_up.weight"][0] == [3072 * 3 + 12288, 16]
    assert keys["lora_unet_double_blocks_18_img_attn_qkv.lora_up.weight"][0] == [9216, 16]
    sdxl = json.loads((FIXTURES / "manifest-sdxl-kohya.json").read_text())["keys"]
    assert sdxl["lora_te2_text_model_encoder_layers_31_mlp_fc1.lora_up.weight"][0] == [5120, 16]


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("manifest-*.json")), ids=lambda p: p.stem)
def test_byo_detects_each_manifest_as_itself(path: Path) -> None:
    data = json.loads(path.read_text())
    keys = data["keys"]
    found = detect(list(keys), {k: v[0] for k, v in keys.items()})
    assert found is not None
    assert (found.format, found.arch) == (data["format"], data["arch"])


class FakeLora(torch.nn.Module):
    """A stand-in for a LoRA-wrapped Linear: y = base(x) + s * B(A(x))."""

    def __init__(self, base: torch.nn.Linear, a: torch.Tensor, b: torch.Tensor, s: float) -> None:
        super().__init__()
        self.base_layer, self.a, self.b, self.s = base, a, b, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.s * (x @ self.a.T) @ self.b.T


def test_effective_weight_and_compare() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.nn.Linear(6, 5).double()
    a, b = (
        torch.randn(2, 6, generator=gen, dtype=torch.float64),
        torch.randn(5, 2, generator=gen, dtype=torch.float64),
    )
    wrapped = FakeLora(base, a, b, 0.5)
    torch.testing.assert_close(effective_weight(wrapped), base.weight.detach() + 0.5 * b @ a)
    ref = Reference(terms={("unet", "m"): [Term(a, b, 0.5, ("k",), torch.float32)]})
    ok = compare(
        {"m": effective_weight(wrapped)}, {"m": base.weight.detach().double()}, ref, "unet"
    )
    assert ok.ok and ok.matched == ["m"]
    dropped = compare(
        {"m": base.weight.detach().double()}, {"m": base.weight.detach().double()}, ref, "unet"
    )
    assert dropped.dropped == ["m"]
    wrong = compare(
        {"m": effective_weight(FakeLora(base, a, b, 1.0))},
        {"m": base.weight.detach().double()},
        ref,
        "unet",
    )
    assert "m" in wrong.wrong


@pytest.mark.parametrize(
    "key,expected",
    [
        (
            "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight",
            ("unet", "down_blocks.0.attentions.0.proj_in", "down"),
        ),
        (
            "unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
            ("unet", "mid_block.attentions.0.transformer_blocks.0.attn1.to_q", "down"),
        ),
        (
            "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight",
            ("unet", "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0", "up"),
        ),
        (
            "text_encoder.text_model.encoder.layers.0.self_attn.to_k_lora.down.weight",
            ("text_encoder", "text_model.encoder.layers.0.self_attn.k_proj", "down"),
        ),
        (
            "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.up.weight",
            ("text_encoder", "text_model.encoder.layers.0.mlp.fc1", "up"),
        ),
        (
            "unet.down_blocks.0.attentions.0.proj_in.lora.down.weight",
            ("unet", "down_blocks.0.attentions.0.proj_in", "down"),
        ),
        (
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight.alpha",
            ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "alpha"),
        ),
        (
            "time_text_embed.timestep_embedder.linear_1.lora_A.weight",
            (None, "time_text_embed.timestep_embedder.linear_1", "down"),
        ),
    ],
)
def test_detector_key_spellings(key: str, expected: tuple) -> None:
    assert split_key(key) == expected


def test_read_converted_pairs_alphas() -> None:
    conv = read_converted(
        {
            "transformer.x.lora_A.weight": torch.ones(1, 2),
            "transformer.x.lora_B.weight": torch.ones(2, 1),
        },
        {"transformer.x.alpha": 3.0},
    )
    assert set(conv.pairs) == {("transformer", "x")} and conv.alphas == {("transformer", "x"): 3.0}


# ----------------------------------------------------------------------------- byo / check
def _header_file(path: Path, header: dict) -> Path:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)
    return path


def test_read_header_without_torch(tmp_path: Path) -> None:
    layout = flux_layout()
    case = full_case(FORMATS["xlabs"], "flux", layout)
    built = realise(FORMATS["xlabs"], "flux", layout, case)
    path = tmp_path / "x.safetensors"
    write_safetensors(path, built.state_dict, {"ss_network_dim": 4})
    user = read_header(path)
    assert set(user.keys) == set(built.state_dict) and user.metadata == {"ss_network_dim": "4"}
    assert detect(user.keys, user.shapes).format == "xlabs"


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x05", "unreadable safetensors header"),
        (struct.pack("<Q", 12) + b"{not json!!}", "unreadable safetensors header"),
        (struct.pack("<Q", 2**40) + b"{}", "unreadable safetensors header"),
    ],
)
def test_unreadable_headers(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        read_header(path)


def test_find_weight_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        find_weight_file(tmp_path / "missing.safetensors")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(UsageError, match="pickles"):
        find_weight_file(tmp_path / "w.bin")
    with pytest.raises(UsageError, match="no .safetensors"):
        find_weight_file(tmp_path)


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    import harness.cli as cli

    if "check" not in cli.COMMANDS:  # until the lead wires it into harness/commands
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "check"))
    return cli.main(argv)


@pytest.mark.parametrize("case", ["missing", "unreadable", "not-lora"])
def test_check_command_errors_are_one_line(case: str, tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "f.safetensors"
    if case == "unreadable":
        path.write_bytes(b"\x01\x00")
    elif case == "not-lora":
        _header_file(
            path, {"model.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
        )
    code = _cli(["check", str(path), "--detect-only"], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("adapter-compat: error: ")


def test_check_detect_only(tmp_path: Path, monkeypatch, capsys) -> None:
    keys = json.loads((FIXTURES / "manifest-flux-kohya.json").read_text())["keys"]
    header = {
        k: {"dtype": "BF16", "shape": s, "data_offsets": [0, 0]} for k, (s, _) in keys.items()
    }
    path = _header_file(tmp_path / "my_lora.safetensors", header)
    assert _cli(["check", str(path), "--detect-only"], monkeypatch) == 0
    assert "format kohya, flux" in capsys.readouterr().out
    assert isinstance(read_header(path), UserFile)


# ----------------------------------------------------------------------------- DoRA / control
def _dora(w: torch.Tensor, delta: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """DoRA by hand (PEFT ``get_weight_norm``: the L2 norm of each output row of W + dW)."""
    total = w + delta
    return m[:, None] * total / torch.sqrt((total**2).sum(dim=1, keepdim=True))


def test_peft_dora_keys_and_reference() -> None:
    layout = flux_layout()
    g, _ = group(layout, "double_blocks.0.img_attn.proj")
    sd = build("peft_dora", "flux", layout, [Pick(g, g.parts, rank=2)], seed=4).state_dict
    stem = "transformer.transformer_blocks.0.attn.to_out.0"
    assert set(sd) == {
        f"{stem}.lora_A.weight",
        f"{stem}.lora_B.weight",
        f"{stem}.lora_magnitude_vector",
    }
    m = sd[f"{stem}.lora_magnitude_vector"].double()
    assert m.shape == (D,) and bool((m > 0).all())
    ref = parse(sd, "peft_dora", "flux", layout)
    w = torch.randn(D, D, dtype=torch.float64)
    delta = sd[f"{stem}.lora_B.weight"].double() @ sd[f"{stem}.lora_A.weight"].double()
    want = _dora(w, delta, m)
    torch.testing.assert_close(ref.expected_weight("transformer", g.parts[0], w), want)
    torch.testing.assert_close(ref.plain().expected_weight("transformer", g.parts[0], w), w + delta)
    assert f"{stem}.lora_magnitude_vector" in ref.keys_for("transformer", g.parts[0])


def test_kohya_dora_fused_magnitude_is_split_by_rows() -> None:
    layout = flux_layout()
    g, parts = group(layout, "double_blocks.0.img_attn.qkv")
    sd = build("kohya_dora", "flux", layout, [Pick(g, parts, rank=2, alpha=1.0)], seed=5).state_dict
    stem = "lora_unet_double_blocks_0_img_attn_qkv"
    scale = sd[f"{stem}.dora_scale"].double()
    assert scale.shape == (3 * D, 1)  # LyCORIS wd_on_out: one magnitude per output row
    ref = parse(sd, "kohya_dora", "flux", layout)
    up, down = sd[f"{stem}.lora_up.weight"].double(), sd[f"{stem}.lora_down.weight"].double()
    w = torch.randn(D, D, dtype=torch.float64)
    k = parts[1]  # to_k: rows D:2D of the fused layer
    want = _dora(w, 0.5 * up[D : 2 * D] @ down, scale[D : 2 * D, 0])
    torch.testing.assert_close(ref.expected_weight("transformer", k, w), want)


def test_dora_formats_skip_conv_layers() -> None:
    blk = "down_blocks.0.attentions.0"
    layers = {
        f"{blk}.proj_in": Layer(4, 4, (1, 1)),
        f"{blk}.transformer_blocks.0.attn1.to_q": Layer(4, 4),
    }
    layout = {"unet": ComponentLayout(layers)}
    got = [g.native for g, _ in expressible(FORMATS["peft_dora"], "sd15", layout)]
    assert got == [f"{blk}.transformer_blocks.0.attn1.to_q"]
    assert len(expressible(FORMATS["peft"], "sd15", layout)) == 2


def test_control_bfl_layout_norms_and_widened_input() -> None:
    layout = flux_layout()
    case = full_case(FORMATS["control_bfl"], "flux", layout, rank=2, narrow=False)
    sd = realise(FORMATS["control_bfl"], "flux", layout, case).state_dict
    assert sd["img_in.lora_A.weight"].shape == (2, 2 * 4)  # control latents: input x2
    assert sd["img_in.lora_B.weight"].shape == (D, 2)
    assert "double_blocks.0.img_attn.qkv.lora_B.weight" in sd and not any(".alpha" in k for k in sd)
    norms = {k for k in sd if k.endswith("_norm.scale")}
    assert norms == {
        "double_blocks.0.img_attn.norm.query_norm.scale",
        "double_blocks.0.img_attn.norm.key_norm.scale",
        "double_blocks.0.txt_attn.norm.query_norm.scale",
        "double_blocks.0.txt_attn.norm.key_norm.scale",
        "single_blocks.0.norm.query_norm.scale",
        "single_blocks.0.norm.key_norm.scale",
    }
    ref = parse(sd, "control_bfl", "flux", layout)
    assert not ref.unknown_keys
    value, key = ref.replaced[("transformer", "transformer_blocks.0.attn.norm_added_q.weight")]
    assert key == "double_blocks.0.txt_attn.norm.query_norm.scale" and value.shape == (HEAD,)
    w = torch.randn(D, 4, dtype=torch.float64)
    delta = sd["img_in.lora_B.weight"].double() @ sd["img_in.lora_A.weight"].double()
    want = torch.cat([w, torch.zeros(D, 4, dtype=torch.float64)], dim=1) + delta
    torch.testing.assert_close(ref.expected_weight("transformer", "x_embedder", w), want)
    # the diffusers layout of the same file names the same modules and parameters
    dsd = realise(
        FORMATS["control"], "flux", layout, full_case(FORMATS["control"], "flux", layout)
    ).state_dict
    assert dsd["transformer.x_embedder.lora_A.weight"].shape[1] == 8
    assert "transformer.single_transformer_blocks.0.attn.norm_k.weight" in dsd
    assert set(parse(dsd, "control", "flux", layout).replaced) == set(ref.replaced)


def test_fal_kontext_names() -> None:
    layout = flux_layout()
    case = full_case(FORMATS["fal_kontext"], "flux", layout, narrow=False)
    sd = realise(FORMATS["fal_kontext"], "flux", layout, case).state_dict
    assert "base_model.model.double_blocks.0.img_attn.qkv.lora_A.weight" in sd
    assert "base_model.model.single_blocks.0.linear1.lora_B.weight" in sd
    assert not any(
        "final_layer.adaLN" in k or "img_in" in k for k in sd
    )  # not read by the converter
    assert all(k.startswith("base_model.model.") for k in sd)


def test_view_reports_missing_magnitudes_and_norms() -> None:
    layout = flux_layout()
    g, _ = group(layout, "double_blocks.0.img_attn.proj")
    sd = build("peft_dora", "flux", layout, [Pick(g, g.parts, rank=1)], seed=6).state_dict
    ref = parse(sd, "peft_dora", "flux", layout)
    converted = read_converted(dict(sd))
    assert compare_view(ref, converted, "transformer", False).dropped_extra == []
    no_mag = read_converted({k: v for k, v in sd.items() if "magnitude" not in k})
    assert compare_view(ref, no_mag, "transformer", False).dropped_extra == [
        "transformer.transformer_blocks.0.attn.to_out.0.lora_magnitude_vector"
    ]
    norm = read_converted({"transformer.transformer_blocks.0.attn.norm_q.weight": torch.ones(HEAD)})
    assert set(norm.norms) == {("transformer", "transformer_blocks.0.attn.norm_q.weight")}


# ----------------------------------------------------------------------------- as trainers write
def _stems(sd) -> set[str]:
    return {k.rsplit(".", 2)[0] for k in sd if k.endswith(".weight")}


def test_flux_kohya_complete_is_blocks_and_clip_only() -> None:
    """Real kohya Flux files train block layers (and CLIP), never the embedders / final
    layer: those are optional families, each written only on request."""
    layout = flux_layout()
    fmt = FORMATS["kohya"]
    complete = realise(fmt, "flux", layout, full_case(fmt, "flux", layout, narrow=False))
    stems = _stems(complete.state_dict)
    assert "lora_unet_double_blocks_0_img_attn_qkv" in stems
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj" in stems
    assert not any("img_in" in s or "final_layer" in s for s in stems)
    emb = realise(
        fmt, "flux", layout, full_case(fmt, "flux", layout, narrow=False, families=("embedders",))
    )
    assert _stems(emb.state_dict) - stems == {"lora_unet_img_in"}
    final = full_case(fmt, "flux", layout, narrow=False, families=("final-layer",))
    extra = _stems(realise(fmt, "flux", layout, final).state_dict) - stems
    assert extra == {"lora_unet_final_layer_adaLN_modulation_1"}


def test_control_biases_keys_and_reference() -> None:
    layout = flux_layout()
    fmt = FORMATS["control"]
    case = full_case(fmt, "flux", layout, rank=2, alpha=None, families=("biases",))
    sd = realise(fmt, "flux", layout, case).state_dict
    stem = "transformer.transformer_blocks.0.attn.to_q"
    assert sd[f"{stem}.lora_B.bias"].shape == (D,)
    assert sd["transformer.x_embedder.lora_B.bias"].shape == (D,)
    n_pairs = sum(k.endswith(".lora_A.weight") for k in sd)
    assert sum(k.endswith(".lora_B.bias") for k in sd) == n_pairs
    ref = parse(sd, fmt, "flux", layout)
    assert not ref.unknown_keys
    path = "transformer_blocks.0.attn.to_q"
    torch.testing.assert_close(
        ref.bias_delta("transformer", path), sd[f"{stem}.lora_B.bias"].double()
    )
    assert f"{stem}.lora_B.bias" in ref.keys_for("transformer", path)
    plain = realise(fmt, "flux", layout, full_case(fmt, "flux", layout, rank=2, alpha=None))
    assert not any(k.endswith(".bias") for k in plain.state_dict)
    assert parse(plain.state_dict, fmt, "flux", layout).bias_modules() == []


def test_bfl_control_bias_of_a_fused_layer_is_split_by_rows() -> None:
    layout = flux_layout()
    fmt = FORMATS["control_bfl"]
    case = full_case(fmt, "flux", layout, rank=2, narrow=False, families=("biases",))
    sd = realise(fmt, "flux", layout, case).state_dict
    bias = sd["double_blocks.0.img_attn.qkv.lora_B.bias"].double()
    assert bias.shape == (3 * D,)
    ref = parse(sd, fmt, "flux", layout)
    k = "transformer_blocks.0.attn.to_k"
    torch.testing.assert_close(ref.bias_delta("transformer", k), bias[D : 2 * D])


def test_compare_bias_verdicts() -> None:
    ref = Reference(
        terms={
            ("transformer", "m"): [
                Term(
                    torch.zeros(1, 2),
                    torch.zeros(3, 1),
                    0.5,
                    ("m.lora_B.bias",),
                    torch.float32,
                    torch.tensor([2.0, 0.0, -2.0], dtype=torch.float64),
                )
            ]
        }
    )
    base = {"m": torch.ones(3, dtype=torch.float64), "n": torch.zeros(2, dtype=torch.float64)}
    good = {"m": torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64), "n": base["n"]}
    assert compare_bias(good, base, ref, "transformer").matched == ["m"]
    assert compare_bias(dict(base), base, ref, "transformer").dropped == ["m"]
    twice = {"m": torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64), "n": base["n"]}
    assert "m" in compare_bias(twice, base, ref, "transformer").wrong
    moved = {"m": good["m"], "n": torch.ones(2, dtype=torch.float64)}
    assert "n" in compare_bias(moved, base, ref, "transformer").unexpected


def test_effective_bias_probe() -> None:
    base = torch.nn.Linear(3, 2).double()
    torch.testing.assert_close(effective_bias(base), base.bias.detach())
    zeros = torch.zeros(1, 3, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64)
    wrapped = FakeLora(base, *zeros, 1.0)
    torch.testing.assert_close(effective_bias(wrapped), base.bias.detach())


def _dora_in(w: torch.Tensor, delta: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """DoRA with a per-input-column magnitude (OneTrainer ``dora_scale`` ``(1, in)``)."""
    total = w + delta
    return total * (m / torch.sqrt((total**2).sum(dim=0)))[None, :]


def test_kohya_dora_in_magnitude_is_per_input_column() -> None:
    blk = "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    layers = {f"{blk}.to_k": Layer(6, 4)}
    layout = {"unet": ComponentLayout(layers)}
    fmt = FORMATS["kohya_dora_in"]
    ((g, parts),) = expressible(fmt, "sd15", layout)
    sd = build(fmt, "sd15", layout, [Pick(g, parts, rank=2, alpha=1.0)], seed=7).state_dict
    stem = "lora_unet_" + f"{blk}.to_k".replace(".", "_")
    scale = sd[f"{stem}.dora_scale"].double()
    assert scale.shape == (1, 6)  # one magnitude per input column
    ref = parse(sd, fmt, "sd15", layout)
    up, down = sd[f"{stem}.lora_up.weight"].double(), sd[f"{stem}.lora_down.weight"].double()
    w = torch.randn(4, 6, dtype=torch.float64)
    want = _dora_in(w, 0.5 * up @ down, scale[0])
    torch.testing.assert_close(ref.expected_weight("unet", parts[0], w), want)
    # the same numbers read as an (out, 1) file would normalise rows instead
    assert not torch.allclose(want, _dora(w, 0.5 * up @ down, torch.ones(4)))


def test_mixture_dora_has_input_magnitudes_on_every_module() -> None:
    layout = flux_layout()
    fmt = FORMATS["mixture_dora"]
    sd = realise(fmt, "flux", layout, full_case(fmt, "flux", layout)).state_dict
    pairs = [k[: -len(".lora_down.weight")] for k in sd if k.endswith(".lora_down.weight")]
    assert pairs and all(f"{p}.dora_scale" in sd for p in pairs)
    assert sd["lora_transformer_transformer_blocks_0_attn_to_q.dora_scale"].shape == (1, D)
    assert not parse(sd, fmt, "flux", layout).unknown_keys


def test_mixture_t5_family_is_stray_to_the_loader() -> None:
    layout = flux_layout()
    fmt = FORMATS["mixture"]
    built = realise(fmt, "flux", layout, full_case(fmt, "flux", layout, families=("t5",)))
    t5 = sorted(k for k in built.state_dict if k.startswith("lora_te2_"))
    assert "lora_te2_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight" in t5
    assert "lora_te2_encoder_block_1_layer_1_DenseReluDense_wo.lora_up.weight" in t5
    assert sorted(built.stray_keys) == t5
    assert sorted(parse(built.state_dict, fmt, "flux", layout).unknown_keys) == t5


def test_ai_toolkit_names() -> None:
    layout = flux_layout()
    fmt = FORMATS["ai_toolkit"]
    sd = realise(fmt, "flux", layout, full_case(fmt, "flux", layout, narrow=False)).state_dict
    assert "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight" in sd
    assert sd["diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"].shape == (3 * D, 4)
    assert all(k.startswith("diffusion_model.") and ".lora_" in k for k in sd)
    assert not any(k.endswith(".alpha") or "img_in" in k or "final_layer" in k for k in sd)


def test_sdxl_kohya_with_diffusers_block_names() -> None:
    sdxl = load_layout("sdxl")
    keys = json.loads((FIXTURES / "manifest-sdxl-kohya_diffusers.json").read_text())["keys"]
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"
    assert keys[key][0] == [16, 640]
    assert not any("input_blocks" in k or "output_blocks" in k for k in keys)
    sgm = json.loads((FIXTURES / "manifest-sdxl-kohya.json").read_text())["keys"]
    assert len(keys) == len(sgm)  # the same layers, other block names
    assert sdxl["unet"].layers["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"]


@pytest.mark.parametrize(
    "fmt,other",
    [
        ("kohya_dora_in", "kohya_dora"),
        ("kohya_dora", "kohya_dora_in"),
        ("kohya_diffusers", "kohya"),
        ("kohya", "kohya_diffusers"),
        ("ai_toolkit", "comfy"),
        ("mixture_dora", "mixture"),
    ],
)
def test_detection_tells_close_layouts_apart(fmt: str, other: str) -> None:
    """Layouts that share a key grammar are told apart by shapes / block names: each is
    detected as itself, never as its neighbour."""
    arch = next(a for a in ("sdxl", "flux", "sd15") if FORMATS[fmt].supports(a))
    keys = json.loads((FIXTURES / f"manifest-{arch}-{fmt}.json").read_text())["keys"]
    found = detect(list(keys), {k: v[0] for k, v in keys.items()})
    assert found is not None and found.format == fmt != other
