"""Reference effect of a non-diffusers LoRA file, read with its layout's own naming.

The layout (:mod:`harness.inputs.families.layouts`) says how the file spells a module
(prefix, dots flattened or not) and which diffusers module(s) each original module is. For
every module present with both its down (rank x in) and up (out x rank) tensors:

* ``scale = alpha / rank`` from the module's ``.alpha`` scalar, ``alpha = rank`` without
  one (the kohya / LoRA convention: no alpha means scale 1);
* a fused original layer (several diffusers modules) shares the down matrix; each part
  gets its own row block of the up matrix, widths from the model, in the layout's order;
* a layer whose row halves the original and diffusers hold the other way round
  (``Rule.row_order``) has its up rows permuted before that;
* difference keys (ComfyUI's convention, which Wan trainers follow): ``.diff_b`` is added
  to the module's bias as it is and ``.diff`` to its weight as it is (full differences:
  no alpha, no rank), each an own term of scale 1 so alpha never touches them. A fused
  layer's ``.diff_b`` splits like its up rows; a fused ``.diff`` is not placed.

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
        ".diff": "diff",
        ".diff_b": "diff_b",
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
    differences = {
        m: {r: roles.pop(r) for r in ("diff", "diff_b") if r in roles} for m, roles in found.items()
    }
    for module, roles in found.items():
        if not roles:
            continue
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
    for module, diffs in differences.items():
        if diffs:
            _add_differences(ref, diffs, table[module], component, layers)
    return ref


def _add_differences(
    ref: Reference,
    diffs: Mapping[str, tuple[str, torch.Tensor]],
    targets: tuple[str, ...],
    component: str,
    layers: Mapping[str, Layer],
) -> None:
    """Terms of scale 1 for a module's ``.diff`` (weight: ``I @ diff``) and ``.diff_b``
    (bias, split over a fused layer's parts); keys of the wrong shape are not placed."""
    widths = [layers[t].out_features for t in targets]
    n_in = layers[targets[0]].in_features
    bias_parts: list[torch.Tensor | None] = [None] * len(targets)
    if "diff_b" in diffs:
        key, value = diffs["diff_b"]
        if value.shape == (sum(widths),):
            bias_parts = list(torch.split(value.detach().to("cpu", torch.float64), widths))
        else:
            ref.unknown_keys.append(key)
    weight: torch.Tensor | None = None
    if "diff" in diffs:
        key, value = diffs["diff"]
        if len(targets) == 1 and value.shape == (widths[0], n_in):
            weight = value.detach().to("cpu", torch.float64)
        else:
            ref.unknown_keys.append(key)
    keys = tuple(k for k, _ in diffs.values() if k not in ref.unknown_keys)
    dtype = next(iter(diffs.values()))[1].dtype
    for target, out, bias in zip(targets, widths, bias_parts, strict=True):
        if weight is None and bias is None:
            continue
        n = layers[target].in_features
        up = torch.eye(out, dtype=torch.float64)
        down = weight if weight is not None else torch.zeros(out, n, dtype=torch.float64)
        ref.terms.setdefault((component, target), []).append(
            Term(down, up, 1.0, keys, dtype, bias=bias)
        )
