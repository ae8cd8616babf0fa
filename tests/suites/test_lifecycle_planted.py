"""Planted bugs for the lifecycle checks in the newest cell, in-process.

(a) a hot-swap that copies lora_A but keeps the old lora_B of one layer (patched at the
    seam diffusers calls: ``peft.utils.hotswap.hotswap_adapter_from_state_dict``, imported
    inside ``load_lora_adapter``) -> the hot-swap check and the state machine (narrowed to
    load + hotswap rules) turn to regression, and the machine's shrunk standalone script
    exits 1 with the bug planted in its process;
(c) an IP-Adapter swap that keeps the previous image projection (``load_ip_adapter`` puts
    the old ``encoder_hid_proj`` back) -> the IP swap check turns to regression.
(b) (shared modules) lives with the shared-components suite.
(d) a hot-swap of an equal-rank adapter (documented to work) refused with a clean
    ValueError naming the module -> REFUSED, a regression, not a "clear error" pass;
(e) an exception inside our own zoo copy (``Scene.fresh``) -> HARNESS_ERROR, never a
    library finding.

Two inner pytest sessions (clean, planted) keep it fast: every planted bug only touches the
checks it exists for, so they are planted together.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("peft.utils.hotswap")

from harness.protocol.records import read_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "lifecycle"
HOTSWAP = "test_hotswap.py::test_hotswap[sd15-equal-rank]"
IP_SWAP = "test_hotswap.py::test_ip_swap[sd15-same]"
MACHINE = "test_machine.py::test_state_machine[sd15-lora]"
HOTSWAP_SDXL = "test_hotswap.py::test_hotswap[sdxl-equal-rank]"
KNOBS = {
    "ADAPTER_COMPAT_LIFECYCLE_EXAMPLES": "3",
    "ADAPTER_COMPAT_LIFECYCLE_STEPS": "4",
    "ADAPTER_COMPAT_LIFECYCLE_SHRINK_S": "5",
    # denoiser-only files: a text-encoder hotswap is a real finding, not the planted one
    "ADAPTER_COMPAT_LIFECYCLE_PARTS": "denoiser",
    "ADAPTER_COMPAT_LIFECYCLE_RULES": "load,hotswap",
    # one rank: a hotswap to another rank swaps the caller's tensors (a real finding)
    "ADAPTER_COMPAT_LIFECYCLE_RANKS": "4",
}


def session(tmp: Path, nodes: list[str], tag: str) -> dict[str, dict[str, Any]]:
    """Run ``nodes`` of the lifecycle suite in this process -> {node id: record}."""
    results = tmp / f"{tag}.jsonl"
    code = pytest.main(
        [*(str(SUITE / n) for n in nodes), "-q", "-p", "no:cacheprovider",
         "--rootdir", str(ROOT), "--compat-results", str(results)]
    )  # fmt: skip
    assert code in (0, 1), f"inner pytest exited {code}"
    records = [r for r in read_records([results]) if r.get("kind") == "check"]
    assert len(records) == len(nodes), [r.get("check_id") for r in records]
    out = {}
    for node in nodes:
        func, param = node.split("::test_")[1].split("[")
        out[node] = next(r for r in records if r["check_id"].endswith(f"::{func}[{param}"))
    return out


def plant_stale_lora_b(monkeypatch: pytest.MonkeyPatch) -> None:
    import peft.utils.hotswap as hotswap

    real = hotswap.hotswap_adapter_from_state_dict

    def partial(model: Any, state_dict: dict, adapter_name: str, *args: Any, **kw: Any) -> Any:
        key = next(k for k in state_dict if ".lora_B." in k)
        module = model.get_submodule(key.split(".lora_B.")[0])
        old = module.lora_B[adapter_name].weight.detach().clone()
        out = real(model, state_dict, adapter_name, *args, **kw)
        if module.lora_B[adapter_name].weight.shape == old.shape:
            module.lora_B[adapter_name].weight.data.copy_(old)  # lora_A new, lora_B old
        return out

    monkeypatch.setattr(hotswap, "hotswap_adapter_from_state_dict", partial)


def plant_sticky_projection(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.loaders.ip_adapter import IPAdapterMixin

    real = IPAdapterMixin.load_ip_adapter

    def sticky(self: Any, *args: Any, **kwargs: Any) -> Any:
        old = getattr(self.unet, "encoder_hid_proj", None)
        out = real(self, *args, **kwargs)
        if old is not None:
            self.unet.encoder_hid_proj = old  # the previous image projection stays
        return out

    monkeypatch.setattr(IPAdapterMixin, "load_ip_adapter", sticky)


@pytest.fixture(scope="module")
def knobs() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in KNOBS.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def clean(knobs: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    nodes = [HOTSWAP, IP_SWAP, MACHINE, HOTSWAP_SDXL]
    return session(tmp_path_factory.mktemp("clean"), nodes, "clean")


@pytest.fixture(scope="module")
def planted(knobs: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        plant_stale_lora_b(mp)
        plant_sticky_projection(mp)
        return session(tmp_path_factory.mktemp("planted"), [HOTSWAP, IP_SWAP, MACHINE], "p")


def plant_refused_equal_rank_swap(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_lora_weights(hotswap=True)`` refuses up front, cleanly, naming a key."""
    cls = diffusers.StableDiffusionPipeline
    real = cls.load_lora_weights

    def refuse(self: Any, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("hotswap") and isinstance(state_dict, dict):
            key = next(iter(state_dict))
            raise ValueError(f"cannot hot-swap adapter {kwargs.get('adapter_name')!r}: {key}")
        return real(self, state_dict, *args, **kwargs)

    monkeypatch.setattr(cls, "load_lora_weights", refuse)


def plant_zoo_copy_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.scenarios.lora import Scene

    real = Scene.fresh

    def fresh(self: Any) -> Any:
        if self.arch == "sdxl":
            raise ValueError("our deep copy of the sdxl zoo pipeline broke")
        return real(self)

    monkeypatch.setattr(Scene, "fresh", fresh)


@pytest.fixture(scope="module")
def planted_refusal(knobs: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        plant_refused_equal_rank_swap(mp)
        plant_zoo_copy_failure(mp)
        return session(tmp_path_factory.mktemp("refusal"), [HOTSWAP, HOTSWAP_SDXL], "r")


def test_refused_documented_hotswap_is_a_regression(planted_refusal: dict[str, Any]) -> None:
    """Before this rule the clean, key-naming ValueError was a "clear error" pass."""
    record = planted_refusal[HOTSWAP]
    assert (record["verdict"], record["observed"]) == ("regression", "REFUSED"), record


def test_our_zoo_copy_failing_is_a_harness_error(planted_refusal: dict[str, Any]) -> None:
    record = planted_refusal[HOTSWAP_SDXL]
    assert (record["verdict"], record["observed"]) == ("harness-error", "HARNESS_ERROR"), record


@pytest.mark.parametrize("node", [HOTSWAP, IP_SWAP, MACHINE, HOTSWAP_SDXL])
def test_unpatched_library_passes(clean: dict[str, Any], node: str) -> None:
    record = clean[node]
    assert record["verdict"] == "pass", record.get("message")


def test_hotswap_keeping_lora_b_is_caught(planted: dict[str, Any]) -> None:
    record = planted[HOTSWAP]
    assert (record["verdict"], record["observed"]) == ("regression", "WRONG_RESULT")


def test_ip_swap_keeping_projection_is_caught(planted: dict[str, Any]) -> None:
    record = planted[IP_SWAP]
    assert record["verdict"] == "regression", record.get("message")


def test_machine_catches_hotswap_and_its_repro_exits_1(
    planted: dict[str, Any], tmp_path: Path
) -> None:
    record = planted[MACHINE]
    assert record["verdict"] == "regression", record.get("message")
    assert "hotswap" in " ".join(record["details"]["shrunk_steps"])
    script = record["details"]["repro"]
    compile(script, "repro.py", "exec")
    # The planted bug lives in this process: re-plant it for the script via sitecustomize.
    (tmp_path / "sitecustomize.py").write_text(PLANT_SITE)
    path = tmp_path / "repro.py"
    path.write_text(script)
    env = {"PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "REPRODUCED" in proc.stdout


PLANT_SITE = """
import peft.utils.hotswap as hotswap
_real = hotswap.hotswap_adapter_from_state_dict
def _partial(model, state_dict, adapter_name, *args, **kw):
    key = next(k for k in state_dict if ".lora_B." in k)
    module = model.get_submodule(key.split(".lora_B.")[0])
    old = module.lora_B[adapter_name].weight.detach().clone()
    out = _real(model, state_dict, adapter_name, *args, **kw)
    if module.lora_B[adapter_name].weight.shape == old.shape:
        module.lora_B[adapter_name].weight.data.copy_(old)
    return out
hotswap.hotswap_adapter_from_state_dict = _partial
"""
