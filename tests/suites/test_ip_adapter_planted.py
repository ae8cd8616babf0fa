"""The IP-Adapter checks can fail: each planted bug flips its check to "regression", and
the unpatched library passes.

Planted in the installed (newest) diffusers / in our converter, in-process:

(a) an ``unload_ip_adapter`` that forgets the image encoder and the IP processors;
(b) our converter numbering ``adapter_modules`` from 0 instead of the processor ids;
(c) the device -> device_map drift: ``load_model_dict_into_meta`` accepts only ``device_map`` while the
    IP-Adapter call sites pass ``device=`` (the meta / low_cpu_mem_usage path);
(d) the other direction for the width-swap family: a loader that re-selects the image
    encoder on a width change (the SD.Next fix) makes the swap check pass, one that
    validates the width at load time makes the mismatch check pass — so those checks are
    red in the grid because of the library, not because they cannot be green;
(f) a load that exchanges two same-shape image-projection tensors (a search by value
    would find both): the weight check names the key and parameter, the projection
    forward check disagrees too;
(g) a resampler block that applies its two input LayerNorms to the wrong streams (weights
    all in place): only the projection forward check turns red;
(h) an IP attention processor whose image branch takes values from ``to_k_ip``: the
    branch check turns red.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")

from harness.protocol.records import read_records  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "suites" / "ip_adapter"


def run_suite(tmp_path: Path, select: str | list[str], tag: str) -> dict[str, tuple[str, str]]:
    """Run the IP-Adapter suite in-process (``select``: a ``-k`` expression, or node ids
    relative to the suite folder); check id -> (verdict, observed)."""
    results = tmp_path / f"{tag}.jsonl"
    where = (
        [str(SUITE / n) for n in select] if isinstance(select, list) else [str(SUITE), "-k", select]
    )
    code = pytest.main(
        [
            *where,
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(REPO),
            "--compat-results",
            str(results),
        ]
    )
    assert code in (0, 1), f"inner pytest exited {code}"
    records = [r for r in read_records([results]) if r.get("kind") == "check"]
    assert records, f"no checks selected by {select!r}"
    return {r["check_id"]: (r["verdict"], r["observed"]) for r in records}


def _verdicts(results: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, (v, _) in results.items()}


# -- (a) unload that keeps the image encoder and the IP processors -------------------------
UNLOAD_SELECT = "restores_state and sd15 or restores_components and sdxl"


def test_unload_that_forgets_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = run_suite(tmp_path, UNLOAD_SELECT, "clean")
    assert _verdicts(clean) == {
        "ip_adapter/unload::restores_state[sd15]": "pass",
        "ip_adapter/unload::restores_components[sdxl]": "pass",
    }

    from diffusers.loaders.ip_adapter import IPAdapterMixin

    def forgetful_unload(self: Any) -> None:
        # Drops the projection, but keeps image_encoder / feature_extractor registered and
        # leaves the IPAdapterAttnProcessor2_0 instances in the UNet.
        self.unet.encoder_hid_proj = None
        self.unet.config.encoder_hid_dim_type = None

    monkeypatch.setattr(IPAdapterMixin, "unload_ip_adapter", forgetful_unload)
    planted = run_suite(tmp_path, UNLOAD_SELECT, "planted")
    assert planted == {
        "ip_adapter/unload::restores_state[sd15]": ("regression", "STALE_STATE"),
        "ip_adapter/unload::restores_components[sdxl]": ("regression", "STALE_STATE"),
    }


# -- (b) converter numbering from 0 ---------------------------------------------------------
CONVERT_SELECT = "round_trip and sd15-base"


def test_converter_numbering_from_zero_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = run_suite(tmp_path, CONVERT_SELECT, "clean")
    assert _verdicts(clean) == {
        "ip_adapter/convert::round_trip[sd15-base-cross-safetensors]": "pass"
    }

    from harness.convert import ip_adapter as converter

    real = converter.release_id

    def from_zero(index: int, numbering: str, ip_ids: Any) -> int | None:
        rid = real(index, numbering, ip_ids)
        return None if rid is None else rid - 1  # 0, 2, 4, ... instead of 1, 3, 5, ...

    monkeypatch.setattr(converter, "release_id", from_zero)
    planted = run_suite(tmp_path, CONVERT_SELECT, "planted")
    assert planted == {
        "ip_adapter/convert::round_trip[sd15-base-cross-safetensors]": (
            "regression",
            "WRONG_RESULT",
        )
    }


# -- (c) device -> device_map drift on the meta path -----------------------------------------
META_SELECT = "low_cpu_mem_usage and (sd15-base or flux-base)"

#: Modules whose IP-Adapter code imported load_model_dict_into_meta by name.
CALL_SITE_MODULES = (
    "diffusers.loaders.unet",
    "diffusers.loaders.transformer_flux",
    "diffusers.loaders.transformer_sd3",
)


def test_device_keyword_drift_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from diffusers.models import model_loading_utils

    real = model_loading_utils.load_model_dict_into_meta
    calls: list[str] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(sorted(kwargs))
        return real(*args, **kwargs)

    sites = [importlib.import_module(m) for m in CALL_SITE_MODULES]
    sites = [m for m in sites if hasattr(m, "load_model_dict_into_meta")]
    for module in sites:
        monkeypatch.setattr(module, "load_model_dict_into_meta", spy)
    clean = run_suite(tmp_path, META_SELECT, "clean")
    assert set(_verdicts(clean).values()) == {"pass"}, clean
    assert calls, "low_cpu_mem_usage=True never reached load_model_dict_into_meta"

    signature = inspect.signature(real)
    assert "device" not in signature.parameters and "device_map" in signature.parameters

    def callee_accepting_only_device_map(*args: Any, **kwargs: Any) -> Any:
        signature.bind(*args, **kwargs)  # TypeError: unexpected keyword argument 'device'
        return real(*args, **kwargs)

    def call_site_passing_device(
        model: Any, state_dict: Any, device_map: Any = None, **kw: Any
    ) -> Any:
        # The pre-0.33 call: device=<torch.device> instead of device_map={"": device}.
        device = None if device_map is None else device_map[""]
        return model_loading_utils.load_model_dict_into_meta(model, state_dict, device=device, **kw)

    monkeypatch.setattr(
        model_loading_utils, "load_model_dict_into_meta", callee_accepting_only_device_map
    )
    for module in sites:
        monkeypatch.setattr(module, "load_model_dict_into_meta", call_site_passing_device)
    planted = run_suite(tmp_path, META_SELECT, "planted")
    assert {v for v, _ in planted.values()} == {"regression"}, planted
    assert set(planted) == set(clean)


# -- (d) the width-swap family can pass ----------------------------------------------------
SWAP_SELECT = [
    "test_swap.py::test_width_swap[sd15-h>G]",
    "test_swap.py::test_encoder_mismatch[sd15-base-vitG]",
]


def test_width_swap_checks_can_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = run_suite(tmp_path, SWAP_SELECT, "clean")
    assert clean == {
        "ip_adapter/swap::width_swap[sd15-h>G]": ("regression", "CRASH"),
        "ip_adapter/swap::encoder_mismatch[sd15-base-vitG]": ("regression", "CRASH"),
    }

    from diffusers.loaders.ip_adapter import IPAdapterMixin
    from safetensors import safe_open

    real_load = IPAdapterMixin.load_ip_adapter

    def width_aware_load(
        self: Any,
        pretrained_model_name_or_path_or_dict: Any,
        subfolder: Any,
        weight_name: Any,
        image_encoder_folder: Any = "image_encoder",
        **kw: Any,
    ) -> Any:
        root = Path(pretrained_model_name_or_path_or_dict)
        folder = image_encoder_folder
        if "/" not in str(folder):
            folder = f"{subfolder}/{folder}"
        config = json.loads((root / folder / "config.json").read_text())
        with safe_open(str(root / subfolder / weight_name), "pt") as f:
            needed = f.get_slice("image_proj.proj.weight").get_shape()[1]
        if needed != config["projection_dim"]:  # validate at load time
            raise ValueError(
                f"{weight_name} needs a {needed}-wide image encoder; "
                f"{folder} is {config['projection_dim']} wide"
            )
        current = getattr(self, "image_encoder", None)
        if current is not None and current.config.projection_dim != needed:
            self.image_encoder = None  # re-select the encoder on a width change
        return real_load(
            self,
            pretrained_model_name_or_path_or_dict,
            subfolder,
            weight_name,
            image_encoder_folder=image_encoder_folder,
            **kw,
        )

    monkeypatch.setattr(IPAdapterMixin, "load_ip_adapter", width_aware_load)
    fixed = run_suite(tmp_path, SWAP_SELECT, "fixed")
    assert fixed == {
        "ip_adapter/swap::width_swap[sd15-h>G]": ("pass", "OK"),
        "ip_adapter/swap::encoder_mismatch[sd15-base-vitG]": ("pass", "CLEAR_ERROR"),
    }


def test_width_mismatch_caught_only_at_inference_is_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(e) A loader that accepts the wrong-width encoder and a pipeline that only notices at
    inference, with a clean, well-worded ValueError: still a finding (a late failure), never
    the load-time rejection the check demands."""
    cls = diffusers.StableDiffusionPipeline

    def late_check(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("image embeddings are 1280 wide; the IP-Adapter projection expects 1024")

    monkeypatch.setattr(cls, "prepare_ip_adapter_image_embeds", late_check)
    node = "test_swap.py::test_encoder_mismatch[sd15-base-vitG]"
    results = tmp_path / "late.jsonl"
    code = pytest.main(
        [str(SUITE / node), "-q", "-p", "no:cacheprovider", "--compat-results", str(results)]
    )
    assert code in (0, 1)
    (record,) = [r for r in read_records([results]) if r.get("kind") == "check"]
    assert (record["verdict"], record["observed"]) == ("regression", "CRASH"), record
    assert "late failure" in record["details"]["reason"], record["details"]


# -- (f) two same-shape image-projection tensors exchanged during the load ----------------
EXCHANGE_SELECT = [
    "test_load.py::test_weights[sd15-plus-safetensors]",
    "test_forward.py::test_projection_forward[sd15-plus]",
]
#: Same block, same shape: the by-value oracle this check replaced found both tensors.
EXCHANGED = ("layers.0.ln0.weight", "layers.0.ln1.weight")


def test_exchanged_projection_tensors_are_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = run_suite(tmp_path, EXCHANGE_SELECT, "clean")
    assert _verdicts(clean) == {
        "ip_adapter/load::weights[sd15-plus-safetensors]": "pass",
        "ip_adapter/forward::projection_forward[sd15-plus]": "pass",
    }

    import torch
    from diffusers.loaders.unet import UNet2DConditionLoadersMixin

    real = UNet2DConditionLoadersMixin._convert_ip_adapter_image_proj_to_diffusers
    exchanged: list[str] = []

    def exchanging(self: Any, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        module = real(self, state_dict, *args, **kwargs)
        params = dict(module.named_parameters())
        a, b = (params[name] for name in EXCHANGED)
        assert a.shape == b.shape
        with torch.no_grad():
            held = a.detach().clone()
            a.copy_(b)
            b.copy_(held)
        exchanged.append(type(module).__name__)
        return module

    monkeypatch.setattr(
        UNet2DConditionLoadersMixin, "_convert_ip_adapter_image_proj_to_diffusers", exchanging
    )
    planted = run_suite(tmp_path, EXCHANGE_SELECT, "exchanged")
    assert exchanged, "the planted exchange never ran"
    assert planted == {
        "ip_adapter/load::weights[sd15-plus-safetensors]": ("regression", "WRONG_RESULT"),
        "ip_adapter/forward::projection_forward[sd15-plus]": ("regression", "WRONG_RESULT"),
    }
    reasons = _reasons(tmp_path, "exchanged")
    weights_reason = reasons["ip_adapter/load::weights[sd15-plus-safetensors]"]
    assert "layers.0.0.norm1.weight -> layers.0.ln0.weight" in weights_reason, weights_reason
    assert "layers.0.0.norm2.weight -> layers.0.ln1.weight" in weights_reason, weights_reason


def _reasons(tmp_path: Path, tag: str) -> dict[str, str]:
    records = read_records([tmp_path / f"{tag}.jsonl"])
    return {
        r["check_id"]: str(r["details"].get("reason", ""))
        for r in records
        if r.get("kind") == "check"
    }


# -- (g) a resampler block feeding its LayerNorms the wrong streams ------------------------
NORMS_SELECT = EXCHANGE_SELECT


def test_wrong_projection_forward_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = run_suite(tmp_path, NORMS_SELECT, "clean")
    assert set(_verdicts(clean).values()) == {"pass"}, clean

    import torch
    from diffusers.models.embeddings import IPAdapterPlusImageProjectionBlock

    calls: list[int] = []

    def crossed_norms(self: Any, x: Any, latents: Any, residual: Any) -> Any:
        calls.append(1)
        encoder_hidden_states = self.ln1(x)  # ln0 belongs to the image features
        latents = self.ln0(latents)
        encoder_hidden_states = torch.cat([encoder_hidden_states, latents], dim=-2)
        latents = self.attn(latents, encoder_hidden_states) + residual
        return self.ff(latents) + latents

    monkeypatch.setattr(IPAdapterPlusImageProjectionBlock, "forward", crossed_norms)
    planted = run_suite(tmp_path, NORMS_SELECT, "crossed")
    assert calls, "the planted block forward never ran"
    assert planted == {
        "ip_adapter/load::weights[sd15-plus-safetensors]": ("pass", "OK"),
        "ip_adapter/forward::projection_forward[sd15-plus]": ("regression", "WRONG_RESULT"),
    }


# -- (h) an image branch that takes its values from to_k_ip --------------------------------
BRANCH_SELECT = [
    "test_forward.py::test_ip_attention_branch[sd15-base]",
    "test_load.py::test_weights[sd15-base-safetensors]",
]


def test_wrong_ip_attention_branch_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = run_suite(tmp_path, BRANCH_SELECT, "clean")
    assert set(_verdicts(clean).values()) == {"pass"}, clean

    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    real_call = IPAdapterAttnProcessor2_0.__call__
    calls: list[int] = []

    def keys_as_values(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        values = self.to_v_ip
        self.to_v_ip = self.to_k_ip  # the branch computes v_ip with to_k_ip
        try:
            return real_call(self, *args, **kwargs)
        finally:
            self.to_v_ip = values

    monkeypatch.setattr(IPAdapterAttnProcessor2_0, "__call__", keys_as_values)
    planted = run_suite(tmp_path, BRANCH_SELECT, "keys-as-values")
    assert calls, "the planted processor never ran"
    assert planted == {
        "ip_adapter/forward::ip_attention_branch[sd15-base]": ("regression", "WRONG_RESULT"),
        "ip_adapter/load::weights[sd15-base-safetensors]": ("pass", "OK"),
    }
