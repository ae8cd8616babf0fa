"""LoKr rows of the family suite: a family's file and reference, and what the model computes.

:func:`lokr_file` writes a LoKr file of one spelling (:mod:`harness.inputs.families.lokr`)
for a :class:`~harness.scenarios.families.FamilyScene` and reads its reference with the
LoKr definition (:mod:`harness.oracles.lokr`).

:func:`observe_computed` is the scene's probe, except where an attention now runs on fused
projections: diffusers loads a Kronecker delta over Flux2's fused BFL ``qkv`` into the
model's fused ``to_qkv`` / ``to_added_qkv`` (it cannot be split into q, k and v), after
``fuse_qkv_projections()``. The attention then computes q, k and v from the fused Linear,
and its old ``to_q`` ... stay in place unused, so their probe would say nothing about what
the model does: their rows are read from the fused Linear instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from harness.inputs.families.lokr import (
    LOKR_LAYOUTS,
    LOW_RANK_ALPHA,
    LokrFile,
    lokr_modules,
    write_lokr,
)
from harness.oracles.lokr import lokr_reference
from harness.oracles.lora import Reference, effective_weight
from harness.scenarios.families import FamilyScene

#: Fused projection of an attention -> the separate projections it replaces, in row order
#: (diffusers ``AttentionModuleMixin.fuse_projections``).
FUSED_PROJECTIONS: dict[str, tuple[str, ...]] = {
    "to_qkv": ("to_q", "to_k", "to_v"),
    "to_added_qkv": ("add_q_proj", "add_k_proj", "add_v_proj"),
    "to_kv": ("to_k", "to_v"),
}


def lokr_file(
    scene: FamilyScene,
    layout_row: str,
    form: str = "lowrank",
    with_alpha: bool = True,
    omit: Iterable[str] = (),
    stray: bool = False,
    seed: int = 0,
) -> tuple[LokrFile, Reference]:
    """A LoKr file of ``layout_row`` (e.g. ``flux2-lokr-lycoris``) in tensor form ``form``
    on every module its table names in the family's model (less ``omit``), ``.alpha`` where
    the spelling carries it and ``with_alpha``; and its reference."""
    layout = LOKR_LAYOUTS[layout_row]
    layers = scene.layout[scene.component].layers
    if not lokr_modules(layout, layers):  # the table names nothing in this model: our bug
        raise RuntimeError(f"{layout_row}: no module of the spelling in {scene.family.name}")
    alpha = LOW_RANK_ALPHA if with_alpha else None
    built = write_lokr(layout, layers, form, alpha, seed, omit, stray)
    ref = lokr_reference(built.state_dict, layout, scene.component, layers)
    if set(ref.unknown_keys) != set(built.stray_keys):  # writer and reference disagree
        raise RuntimeError(f"reference could not place: {sorted(ref.unknown_keys)[:5]}")
    return built, ref


def lokr_in_release() -> bool:
    """Whether the installed diffusers builds peft LoKr adapters (its ``_create_lokr_config``,
    diffusers 0.42 on): a fact for the record, a row is judged the same either way."""
    try:
        from diffusers.utils import peft_utils
    except ImportError:
        return False
    return callable(getattr(peft_utils, "_create_lokr_config", None))


def fused_attentions(scene: FamilyScene, pipe: Any) -> list[str]:
    """Module paths of the attentions that now compute with fused projections."""
    model = getattr(pipe, scene.component)
    return [
        path
        for path, module in model.named_modules()
        if getattr(module, "fused_projections", False)
        and any(hasattr(module, fused) for fused in FUSED_PROJECTIONS)
    ]


def observe_computed(scene: FamilyScene, pipe: Any) -> dict[str, dict[str, torch.Tensor]]:
    """Each probe-able layer's effective weight as the model computes with it: the scene's
    probe, with the parts of a fused projection read as that projection's rows."""
    observed = scene.observe(pipe)
    component = scene.component
    layout = scene.layout[component]
    seen = observed[component]
    canonical = {layout.real_path(n): n for n in seen}
    model = getattr(pipe, component)
    for path in fused_attentions(scene, pipe):
        attention = model.get_submodule(path)
        for fused, parts in FUSED_PROJECTIONS.items():
            module = getattr(attention, fused, None)
            names = [canonical[f"{path}.{p}"] for p in parts if f"{path}.{p}" in canonical]
            if module is None or len(names) != len(parts):
                continue
            widths = [seen[n].shape[0] for n in names]
            rows = torch.split(effective_weight(module), widths, dim=0)
            seen.update(zip(names, rows, strict=True))
    return observed
