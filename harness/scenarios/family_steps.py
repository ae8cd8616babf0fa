"""One denoising step of a complete family pipeline, and the LoRA file it is judged with.

Used by ``suites/smoke/test_family_steps.py``. The step's keywords come from
:mod:`harness.inputs.families.components`; one this release's ``__call__`` does not name
is left out and recorded (it is ours), but a keyword the *check* asks for (the LoRA scale
channel) that ``__call__`` lacks raises :class:`Unsupported`: that API is absent here.
The generator lives on the CPU so the initial noise is the same on every device.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.cell.classify import Unsupported
from harness.inputs.checkpoints.lora.layouts import layout_of
from harness.inputs.families.components import SCALE_KWARGS, FamilyPipeline
from harness.inputs.families.lora_files import (
    ADAPTER_METADATA_KEY,
    FamilyLora,
    block_targets,
    write_lora,
)
from harness.inputs.families.table import Family
from harness.inputs.models.build import accepted_parameters
from harness.oracles.lora import Reference
from harness.oracles.lora_peft import adapter_metadata, peft_reference
from harness.scenarios.families import ALPHA, RANK, reads_adapter_metadata


def step_kwargs(
    pipe: Any,
    spec: FamilyPipeline,
    seed: int,
    embeds: dict[str, torch.Tensor] | None = None,
    **extra: Any,
) -> tuple[dict[str, Any], list[str]]:
    """The call's keywords for this release, and the data keywords it left out. With
    ``embeds`` (from :func:`prompt_embeds`) they replace the prompt."""
    params = call_parameters(pipe)
    unknown = sorted(k for k in [*extra, *(embeds or {})] if k not in params)
    if unknown:
        raise Unsupported(f"{type(pipe).__name__}.__call__ has no parameter {', '.join(unknown)}")
    kwargs = {k: _fresh(v) for k, v in spec.call.items() if k in params}
    left_out = sorted(set(spec.call) - set(kwargs))
    if embeds is not None:
        kwargs.pop("prompt", None)
        kwargs.update(embeds)
    if spec.fields:  # no latent output type: the output object's fields
        kwargs["return_dict"] = True
    elif spec.output is None:
        kwargs.update(output_type="latent", return_dict=False)
    else:
        kwargs["output"] = spec.output
    kwargs.update(extra)
    kwargs["generator"] = torch.Generator(device="cpu").manual_seed(seed)
    return kwargs, left_out


def _fresh(value: Any) -> Any:
    """A call value no earlier step can have touched: tensors (also inside a mapping, as
    RFD4-Proteina's ``conditioning_features``) are copied; anything else is passed as is."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


@torch.no_grad()
def prompt_embeds(pipe: Any, spec: FamilyPipeline) -> dict[str, torch.Tensor]:
    """Our encoding of the call's prompt with the pipeline's own tokenizer and text
    encoder (``spec.embeds``): the last hidden state, padded positions zeroed. Runs no
    pipeline code, so a release's prompt handling cannot stop it."""
    recipe = spec.embeds
    if recipe is None:
        raise RuntimeError(f"{spec.family}: no PromptEmbeds recipe in components.py")
    tokenizer = getattr(pipe, recipe.tokenizer)
    encoder = getattr(pipe, recipe.text_encoder)
    device = next(encoder.parameters()).device
    tokens = tokenizer(
        [spec.call["prompt"]],
        padding="max_length",
        max_length=recipe.max_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    mask = tokens.attention_mask.to(device)
    hidden = encoder(tokens.input_ids.to(device), mask).last_hidden_state
    return {"prompt_embeds": (hidden * mask.unsqueeze(-1).to(hidden.dtype)).detach().clone()}


@torch.no_grad()
def family_step(
    pipe: Any,
    spec: FamilyPipeline,
    seed: int = 0,
    embeds: dict[str, torch.Tensor] | None = None,
    notes: list[str] | None = None,
    **extra: Any,
) -> torch.Tensor:
    """One seeded step; the latent output (or the data's ``fields`` of the output object,
    concatenated on the last axis, in float32) as a detached CPU tensor. What was off
    about the call's return form (a bare tensor where ``return_dict=False`` promises a
    tuple) is appended to ``notes``; the whole batch is returned either way."""
    kwargs, _ = step_kwargs(pipe, spec, seed, embeds, **extra)
    result = pipe(**kwargs)
    if spec.fields:
        out = torch.cat([getattr(result, name).float() for name in spec.fields], dim=-1)
    elif spec.output is not None:  # a modular pipeline: the named state value itself
        out = result
    elif isinstance(result, torch.Tensor):
        out = result
        if notes is not None:
            notes.append(
                f"{type(pipe).__name__}(output_type='latent', return_dict=False) returned a "
                f"bare tensor {tuple(result.shape)}, not a tuple: `[0]` on it is one sample"
            )
    else:
        out = result[0]
    if isinstance(out, (list, tuple)):  # a list of per-prompt latents
        out = torch.stack(list(out))
    return out.detach().to("cpu")


def call_parameters(pipe: Any) -> set[str]:
    """The keywords a call takes: ``__call__``'s parameters, or for a modular pipeline
    (whose ``__call__`` takes ``**kwargs``) the inputs its blocks declare."""
    blocks = getattr(pipe, "blocks", None)
    inputs = getattr(blocks, "inputs", None)
    if inputs is not None and hasattr(pipe, "update_components"):
        return {i.name for i in inputs if i.name}
    params, _ = accepted_parameters(type(pipe).__call__)
    return params


def scale_kwarg(pipe: Any) -> str | None:
    """The call keyword that carries ``{"scale": s}`` to the denoiser, if any."""
    params = call_parameters(pipe)
    return next((k for k in SCALE_KWARGS if k in params), None)


def complete_lora(
    pipe: Any, family: Family, seed: int = 0, rank: int = RANK, alpha: float = ALPHA
) -> tuple[FamilyLora, Reference]:
    """The family suite's ``complete`` file for this pipeline's denoiser (every Linear in
    the blocks; rank 4, alpha 2 unless given; the alpha in the header only where the
    release reads it) and its reference read back from the file alone."""
    attr = family.attr
    layers = layout_of(getattr(pipe, attr))
    targets = block_targets(layers, family.blocks)
    if not targets:  # the table's block prefixes match nothing: our bug
        raise RuntimeError(f"{family.name}: no Linear under {family.blocks}")
    built = write_lora(attr, targets, rank, alpha if reads_adapter_metadata() else None, seed)
    meta = adapter_metadata(built.header, ADAPTER_METADATA_KEY)
    ref = peft_reference(built.state_dict, attr, layers.layers, meta)
    if ref.unknown_keys or len(ref.terms) != len(targets):  # writer and reference disagree
        raise RuntimeError(f"reference could not place: {sorted(ref.unknown_keys)[:5]}")
    return built, ref
