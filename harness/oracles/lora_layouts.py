"""Reference effect of a non-diffusers LoRA file, read with its layout's own naming.

The layout (:mod:`harness.inputs.families.layouts`) says how the file spells a module
(prefix, dots flattened or not) and which diffusers module(s) each original module is. For
every module present with both its down (rank x in) and up (out x rank) tensors:

* ``scale = alpha / rank`` from the module's ``.alpha`` scalar, ``alpha = rank`` without
  one (the kohya / LoRA convention: no alpha means scale 1);
* a fused original layer (several diffusers modules) shares the down matrix; each part
  gets its own row block of the up matrix, widths from the model, in the layout's order;
* a layer whose row halves the original and diffusers hold the other way round
  (``Rule.row_order``) has its up rows permuted before that.

Keys of modules the layout does not place in this model (a width-pinned rule places
nothing in a model of other widths), lone down / up tensors and alphas without a pair go
to ``unknown_keys``. No diffusers code is involved.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from harness.inputs.checkpoints.lora.layouts import Layer
from harness.inputs.families.layouts import Layout, expand, row_order
from harness.oracles.lora import Reference, Term


def _split(layout: Layout, key: str) -> tuple[str, str] | None:
    """(module as the file spells it, role) or None for a key of no known role."""
    roles = {
        f".{layout.down}.weight": "down",
        f".{layout.up}.weight": "up",
        ".alpha": "alpha",
    }
    for suffix, role in roles.items():
        if key.endswith(suffix):
            return key.removesuffix(suffix), role
    return None


def _reorder(up: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """The up rows in the diffusers module's order: equal row blocks permuted by ``order``
    (a layer whose halves the two models hold the other way round)."""
    rows = up.detach().to("cpu", torch.float64)
    if not order:
        return rows
    blocks = rows.chunk(len(order), dim=0)
    return torch.cat([blocks[j] for j in order], dim=0)


def layout_reference(
    state_dict: Mapping[str, torch.Tensor],
    layout: Layout,
    component: str,
    layers: Mapping[str, Layer],
) -> Reference:
    """Expected per-module terms of a ``layout`` file on ``component`` (whose layers, by
    diffusers path, are ``layers``)."""
    placed = expand(layout, layers, extras=None)  # every group the layout can carry
    table = {layout.module_name(s): targets for s, targets in placed.items()}
    orders = {layout.module_name(s): row_order(layout, s) for s in placed}
    found: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    ref = Reference(format=f"layout:{layout.row}")
    for key, value in state_dict.items():
        split = _split(layout, key)
        if split is None or split[0] not in table:
            ref.unknown_keys.append(key)
            continue
        found.setdefault(split[0], {})[split[1]] = (key, value)
    for module, roles in found.items():
        if "down" not in roles or "up" not in roles:
            ref.unknown_keys += [k for k, _ in roles.values()]
            continue
        (down_key, down), (up_key, up) = roles["down"], roles["up"]
        rank = down.shape[0]
        keys = (down_key, up_key)
        alpha = float(rank)
        if "alpha" in roles:
            alpha = float(roles["alpha"][1].item())
            keys = (*keys, roles["alpha"][0])
        targets = table[module]
        widths = [layers[t].out_features for t in targets]
        if sum(widths) != up.shape[0]:
            ref.unknown_keys += list(keys)  # an up of another width: not this model's layer
            continue
        rows = torch.split(_reorder(up, orders[module]), widths, dim=0)
        for target, part in zip(targets, rows, strict=True):
            ref.terms[(component, target)] = [
                Term(
                    down.detach().to("cpu", torch.float64),
                    part.clone(),
                    alpha / rank,
                    keys,
                    up.dtype,
                )
            ]
    return ref
