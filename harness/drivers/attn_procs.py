"""Drive the legacy attention-processor route of a UNet (``load_attn_procs`` /
``save_attn_procs``) and read what its attention layers now compute.

Custom Diffusion processors are installed the way ``train_custom_diffusion.py`` does it
(every processor replaced: cross-attention ones train k / v, self-attention ones train
nothing), because ``save_attn_procs`` reads every processor's state. Version facts of the
route live here (``ATTN_PROCS_LORA_REMOVED``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from harness.drivers.probe import Since
from harness.inputs.checkpoints.legacy_attn_procs import CUSTOM_DIFFUSION_PARTS

#: ``load_attn_procs`` stops reading LoRA state dicts: 0.32-0.39 warn
#: ``deprecate("load_attn_procs", "0.40.0", ... use load_lora_adapter())`` on a LoRA file,
#: and the 0.40 docstring says the method loads Custom Diffusion layers only.
ATTN_PROCS_LORA_REMOVED = Since("0.40", source="diffusers loaders/unet.py, 0.32.0 .. 0.40.0")


def cross_attentions(unet: Any) -> dict[str, torch.nn.Module]:
    """Processor name -> attention layer, for the cross-attention layers (text tokens).

    By name, as ``train_custom_diffusion.py`` decides it (``attn1`` is self-attention,
    every other processor attends to the text): ``Attention.is_cross_attention`` does not
    exist in every release. None found is our bug (a check on no layer proves nothing)."""
    out = {
        name: unet.get_submodule(name.removesuffix(".processor"))
        for name in unet.attn_processors
        if not name.endswith("attn1.processor")
    }
    if not out:
        raise RuntimeError(f"no cross-attention processor in {type(unet).__name__}")
    return out


def processor_shapes(unet: Any) -> dict[str, tuple[int, int]]:
    """Processor name -> (inner width, cross-attention width) of each cross-attention."""
    return {
        name: (module.to_k.out_features, module.to_k.in_features)
        for name, module in cross_attentions(unet).items()
    }


def custom_diffusion_processors(unet: Any, weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The training script's processor set, with the cross-attention weights of ``weights``
    (a Custom Diffusion state dict) loaded into the trained projections."""
    from diffusers.models import attention_processor as ap

    cls = getattr(ap, "CustomDiffusionAttnProcessor2_0", None) or ap.CustomDiffusionAttnProcessor
    shapes = processor_shapes(unet)
    out: dict[str, Any] = {}
    for name in unet.attn_processors:
        if name not in shapes:
            out[name] = cls(train_kv=False, train_q_out=False)
            continue
        inner, cross = shapes[name]
        proc = cls(train_kv=True, train_q_out=False, hidden_size=inner, cross_attention_dim=cross)
        proc.load_state_dict(
            {f"{p}.weight": weights[f"{name}.{p}.weight"] for p in CUSTOM_DIFFUSION_PARTS}
        )
        out[name] = proc.to(device=unet.device, dtype=unet.dtype)
    return out


def layer_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An attention layer's own projections (float64 CPU copies)."""
    return {
        name: p.detach().to("cpu", torch.float64)
        for name, p in module.named_parameters()
        if name.split(".")[0] in ("to_q", "to_k", "to_v", "to_out")
    }


def probe_inputs(module: torch.nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded hidden states (2 x 6 tokens) and text context (2 x 5 tokens) for a layer."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 6, module.to_q.in_features, generator=gen)
    context = torch.randn(2, 5, module.to_k.in_features, generator=gen)
    return hidden, context


def run_layer(module: torch.nn.Module, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """The layer's output, in its own dtype and device, back as float64 CPU."""
    param = next(module.parameters())
    with torch.no_grad():
        out = module(
            hidden.to(param.device, param.dtype),
            encoder_hidden_states=context.to(param.device, param.dtype),
        )
    return out.to("cpu", torch.float64)
