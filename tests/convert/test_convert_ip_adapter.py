"""The training-layout converter and ``adapter-compat convert-ip-adapter`` .

The converter's report on a doctored checkpoint names exactly the doctored keys and the
command refuses to write; clean checkpoints of every variant and both numberings convert
to the same release the checkpoint's ground truth predicts; real SD1.5 / SDXL templates
have the processor numbering of the real UNets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from harness.cli import main  # noqa: E402
from harness.convert import ip_adapter as conv  # noqa: E402
from harness.inputs.checkpoints.ip_adapter import Encoder, load_release, save_release  # noqa: E402
from harness.inputs.checkpoints.ip_adapter.training import build_training, doctor  # noqa: E402

VIT_H = Encoder("clip", 1024, 1280)


@pytest.fixture(autouse=True)
def _command_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drive the real ``adapter-compat`` entry point, with the command registered even
    before ``harness.commands.COMMANDS`` lists it."""
    import harness.cli

    if "convert_ip_adapter" not in harness.cli.COMMANDS:
        monkeypatch.setattr(harness.cli, "COMMANDS", (*harness.cli.COMMANDS, "convert_ip_adapter"))


def _save_flat(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _release_from_truth(target, training) -> dict:
    position = {s.name: s.position for s in target.slots}
    ip = {
        f"{position[name]}.{rest}": t
        for name, tensors in training.by_processor.items()
        for rest, t in tensors.items()
    }
    return {"image_proj": training.image_proj, "ip_adapter": ip}


def _assert_same(a: dict, b: dict) -> None:
    for section in ("image_proj", "ip_adapter"):
        assert sorted(a[section]) == sorted(b[section]), section
        for key in a[section]:
            assert torch.equal(a[section][key], b[section][key]), key


def test_real_templates_number_like_the_real_unets() -> None:
    sd15, sdxl = conv.arch_target("sd15"), conv.arch_target("sdxl")
    assert len(sd15.slots) == 32 and [s.ip_id for s in sd15.ip_slots] == list(range(1, 32, 2))
    assert sd15.ip_slots[-1].name.startswith("mid_block") and sd15.ip_slots[-1].hidden == 1280
    assert len(sdxl.slots) == 140 and sdxl.ip_slots[-1].ip_id == 139
    shapes = conv.template_for(sd15, "base", {"proj.weight": torch.zeros(3072, 1024)}, {})[0]
    assert shapes["ip_adapter"]["1.to_k_ip.weight"] == (320, 768)
    assert shapes["ip_adapter"]["31.to_v_ip.weight"] == (1280, 768)
    assert shapes["image_proj"]["proj.weight"] == (3072, 1024)


@pytest.mark.parametrize(
    ("variant", "numbering"),
    [
        ("base", "cross"),
        ("base", "processor"),
        ("plus", "cross"),
        ("full-face", "processor"),
        ("faceid", "processor"),
        ("faceid-plus", "processor"),
    ],
)
def test_clean_conversion_matches_ground_truth(variant: str, numbering: str) -> None:
    target = conv.arch_target("sd15")
    dims = conv.Dims(resampler_dim=64, resampler_heads=1, lora_rank=4, id_dim=64)
    training = build_training(target, variant, VIT_H, numbering=numbering, seed=5, dims=dims)
    release, report = conv.convert(training.state, target=target)
    assert report.ok, report.render()
    assert report.numbering == numbering and report.variant == variant
    assert report.dropped == 3
    _assert_same(release, _release_from_truth(target, training))


def test_doctored_checkpoint_report_names_exactly_the_three_keys() -> None:
    target = conv.arch_target("sd15")
    training = build_training(target, "base", VIT_H, numbering="cross", seed=1)
    bad = doctor(
        training.state,
        missing="adapter_modules.15.to_v_ip.weight",
        extra="adapter_modules.2.to_x_ip.weight",
        wrong_shape="adapter_modules.0.to_k_ip.weight",
    )
    _, report = conv.convert(bad, target=target)
    assert not report.ok
    assert report.missing == ["ip_adapter.31.to_v_ip.weight"]
    assert report.unexpected == ["ip_adapter.5.to_x_ip.weight"]
    assert report.shape_mismatches == [("ip_adapter.1.to_k_ip.weight", (321, 768), (320, 768))]
    problems = report.problems()
    assert len(problems) == 3
    assert "adapter_modules.15.to_v_ip.weight" in problems[0]
    assert "adapter_modules.2.to_x_ip.weight" in problems[1]
    assert "adapter_modules.0.to_k_ip.weight" in problems[2]


def test_cli_refuses_doctored_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = conv.arch_target("sd15")
    training = build_training(target, "base", VIT_H, numbering="cross", seed=1)
    bad = doctor(
        training.state,
        missing="adapter_modules.15.to_v_ip.weight",
        extra="image_proj_model.proj.extra",
        wrong_shape="adapter_modules.0.to_k_ip.weight",
    )
    ckpt = _save_flat(bad, tmp_path / "model.safetensors")
    out = tmp_path / "ip-adapter.safetensors"
    code = main(["convert-ip-adapter", str(ckpt), str(out), "--arch", "sd15"])
    text = capsys.readouterr().out
    assert code == 1 and not out.exists()
    assert "1 missing, 1 unexpected, 1 shape mismatches" in text
    assert "missing: ip_adapter.31.to_v_ip.weight" in text
    assert "unexpected: image_proj.proj.extra" in text
    assert "shape mismatch: ip_adapter.1.to_k_ip.weight" in text
    assert "not written" in text

    forced = main(["convert-ip-adapter", str(ckpt), str(out), "--arch", "sd15", "--force"])
    assert forced == 0 and out.exists()


#: A small UNet layout (the real ones are GBs of synthetic tensors; their templates are
#: covered above without writing files).
SMALL_UNET = {
    "block_out_channels": [32, 64],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "transformer_layers_per_block": [1, 2],
    "cross_attention_dim": 48,
}


def test_cli_writes_bin_and_safetensors_from_bin_training(tmp_path: Path) -> None:
    from harness.inputs.checkpoints.ip_adapter import unet_target_from_config

    target = unet_target_from_config(SMALL_UNET)
    training = build_training(target, "base", Encoder("clip", 40, 0), numbering="cross")
    expected = _release_from_truth(target, training)
    template = save_release(expected, tmp_path / "trusted.safetensors")
    ckpt = tmp_path / "pytorch_model.bin"
    torch.save(training.state, ckpt)
    for name in ("ip.bin", "ip.safetensors"):
        out = tmp_path / name
        argv = ["convert-ip-adapter", str(ckpt), str(out), "--template", str(template)]
        assert main(argv) == 0
        _assert_same(load_release(out), expected)
    assert [int(k.split(".")[0]) for k in expected["ip_adapter"]][::2] == list(range(1, 16, 2))


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nope.safetensors"
    assert main(["convert-ip-adapter", str(missing), str(tmp_path / "o.bin")]) == 2
    assert "does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint")
    assert main(["convert-ip-adapter", str(junk), str(tmp_path / "o.bin")]) == 2
    assert "cannot read" in capsys.readouterr().err
    target = conv.arch_target("sd15")
    ckpt = _save_flat(build_training(target, "base", VIT_H).state, tmp_path / "m.safetensors")
    assert main(["convert-ip-adapter", str(ckpt), str(tmp_path / "o.pt")]) == 2
    assert (
        main(["convert-ip-adapter", str(ckpt), str(tmp_path / "o.bin"), "--format", "safetensors"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("adapter-compat: error:") == 2


def test_wrong_numbering_forced_is_reported(tmp_path: Path) -> None:
    target = conv.arch_target("sd15")
    training = build_training(target, "base", VIT_H, numbering="cross")
    _, report = conv.convert(training.state, target=target, numbering="processor")
    assert not report.ok and report.missing and report.unexpected


def test_release_round_trip_of_files(tmp_path: Path) -> None:
    target = conv.arch_target("sd15")
    release = _release_from_truth(
        target, build_training(target, "faceid", VIT_H, numbering="processor")
    )
    for name in ("a.bin", "a.safetensors"):
        _assert_same(load_release(save_release(release, tmp_path / name)), release)
