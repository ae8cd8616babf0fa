"""Flux Control LoRAs (Canny / Depth): LoRA pairs plus a widened input layer plus norm scales.

A control LoRA feeds the control image's latents in next to the noise, so the down matrix
of ``x_embedder`` (BFL ``img_in``) is twice as wide as the layer (64 -> 128 in Flux-dev),
and it carries the q/k RMSNorm scales in full. Loading one must widen ``x_embedder`` (the
base becomes ``[W | 0]``), apply every pair, and replace the norm scales; unloading with
``reset_to_overwritten_params=True`` must give the pristine transformer back.

The tiny Flux model takes the diffusers layout of such a file (``control``: what diffusers'
``train_control_lora_flux.py`` saves); the BFL layout (``control_bfl``) goes through a
converter that hard-codes Flux-dev's 19 + 38 blocks and is checked at full scale
(test_full_scale). Versions before the expansion logic (0.32) may refuse the file
clearly; there, a load that silently drops the norms or the input layer is a finding.
"""

from __future__ import annotations

import torch

from harness.cell.classify import Finding
from harness.drivers.lora import (
    has_reset_to_overwritten_params,
    judge_load,
    read_params,
    reported,
)
from harness.inputs.checkpoints.lora.cases import full_case, realise
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.oracles.lora import parse
from harness.protocol.outcomes import Outcome

FMT = "control"
EXPANDED = "x_embedder"


def control_file(scene, seed: int = 0):
    lora_format = FORMATS[FMT]
    case = full_case(lora_format, "flux", scene.layout, rank=4, alpha=None, seed=seed)
    built = realise(lora_format, "flux", scene.layout, case)
    ref = parse(built.state_dict, lora_format, "flux", scene.layout)
    if ref.unknown_keys or not ref.replaced:
        raise RuntimeError(f"reference cannot place {ref.unknown_keys[:3]} / has no norms")
    return built, ref


def _norm_paths(ref) -> list[str]:
    return sorted(path for _, path in ref.replaced)


def _judge_norms(compat, ref, before, after, msgs) -> None:
    """Each norm scale must now equal the file's value (cast to the model dtype)."""
    dropped, wrong = [], []
    for (_, path), (value, key) in sorted(ref.replaced.items()):
        have = after[path]
        if have is None:
            raise RuntimeError(f"the tiny transformer has no parameter {path}")
        want = value.to(have.dtype if have.dtype.is_floating_point else torch.float64)
        if torch.allclose(have, want, rtol=1e-6, atol=1e-7):
            continue
        (dropped if torch.equal(have, before[path]) else wrong).append(key)
    if wrong:
        compat.detail(wrong_norms=wrong[:10])
        compat.finding(Outcome.WRONG_RESULT, f"norm scale(s) set to other values: {wrong[:4]}")
    if dropped:
        compat.detail(dropped_keys=dropped[:20])
        if not reported(msgs, dropped + ["norm_q", "norm_k", "norm_added"]):
            compat.finding(
                Outcome.DROPPED_KEYS,
                f"{len(dropped)} norm scale(s) had no effect, no warning: {dropped[:4]}",
            )


def test_control_load(compat, scene_for) -> None:
    """load_lora_weights(control file): widened x_embedder, every pair, the norm scales."""
    compat.param(arch="flux", format=FMT)
    scene = scene_for("flux")
    pipe = scene.fresh()
    compat.valid_input(f"complete {FMT} file for flux")
    built, ref = control_file(scene)
    paths = _norm_paths(ref)
    before = read_params(pipe, "transformer", paths)
    with compat.library_call(names=built.stems() + [EXPANDED]) as msgs:
        pipe.load_lora_weights(dict(built.state_dict), adapter_name="control")
        observed = scene.observe(pipe)
    after = read_params(pipe, "transformer", paths)
    x_in = pipe.transformer.get_submodule(EXPANDED)
    compat.detail(x_embedder_in=int(getattr(x_in, "base_layer", x_in).weight.shape[1]))
    judge_load(ref, scene.compare(observed, ref), msgs, [], compat, scene.classes)
    _judge_norms(compat, ref, before, after, msgs)


def test_control_unload_restores(compat, scene_for) -> None:
    """unload_lora_weights(reset_to_overwritten_params=True) after a control LoRA: the
    transformer's weights, shapes and norm scales are pristine again."""
    compat.param(arch="flux", format=FMT)
    scene = scene_for("flux")
    pipe = scene.fresh()
    compat.require(
        has_reset_to_overwritten_params(pipe),
        "unload_lora_weights has no reset_to_overwritten_params in this version",
    )
    built, ref = control_file(scene)
    paths = _norm_paths(ref)
    before = read_params(pipe, "transformer", paths)
    with compat.library_call(names=built.stems() + [EXPANDED]):
        pipe.load_lora_weights(dict(built.state_dict), adapter_name="control")
        pipe.unload_lora_weights(reset_to_overwritten_params=True)
        observed = scene.observe(pipe)
    after = read_params(pipe, "transformer", paths)
    changed = {}
    for component, modules in observed.items():
        for name, w in modules.items():
            b = scene.base[component][name]
            if w.shape != b.shape:
                changed[f"{component}.{name}"] = f"shape {tuple(w.shape)} != {tuple(b.shape)}"
            elif not torch.equal(w, b):
                changed[f"{component}.{name}"] = float((w - b).abs().max())
    changed.update(
        {f"transformer.{p}": "norm scale" for p in paths if not torch.equal(after[p], before[p])}
    )
    in_channels = pipe.transformer.config.in_channels
    original = scene.layout["transformer"].layers[EXPANDED].in_features
    if in_channels != original:
        changed["transformer.config.in_channels"] = f"{in_channels} != {original}"
    if changed:
        compat.detail(changed=dict(list(changed.items())[:20]))
        raise Finding(
            Outcome.STALE_STATE,
            f"{len(changed)} weight(s) not restored after unload: {', '.join(list(changed)[:4])}",
        )
