"""Synthetic IP-Adapter writers and their target derivation agree with real models.

The suites trust three things: that the processor order / widths derived from a config
equal what diffusers builds (so templates for the real SD1.5 / SDXL UNets are right), that
the writers produce checkpoints whose every tensor is distinct (so a wrong tensor at a
mapped name is told apart from the right one), and that the image_proj name table maps
every release key to one parameter name, judged by name, not by value. The unpatched
newest library must pass every load check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from harness.convert.ip_adapter import REAL_UNETS, arch_target  # noqa: E402
from harness.inputs.checkpoints.ip_adapter import (  # noqa: E402
    VARIANTS,
    Encoder,
    build_release,
    flatten,
    target_from_model,
    unet_processor_names,
)
from harness.protocol.records import read_records  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _meta_unet(config: dict) -> object:
    with torch.device("meta"):
        return diffusers.UNet2DConditionModel(**config)


def _widths_agree(model: object, target: object) -> list[str]:
    """Our widths vs the attention modules diffusers built."""
    problems = []
    for slot in target.slots:
        attn = model.get_submodule(slot.name.removesuffix(".processor"))
        if attn.to_q.in_features != slot.hidden:
            problems.append(f"{slot.name}: hidden {slot.hidden} != {attn.to_q.in_features}")
        k_in = slot.cross_dim if slot.cross_dim is not None else slot.hidden
        if target.family == "unet" and attn.to_k.in_features != k_in:
            problems.append(f"{slot.name}: cross {k_in} != {attn.to_k.in_features}")
    return problems


@pytest.mark.parametrize("arch", sorted(REAL_UNETS))
def test_real_unet_templates_match_diffusers(arch: str) -> None:
    model = _meta_unet(REAL_UNETS[arch])
    target = arch_target(arch)
    assert [s.name for s in target.slots] == list(model.attn_processors)
    assert _widths_agree(model, target) == []


@pytest.mark.parametrize("arch", ["sd15", "sdxl", "flux", "sd3"])
def test_zoo_targets_match_the_models(arch: str) -> None:
    from harness.inputs.models.zoo import Zoo

    pipe = Zoo().get(arch)
    model = pipe.unet if arch in ("sd15", "sdxl") else pipe.transformer
    target = target_from_model(model)
    assert _widths_agree(model, target) == []
    if arch in ("sd15", "sdxl"):
        assert unet_processor_names(dict(model.config)) == [s.name for s in target.slots]
        assert [s.ip_id for s in target.ip_slots] == [s.position for s in target.ip_slots]
        assert all(s.ip_id % 2 == 1 for s in target.ip_slots)
    if arch == "flux":
        assert [s.ip_id for s in target.ip_slots] == list(range(len(target.ip_slots)))
        assert all(s.name.startswith("transformer_blocks.") for s in target.ip_slots)


def _target_for(variant: str) -> object:
    family = VARIANTS[variant].families[0]
    if family == "unet":
        return arch_target("sd15")
    from harness.inputs.checkpoints.ip_adapter.targets import (
        flux_target_from_names,
        sd3_target_from_names,
    )

    names = [f"transformer_blocks.{i}.attn.processor" for i in range(2)]
    config = {"num_attention_heads": 2, "attention_head_dim": 16, "joint_attention_dim": 32}
    maker = flux_target_from_names if family == "flux" else sd3_target_from_names
    return maker(names, config)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_releases_are_seeded_and_distinct(variant: str) -> None:
    target = _target_for(variant)
    encoder = Encoder("clip", 1024, 32)
    a = flatten(build_release(target, variant, encoder, seed=3))
    b = flatten(build_release(target, variant, encoder, seed=3))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fingerprints = {(tuple(v.shape), float(v.flatten()[0]), float(v.sum())) for v in a.values()}
    assert len(fingerprints) == len(a), "two keys hold the same tensor"
    assert f"image_proj.{VARIANTS[variant].sentinel}" in a


def test_unpatched_library_passes_every_load_check(tmp_path: Path) -> None:
    results = tmp_path / "load.jsonl"
    code = pytest.main(
        [
            str(REPO / "suites" / "ip_adapter"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(REPO),
            "-k",
            "weights or round_trip",
            "--compat-results",
            str(results),
        ]
    )
    assert code in (0, 1)
    records = [r for r in read_records([results]) if r.get("kind") == "check"]
    assert len(records) >= 10
    assert {r["check_id"]: r["verdict"] for r in records if r["verdict"] != "pass"} == {}


def _small_unet(cross: int) -> object:
    """A one-block UNet layout with a real cross-attention width (cheap to fill)."""
    from harness.inputs.checkpoints.ip_adapter import unet_target_from_config

    return unet_target_from_config(
        {
            "block_out_channels": [32],
            "down_block_types": ["CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D"],
            "layers_per_block": 1,
            "cross_attention_dim": cross,
        }
    )


def test_byo_detector_reads_headers_only(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from harness.byo import ip_adapter as byo
    from harness.byo import read_header
    from harness.convert.ip_adapter import DETECT_ORDER
    from harness.inputs.checkpoints.ip_adapter import Dims, save_release

    assert [name for name, _ in byo.SENTINELS] == list(DETECT_ORDER)
    assert all(VARIANTS[name].sentinel == key for name, key in byo.SENTINELS)
    sdxl = build_release(_small_unet(2048), "base", Encoder("clip", 1280, 0))
    user = read_header(save_release(sdxl, tmp_path / "ip-adapter_sdxl.safetensors"))
    assert byo.detect_file(user)
    line = byo.describe_file(user)
    assert "base image_proj" in line and "sdxl" in line and "width 1280" in line
    faceid = build_release(
        _small_unet(768), "faceid", Encoder("id", None, 0), dims=Dims(lora_rank=2, id_dim=16)
    )
    user = read_header(save_release(faceid, tmp_path / "faceid.safetensors"))
    assert byo.detect_file(user) and "faceid image_proj" in byo.describe_file(user)
    assert "sd15" in byo.describe_file(user)
    save_file(
        {"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(tmp_path / "lora.safetensors")
    )
    assert not byo.detect_file(read_header(tmp_path / "lora.safetensors"))


def _small_release(variant: str) -> dict:
    from harness.inputs.checkpoints.ip_adapter import Dims

    dims = Dims(resampler_depth=2, id_dim=16, plus_queries=4, sd3_queries=4, sd3_time_in=8)
    encoder = Encoder("clip", 24, 24)
    return build_release(_target_for(variant), variant, encoder, seed=5, dims=dims)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_name_schemes_map_every_release_key_once(variant: str) -> None:
    """Every image_proj key has a rule in every scheme of its variant, no two keys land on
    one parameter, and split rules cut the tensor into equal parts."""
    from harness.inputs.checkpoints.ip_adapter.proj_names import schemes_for

    image_proj = _small_release(variant)["image_proj"]
    for scheme in schemes_for(variant):
        images = {key: scheme.map(key) for key in image_proj}
        assert [k for k, v in images.items() if v is None] == [], scheme.name
        names = [p for params in images.values() for p in params]
        assert len(names) == len(set(names)), scheme.name
        for key, params in images.items():
            assert image_proj[key].shape[0] % len(params) == 0, key


def _as_loaded(variant: str, image_proj: dict, scheme_name: str) -> dict:
    """The state dict a correct load under ``scheme_name`` holds (our own placement)."""
    from harness.inputs.checkpoints.ip_adapter.proj_names import schemes_for

    (scheme,) = [s for s in schemes_for(variant) if s.name == scheme_name]
    loaded = {}
    for key, tensor in image_proj.items():
        params = scheme.map(key)
        for param, part in zip(params, tensor.chunk(len(params), dim=0), strict=True):
            loaded[param] = part.clone()
    return loaded


@pytest.mark.parametrize("scheme", ["named-blocks", "positional-blocks"])
def test_proj_match_judges_by_name(scheme: str) -> None:
    """Exchanged same-shape tensors, a dropped parameter and a stray one are each named;
    the scheme is picked from the loaded names."""
    from harness.oracles.ip_adapter import image_proj_match

    image_proj = _small_release("plus")["image_proj"]
    loaded = _as_loaded("plus", image_proj, scheme)
    clean = image_proj_match(loaded, image_proj, "plus")
    assert clean.ok and clean.scheme == scheme, clean.summary()
    assert clean.mapping["layers.1.0.to_kv.weight"][1].endswith(".to_v.weight")

    ln0, ln1 = ("layers.0.ln0.weight", "layers.0.ln1.weight")
    if scheme == "positional-blocks":
        ln0, ln1 = ("layers.0.0.weight", "layers.0.1.weight")
    swapped = dict(loaded) | {ln0: loaded[ln1], ln1: loaded[ln0]}
    match = image_proj_match(swapped, image_proj, "plus")
    assert not match.ok and match.scheme == scheme
    assert [w.split(":")[0] for w in match.wrong] == [
        f"layers.0.0.norm1.weight -> {ln0}",
        f"layers.0.0.norm2.weight -> {ln1}",
    ]
    assert "holds layers.0.0.norm2.weight" in match.wrong[0]

    to_v = clean.mapping["layers.1.0.to_kv.weight"][1]
    dropped = {k: v for k, v in loaded.items() if k != to_v} | {"stray.weight": torch.ones(2)}
    match = image_proj_match(dropped, image_proj, "plus")
    assert match.missing == [f"layers.1.0.to_kv.weight -> {to_v}"]
    assert match.unaccounted == ["stray.weight"] and not match.wrong
