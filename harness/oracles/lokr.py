"""Reference effect of a LoKr file, from the LoKr definition and the file alone.

LoKr (LyCORIS; the same algebra as peft's LoKr tuner) adds to a Linear

    delta W = scale * kron(W1, W2),  W1 = lokr_w1 or lokr_w1_a @ lokr_w1_b,
                                     W2 = lokr_w2 or lokr_w2_a @ lokr_w2_b,

a ``(out_l * out_k) x (in_m * in_n)`` matrix from an ``out_l x in_m`` and an ``out_k x
in_n`` factor. The scale is LyCORIS's (``lycoris/modules/lokr.py`` and its algorithm docs):

* at least one factor is a low-rank pair: ``alpha / r``, ``r`` the inner width of the pair
  (``lokr_w2_b.shape[0]`` / ``lokr_w1_b.shape[0]``), ``alpha`` the module's ``.alpha``; no
  ``.alpha`` (or 0) means ``alpha = r``, scale 1;
* both factors whole: 1, whatever ``.alpha`` says (LyCORIS overrides alpha with the rank
  there, so the saved value carries no scale).

peft's own config reads ``scale = alpha / r`` for every module; a peft-named file carries
no alpha, which is scale 1 under both readings. A fused file module (Flux2's BFL
``img_attn.qkv``) is one Kronecker delta over the fused width, split by rows over its
diffusers parts (the widths from the model, in the layout's order); the model computes
those parts with its fused projection.

Each module's delta is kept as a :class:`~harness.oracles.lora.Term` whose ``up`` holds
the module's rows of the unscaled Kronecker product and whose ``down`` is the identity,
so every consumer of a LoRA reference (comparison, weights, tolerances) takes it as is.
Keys the layout does not place in this model, incomplete factors and alphas without
factors go to ``unknown_keys``. No diffusers or peft code is involved.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from harness.inputs.checkpoints.lora.layouts import Layer
from harness.inputs.families.lokr import FACTOR_KEYS, LokrLayout, lokr_modules
from harness.oracles.lora import Reference, Term

ROLES = (*FACTOR_KEYS, "alpha")


def _split(key: str) -> tuple[str, str] | None:
    """(module as the file spells it, tensor role) or None for a key of no LoKr role."""
    module, _, role = key.rpartition(".")
    return (module, role) if module and role in ROLES else None


def _factor(tensors: Mapping[str, torch.Tensor], side: str) -> tuple[torch.Tensor, int] | None:
    """``W1`` / ``W2`` (float64) and the rank of its low-rank pair (0 when stored whole);
    None when the file has neither form complete."""
    whole = tensors.get(f"lokr_{side}")
    if whole is not None:
        return whole.detach().to("cpu", torch.float64), 0
    a, b = tensors.get(f"lokr_{side}_a"), tensors.get(f"lokr_{side}_b")
    if a is None or b is None:
        return None
    return a.detach().to("cpu", torch.float64) @ b.detach().to("cpu", torch.float64), b.shape[0]


def lokr_scale(ranks: tuple[int, ...], alpha: float | None) -> float | None:
    """The definition's scale from the ranks of the low-rank pairs (0 = a whole factor) and
    the file's alpha; None for pairs of different ranks (no single LoKr module)."""
    pairs = {r for r in ranks if r}
    if not pairs:
        return 1.0
    if len(pairs) > 1:
        return None
    rank = pairs.pop()
    return (alpha if alpha else float(rank)) / rank


def lokr_delta(tensors: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, float] | None:
    """One module's unscaled ``kron(W1, W2)`` and its scale, from its tensors by role
    (``lokr_w1`` ... ``alpha``); None when a factor is incomplete."""
    w1, w2 = _factor(tensors, "w1"), _factor(tensors, "w2")
    if w1 is None or w2 is None:
        return None
    alpha = float(tensors["alpha"].double().item()) if "alpha" in tensors else None
    scale = lokr_scale((w1[1], w2[1]), alpha)
    if scale is None:
        return None
    return torch.kron(w1[0], w2[0]), scale


def lokr_reference(
    state_dict: Mapping[str, torch.Tensor],
    layout: LokrLayout,
    component: str,
    layers: Mapping[str, Layer],
) -> Reference:
    """Expected per-module terms of a ``layout`` LoKr file on ``component`` (whose layers,
    by diffusers path, are ``layers``)."""
    table = {layout.module_name(s): t for s, t in lokr_modules(layout, layers).items()}
    found: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    ref = Reference(format=f"lokr:{layout.row}")
    for key, value in state_dict.items():
        split = _split(key)
        if split is None or split[0] not in table:
            ref.unknown_keys.append(key)
            continue
        found.setdefault(split[0], {})[split[1]] = (key, value)
    for module, roles in found.items():
        keys = tuple(k for k, _ in roles.values())
        computed = lokr_delta({role: value for role, (_, value) in roles.items()})
        targets = table[module]
        widths = [layers[t].out_features for t in targets]
        n_in = layers[targets[0]].in_features
        if computed is None or computed[0].shape != (sum(widths), n_in):
            ref.unknown_keys += list(keys)  # incomplete, or not this model's layer
            continue
        delta, scale = computed
        dtype = next(v.dtype for r, (_, v) in roles.items() if r != "alpha")
        identity = torch.eye(n_in, dtype=torch.float64)
        for target, rows in zip(targets, torch.split(delta, widths, dim=0), strict=True):
            ref.terms[(component, target)] = [Term(identity, rows.clone(), scale, keys, dtype)]
    return ref
