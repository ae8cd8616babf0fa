"""Our own merge of a LoRA into a model, and the step-level comparison it feeds.

The end-to-end oracle of a denoising step: a LoRA-free copy of the pipeline whose
denoiser weights were patched to ``W + weight * sum(scale * B @ A)`` straight from a
:class:`~harness.oracles.lora.Reference` (computed in float64 from the file alone), then
stepped like the copy the library loaded the file into. No peft or diffusers code touches
the merge, so "the loaded step equals the merged step" means the library applied the
file as the file says, through every layer the step runs.
"""

from __future__ import annotations

import torch

from harness.oracles.lora import Reference

#: Largest allowed ``max |loaded - merged|`` as a fraction of ``max |merged - pristine|``
#: (the LoRA's own effect on the step): rounding of the unmerged ``x W + s (x A) B`` path
#: against the merged weights, compounded through a few blocks. A dropped or misscaled
#: module moves the step by a sizeable fraction of the effect, far above these.
STEP_RELATIVE_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-3,
    torch.float16: 5e-2,
    torch.bfloat16: 1e-1,
}


@torch.no_grad()
def merge_reference(
    model: torch.nn.Module, ref: Reference, component: str, weight: float = 1.0
) -> list[str]:
    """Add every reference delta of ``component`` into ``model``'s Linear weights, in
    place (float64 sum, stored back in the weight's dtype); returns the merged paths."""
    merged = []
    for comp, path in ref.modules():
        if comp != component:
            continue
        module = model.get_submodule(path)
        target = module.weight
        total = target.detach().to("cpu", torch.float64) + ref.delta(comp, path, weight)
        target.copy_(total.to(device=target.device, dtype=target.dtype))
        merged.append(path)
    return merged


def step_agreement(
    loaded: torch.Tensor, merged: torch.Tensor, pristine: torch.Tensor
) -> tuple[float, float]:
    """``(max |loaded - merged|, max |merged - pristine|)`` in float64."""
    a, b, c = (t.detach().to("cpu", torch.float64) for t in (loaded, merged, pristine))
    return float((a - b).abs().max()), float((b - c).abs().max())
