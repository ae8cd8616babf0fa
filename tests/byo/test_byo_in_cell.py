"""The in-cell BYO LoRA checks (``suites/lora/test_byo.py``) on small real files, run in
this process against the installed diffusers:

* an SDXL kohya file with diffusers block names and no cross-attention keys is checked as
  SDXL and passes on the unpatched library; a planted converter that drops a key turns it red;
* an SD3 PEFT file is checked against the SD3 layout the same way (pass; a planted drop: red);
* a file whose keys place nowhere is "not understood" (skipped with that reason), never a
  pass; with the placement gate planted open it would have passed on nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from harness.protocol.records import read_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "lora" / "test_byo.py"
REACHES = "lora/byo::user_file_reaches_the_model"


def save(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    tensors = {
        k: (torch.tensor(4.0) if not s else torch.randn(*s, generator=gen) * 0.1).to(torch.float16)
        for k, s in shapes.items()
    }
    save_file(tensors, str(path))
    return path


def sdxl_diffusers_names(path: Path) -> Path:
    """Depth-2 SDXL attention (down block 1), attn1 / ff only: no ``attn2`` to go by."""
    shapes: dict[str, tuple[int, ...]] = {}
    for depth in range(2):
        base = f"lora_unet_down_blocks_1_attentions_0_transformer_blocks_{depth}"
        for layer, (n_in, n_out) in {"attn1_to_q": (640, 640), "ff_net_2": (2560, 640)}.items():
            stem = f"{base}_{layer}"
            shapes[f"{stem}.lora_down.weight"] = (4, n_in)
            shapes[f"{stem}.lora_up.weight"] = (n_out, 4)
            shapes[f"{stem}.alpha"] = ()
    return save(path, shapes)


def sd3_peft(path: Path) -> Path:
    """SD3-medium joint attention (width 1536, context 4096), PEFT names as diffusers saves."""
    shapes: dict[str, tuple[int, ...]] = {}
    for block in range(2):
        for name in ("to_q", "to_k", "add_k_proj", "add_q_proj"):
            stem = f"transformer.transformer_blocks.{block}.attn.{name}"
            shapes[f"{stem}.lora_A.weight"] = (4, 1536)
            shapes[f"{stem}.lora_B.weight"] = (1536, 4)
    shapes["transformer.context_embedder.lora_A.weight"] = (4, 4096)
    shapes["transformer.context_embedder.lora_B.weight"] = (1536, 4)
    return save(path, shapes)


def nowhere(path: Path) -> Path:
    """SD1.5 block structure, layer names no model has."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(2):
        stem = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_z{i}"
        shapes[f"{stem}.lora_down.weight"] = (4, 320)
        shapes[f"{stem}.lora_up.weight"] = (320, 4)
    return save(path, shapes)


def run_byo(tmp_path: Path, user: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    monkeypatch.setenv("ADAPTER_COMPAT_USER_FILE", str(user))
    results = tmp_path / f"{user.stem}-{len(list(tmp_path.glob('*.jsonl')))}.jsonl"
    code = pytest.main(
        [str(SUITE), "-q", "-p", "no:cacheprovider", "--compat-results", str(results),
         "--compat-cell", "selftest"]
    )  # fmt: skip
    assert code in (0, 1), f"inner pytest failed to run ({code})"
    return {r["check_id"]: r for r in read_records([results]) if r.get("kind") == "check"}


def test_sdxl_with_diffusers_block_names_is_checked_as_sdxl(tmp_path: Path, monkeypatch) -> None:
    user = sdxl_diffusers_names(tmp_path / "sdxl_lora.safetensors")
    record = run_byo(tmp_path, user, monkeypatch)[REACHES]
    assert record["params"]["arch"] == "sdxl", record["details"]
    assert record["verdict"] == "pass", record["message"] or record["details"]
    assert record["details"]["modules_placed"] == 4

    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.StableDiffusionXLLoraLoaderMixin.lora_state_dict.__func__

    def dropping(cls, *args, **kwargs):  # planted: a converter that loses one module
        out = original(cls, *args, **kwargs)
        state_dict = out[0] if isinstance(out, tuple) else out
        for key in [k for k in state_dict if "transformer_blocks.1.ff" in k]:
            del state_dict[key]
        return out

    monkeypatch.setattr(
        lora_pipeline.StableDiffusionXLLoraLoaderMixin, "lora_state_dict", classmethod(dropping)
    )
    planted = run_byo(tmp_path, user, monkeypatch)[REACHES]
    assert planted["verdict"] == "regression" and planted["observed"] == "DROPPED_KEYS"


def test_sd3_file_is_checked_and_a_dropped_key_turns_it_red(tmp_path: Path, monkeypatch) -> None:
    user = sd3_peft(tmp_path / "sd3_lora.safetensors")
    record = run_byo(tmp_path, user, monkeypatch)[REACHES]
    assert record["params"]["arch"] == "sd3", record["details"]
    assert record["verdict"] == "pass", record["message"] or record["details"]
    assert record["details"]["modules_placed"] == 9

    from diffusers.loaders import lora_pipeline

    original = lora_pipeline.SD3LoraLoaderMixin.lora_state_dict.__func__

    def dropping(cls, *args, **kwargs):  # planted: the SD3 loader loses one module
        out = original(cls, *args, **kwargs)
        state_dict = out[0] if isinstance(out, tuple) else out
        for key in [k for k in state_dict if "transformer_blocks.1.attn.add_q_proj" in k]:
            del state_dict[key]
        return out

    monkeypatch.setattr(lora_pipeline.SD3LoraLoaderMixin, "lora_state_dict", classmethod(dropping))
    planted = run_byo(tmp_path, user, monkeypatch)[REACHES]
    assert planted["verdict"] == "regression" and planted["observed"] == "DROPPED_KEYS"


def test_keys_that_place_nowhere_are_not_understood(tmp_path: Path, monkeypatch) -> None:
    user = nowhere(tmp_path / "odd_lora.safetensors")
    record = run_byo(tmp_path, user, monkeypatch)[REACHES]
    assert record["verdict"] == "skipped"
    assert "not understood: 4 of 4 keys" in record["details"]["reason"]
    assert "lora_unet_down_blocks_N_attentions_N (4)" in record["details"]["reason"]

    # planted: the gate open — the check then "passes" a file it judged nothing of
    from harness.byo import lora

    monkeypatch.setattr(lora.Placement, "understood", property(lambda self: True))
    planted = run_byo(tmp_path, user, monkeypatch)[REACHES]
    assert planted["verdict"] == "pass"
