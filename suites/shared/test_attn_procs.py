"""The legacy attention-processor route of the UNet: ``save_attn_procs`` / ``load_attn_procs``.

Still public in 0.42.1 for Custom Diffusion weights (``train_custom_diffusion.py`` saves with
``unet.save_attn_procs``; users load with ``pipe.unet.load_attn_procs(folder,
weight_name=...)``), and until 0.39 for LoRA files in the attention-processor layout of
diffusers' early training scripts. Inputs: :mod:`harness.inputs.checkpoints.legacy_attn_procs`;
oracles: the file's own tensors, plain-torch cross-attention
(:mod:`harness.oracles.custom_diffusion`) and the LoRA reference
(:mod:`harness.oracles.lora`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from harness.drivers.attn_procs import (
    ATTN_PROCS_LORA_REMOVED,
    cross_attentions,
    custom_diffusion_processors,
    layer_weights,
    probe_inputs,
    processor_shapes,
    run_layer,
)
from harness.inputs.checkpoints.legacy_attn_procs import attn_procs_lora_key, custom_diffusion_file
from harness.oracles.custom_diffusion import cross_attention
from harness.oracles.lora import Reference
from harness.protocol.outcomes import Outcome
from harness.scenarios.model_api import denoiser_lora, missing_methods

ARCHES = ("sd15", "sdxl")
#: The two files ``save_attn_procs`` writes: safetensors (default; processors without
#: tensors are left out) and the pickle layout (every processor, empty ones as ``{}``).
FILE_KINDS = ("safetensors", "bin")
WEIGHT_NAME = {
    "safetensors": "pytorch_custom_diffusion_weights.safetensors",
    "bin": "pytorch_custom_diffusion_weights.bin",
}
LOAD_CASES = [(a, k) for a in ARCHES for k in FILE_KINDS]


@pytest.fixture(scope="session")
def scene_for(zoo: Any) -> Any:
    from harness.scenarios.lora import scene_cache

    return scene_cache(zoo)


def _unet(compat: Any, zoo: Any, arch: str, *methods: str) -> Any:
    unet = zoo.get(arch).unet
    missing = missing_methods(unet, methods)
    compat.require(not missing, f"{type(unet).__name__} has no {', '.join(missing)}")
    return unet


@pytest.mark.parametrize("arch", ARCHES)
def test_custom_diffusion_save(compat: Any, zoo: Any, tmp_path: Path, arch: str) -> None:
    """Custom Diffusion processors installed as the training script does, then
    ``save_attn_procs(dir, weight_name=...safetensors)``: the file holds every trained
    projection under ``<processor>.to_k/v_custom_diffusion.weight`` with its values, and
    nothing else."""
    compat.param(arch=arch, level="model", file="safetensors")
    compat.valid_input("Custom Diffusion processors set as train_custom_diffusion.py does")
    unet = _unet(compat, zoo, arch, "save_attn_procs")
    weights = custom_diffusion_file(processor_shapes(unet), seed=40)
    procs = custom_diffusion_processors(unet, weights)  # our build of the training set-up
    with compat.library_call():
        unet.set_attn_processor(procs)
    # Saving takes no input of ours: the library failing on its own processors (0.26-0.29
    # hand a dict to safetensors) is a crash, not a refusal of valid input.
    with compat.library_call(late=True):
        unet.save_attn_procs(str(tmp_path), weight_name=WEIGHT_NAME["safetensors"])
    from safetensors.torch import load_file

    path = tmp_path / WEIGHT_NAME["safetensors"]
    if not path.is_file():
        compat.finding(Outcome.DROPPED_KEYS, f"save_attn_procs wrote no {path.name}")
    saved = load_file(str(path))  # our read of the file
    missing = sorted(set(weights) - set(saved))
    extra = sorted(set(saved) - set(weights))
    changed = sorted(
        k
        for k in set(weights) & set(saved)
        if saved[k].shape != weights[k].shape
        or not torch.equal(saved[k].to(weights[k].dtype), weights[k])
    )
    compat.detail(saved=len(saved), expected=len(weights), missing=missing[:10], extra=extra[:10])
    if missing:
        compat.finding(
            Outcome.DROPPED_KEYS,
            f"save_attn_procs left out {len(missing)} trained tensor(s): {', '.join(missing[:4])}",
        )
    if changed or extra:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"save_attn_procs wrote {len(changed)} changed and {len(extra)} unknown tensor(s): "
            + ", ".join((changed + extra)[:4]),
        )


def _write_custom_diffusion(
    folder: Path, kind: str, weights: dict[str, torch.Tensor], processors: list[str]
) -> str:
    """The file ``save_attn_procs`` would write (ours): safetensors with the tensors only,
    or the pickle layout with ``{}`` for every processor without tensors."""
    name = WEIGHT_NAME[kind]
    if kind == "safetensors":
        from safetensors.torch import save_file

        save_file(weights, str(folder / name), metadata={"format": "pt"})
    else:
        trained = {k.rsplit(".", 2)[0] for k in weights}
        layout: dict[str, Any] = dict(weights)
        layout.update({p: {} for p in processors if p not in trained})
        torch.save(layout, folder / name)
    return name


@pytest.mark.parametrize("arch,kind", LOAD_CASES, ids=[f"{a}-{k}" for a, k in LOAD_CASES])
def test_custom_diffusion_load(
    compat: Any, zoo: Any, tmp_path: Path, arch: str, kind: str, dtype: Any
) -> None:
    """``unet.load_attn_procs(dir, weight_name=...)`` of a Custom Diffusion file: every
    cross-attention layer computes ``to_out(softmax(q kᵀ/√d) v)`` with k / v from the
    file's projections (plain-torch oracle). Unchanged layers: SILENT_NOOP."""
    compat.param(arch=arch, level="model", file=kind)
    compat.valid_input(f"a Custom Diffusion {kind} file as save_attn_procs writes it")
    unet = _unet(compat, zoo, arch, "load_attn_procs")
    weights = custom_diffusion_file(processor_shapes(unet), seed=41)
    name = _write_custom_diffusion(tmp_path, kind, weights, list(unet.attn_processors))
    layers = cross_attentions(unet)
    own = {p: layer_weights(m) for p, m in layers.items()}  # pristine, read before the load
    with compat.library_call(names=[name]):
        unet.load_attn_procs(str(tmp_path), weight_name=name)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    unchanged, wrong = [], {}
    for i, (proc, module) in enumerate(sorted(layers.items())):
        hidden, context = probe_inputs(module, seed=100 + i)
        with compat.library_call(late=True):
            got = run_layer(module, hidden, context)
        heads = module.heads
        k, v = (weights[f"{proc}.{p}_custom_diffusion.weight"] for p in ("to_k", "to_v"))
        expected = cross_attention(hidden, context, own[proc], k, v, heads)
        without = cross_attention(
            hidden, context, own[proc], own[proc]["to_k.weight"], own[proc]["to_v.weight"], heads
        )
        scale = float(expected.abs().max()) + 1e-6
        err = float((got - expected).abs().max())
        if err <= tol * scale:
            continue
        if float((got - without).abs().max()) <= tol * scale:
            unchanged.append(proc)
        else:
            wrong[proc] = err
    compat.detail(
        layers=len(layers), unchanged=unchanged[:10], wrong=dict(list(wrong.items())[:10])
    )
    if wrong:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"{len(wrong)} cross-attention layer(s) compute neither the file's k/v nor their "
            f"own: {', '.join(list(wrong)[:3])}",
        )
    if unchanged:
        compat.finding(
            Outcome.SILENT_NOOP,
            f"load_attn_procs returned without error, but {len(unchanged)} of {len(layers)} "
            f"cross-attention layer(s) still use their own k/v: {', '.join(unchanged[:3])}",
        )


