"""Drives the library's IP-Adapter modules on fixed inputs and compares them with the
plain-torch formulas of ``harness.oracles.ip_projection`` / ``ip_attention``.

Why a separate scenario: the weight checks say where tensors landed; these say the loaded
modules compute the published model. Only calls into diffusers modules sit inside
``compat.library_call``; building inputs and our own formulas stay outside, so a bug of
ours is HARNESS_ERROR, never a finding. The calling conventions (how a version takes
FaceID-plus CLIP features, the SD3 timestep, the processor's image tokens) are the only
version-dependent part; where one cannot be driven the check is NOT_RUN, never a pass.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.drivers.ip_adapter import denoiser
from harness.oracles.ip_adapter import image_projection_modules
from harness.oracles.ip_attention import expected_scale_delta
from harness.oracles.ip_projection import (
    ProjectionInput,
    outputs_agree,
    project,
    projection_input,
)
from harness.protocol.outcomes import Outcome
from harness.scenarios.ip_adapter import IPAWorld, entry_of, expect_variant

#: Scale of the IP branch probe (not 1, so a scale that is ignored shows).
BRANCH_SCALE = 0.6
#: Attention features the branch formula does not model; a layer using one is NOT_RUN.
UNMODELLED_ATTENTION = ("group_norm", "spatial_norm", "norm_q", "norm_k")


def _fmt(variant: str) -> str:
    """FaceID releases ship as ``.bin`` (as the load checks use them)."""
    return "bin" if variant.startswith("faceid") else "safetensors"


def check_projection_forward(compat: Any, ipa: IPAWorld, entry: str) -> None:
    """The loaded image projection's output equals the published formula's on a fixed
    random input (findings raise)."""
    spec = entry_of(entry)
    compat.param(entry=entry)
    expect_variant(compat, spec.variant)
    pipe = ipa.pipe(compat, spec.arch)
    ipa.load(compat, pipe, entry, fmt=_fmt(spec.variant))
    modules = image_projection_modules(denoiser(pipe))
    if len(modules) != 1:
        compat.finding(Outcome.DROPPED_KEYS, f"{len(modules)} image projections for 1 adapter")
    module = modules[0]
    image_proj = ipa.release(entry)["image_proj"]
    given = projection_input(spec.variant, image_proj)
    expected = project(spec.variant, image_proj, given)
    param = next(module.parameters())
    compat.detail(module=type(module).__name__, expected_shape=list(expected.shape))
    with compat.library_call():
        actual = _run_projection(compat, module, spec.variant, given, param)
    same, delta = outputs_agree(actual, expected, param.dtype)
    compat.detail(actual_shape=list(actual.shape), max_diff=delta)
    if not same:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"{type(module).__name__} output differs from the published {spec.variant} "
            f"formula (shape {list(actual.shape)} vs {list(expected.shape)}, "
            f"max diff {delta:.3g})",
        )


def _run_projection(
    compat: Any, module: Any, variant: str, given: ProjectionInput, param: torch.Tensor
) -> torch.Tensor:
    """One forward in the module's calling convention."""

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(param.device, param.dtype)

    with torch.no_grad():
        if variant == "faceid-plus":
            # diffusers takes the CLIP features as an attribute, (batch, images, tokens, dim).
            if not hasattr(module, "clip_embeds"):
                compat.not_run(f"{type(module).__name__} has no clip_embeds input here")
            module.clip_embeds = cast(given.clip)[:, None]
            out = module(cast(given.embeds))
        elif variant == "sd3":
            out = module(cast(given.embeds), cast(given.timestep))
        else:
            out = module(cast(given.embeds))
    if isinstance(out, (tuple, list)):
        out = out[0]  # SD3 returns (tokens, timestep embedding)
    return out


def check_ip_attention_branch(compat: Any, ipa: IPAWorld, entry: str) -> None:
    """Output of the first IP processor at scale s minus at scale 0 equals
    ``s · to_out(softmax(q k_ipᵀ/√d) v_ip)`` from the release's IP weights."""
    spec = entry_of(entry)
    compat.param(entry=entry)
    expect_variant(compat, spec.variant)
    target = ipa.target(spec.arch)
    if target.family != "unet":
        compat.not_run(f"the image-branch formula covers UNet processors, not {target.family}")
    pipe = ipa.pipe(compat, spec.arch)
    ipa.load(compat, pipe, entry, fmt=_fmt(spec.variant))
    probe_ip_attention_branch(compat, ipa, pipe, entry)


def probe_ip_attention_branch(compat: Any, ipa: IPAWorld, pipe: Any, entry: str) -> None:
    """The branch check on a UNet pipeline that already holds ``entry`` (classic or
    modular: only ``pipe.unet`` and ``pipe.set_ip_adapter_scale`` are used)."""
    target = ipa.target(entry_of(entry).arch)
    slot = target.ip_slots[0]
    attn = denoiser(pipe).get_submodule(slot.name.removesuffix(".processor"))
    unmodelled = [n for n in UNMODELLED_ATTENTION if getattr(attn, n, None) is not None]
    if unmodelled or getattr(attn, "residual_connection", False):
        compat.not_run(f"{slot.name}: attention uses {unmodelled or 'a residual'}")
    release = ipa.release(entry)["ip_adapter"]
    ip_weights = {
        suffix: release[f"{slot.ip_id}.{suffix}"]
        for suffix in ("to_k_ip.weight", "to_v_ip.weight", "to_k_ip.bias", "to_v_ip.bias")
        if f"{slot.ip_id}.{suffix}" in release
    }
    base = {name: t.detach().to("cpu") for name, t in attn.state_dict().items()}
    weight = attn.to_q.weight
    gen = torch.Generator().manual_seed(5)
    cross = int(slot.cross_dim or slot.hidden)
    hidden = torch.randn(2, 6, slot.hidden, generator=gen)
    text = torch.randn(2, 7, cross, generator=gen)
    image = torch.randn(2, 4, cross, generator=gen)
    expected = expected_scale_delta(
        hidden,
        image,
        base,
        ip_weights,
        int(attn.heads),
        BRANCH_SCALE,
        float(getattr(attn, "rescale_output_factor", 1.0)),
    )
    compat.detail(processor=slot.name, scale=BRANCH_SCALE)

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(weight.device, weight.dtype)

    with compat.library_call(), torch.no_grad():
        kind = type(denoiser(pipe).attn_processors[slot.name]).__name__
        # Image tokens as a (text, [per-adapter tokens]) tuple: the form every version
        # since 0.26 reads (the concatenated form is deprecated).
        call = {"encoder_hidden_states": (cast(text), [cast(image)])}
        pipe.set_ip_adapter_scale(BRANCH_SCALE)
        at_scale = attn(cast(hidden), **call)
        pipe.set_ip_adapter_scale(0.0)
        at_zero = attn(cast(hidden), **call)
    compat.detail(processor_class=kind)
    actual = at_scale.double().cpu() - at_zero.double().cpu()
    same, delta = outputs_agree(actual, expected, weight.dtype)
    compat.detail(max_diff=delta, max_expected=float(expected.abs().max()))
    if not same:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"{slot.name} ({kind}): output(scale {BRANCH_SCALE}) - output(0) differs from "
            f"{BRANCH_SCALE}·to_out(softmax(q k_ipᵀ/√d) v_ip) by {delta:.3g}",
        )