def _attention_only(ref: Reference, scene: Any, component: str) -> Reference:
    """The reference restricted to attention projections (what the layout can carry)."""
    layout = scene.layout[component]
    terms = {
        key: terms
        for key, terms in ref.terms.items()
        if attn_procs_lora_key(layout.real_path(key[1]), "down") is not None
    }
    if not terms:  # a row over no module would pass vacuously: our bug
        raise RuntimeError(f"no attention projection among the {component} LoRA's modules")
    return Reference(terms, [], ref.format)


@pytest.mark.parametrize("arch", ARCHES)
def test_attn_procs_lora(compat: Any, scene_for: Any, tmp_path: Path, arch: str) -> None:
    """A LoRA in the attention-processor layout (``...attn1.processor.to_q_lora.down.weight``,
    rank 4, no alpha) loaded with ``unet.load_attn_procs(dir, weight_name=...)``: the
    reference effect on every attention projection. From 0.40 the method reads Custom
    Diffusion files only (announced since 0.32), so there a clear refusal naming the file
    passes too; a call that returns having loaded nothing is SILENT_NOOP."""
    compat.param(arch=arch, level="model", format="attn_procs_lora")
    if ATTN_PROCS_LORA_REMOVED.holds():
        compat.may_reject("a LoRA file; load_attn_procs reads Custom Diffusion only from 0.40")
    else:
        compat.valid_input("a complete attention-processor LoRA file")
    scene = scene_for(arch)
    ref = _attention_only(denoiser_lora(scene, "legacy", seed=42).ref, scene, "unet")
    layout = scene.layout["unet"]
    state: dict[str, torch.Tensor] = {}
    for (_, module), terms in ref.terms.items():
        path = layout.real_path(module)
        state[attn_procs_lora_key(path, "down")] = terms[0].down.to(torch.float32).contiguous()
        state[attn_procs_lora_key(path, "up")] = terms[0].up.to(torch.float32).contiguous()
    from safetensors.torch import save_file

    name = "pytorch_lora_weights.safetensors"
    save_file(state, str(tmp_path / name))
    pipe = scene.fresh()
    unet = pipe.unet
    compat.require(not missing_methods(unet, ["load_attn_procs"]), "no UNet.load_attn_procs")
    with compat.library_call(names=[name]):
        unet.load_attn_procs(str(tmp_path), weight_name=name)
    observed = scene.compare(scene.observe(pipe), ref)  # our probe
    if not any(c.matched or c.wrong or c.unexpected for c in observed.values()):
        compat.finding(
            Outcome.SILENT_NOOP,
            f"load_attn_procs returned without error but none of the {len(ref.terms)} "
            "targeted modules changed",
        )
    scene.expect_effect(compat, pipe, ref, "unet.load_attn_procs(<attention-processor LoRA>)")
