"""Flux LoRA files through a downstream app's converter (InvokeAI by default), judged by the
same independent reference as ``suites/lora``.

Rows (``load[<format>-<kind>]``), for each format the installed release claims
(:class:`harness.loaders.spec.Claim`): ``complete`` (every block layer of the claimed
components, alpha != rank where the format stores alphas), ``no-alpha``, ``bfloat16`` -
valid files, a refusal is REFUSED; ``partial-double-no-<part>`` (block 1's
``img_attn.qkv`` lacks one of q/k/v) and ``partial-single-no-<part>`` (block 1's
``linear1`` lacks one of q/k/v/proj_mlp) - the reference effect of the parts present, or a
clear error naming a key or module of that group; ``stray-key`` - applied-or-reported, or
refused naming it; ``with-embedders`` / ``with-final-layer`` - the block layers plus the
Flux layers outside the blocks (valid files). The model is Flux-dev at real widths, cut to
two double and two single blocks (:func:`harness.loaders.judge.flux_layout`).

The loader's ``convert`` runs the app's own probe and converter (inside a library call:
its exceptions are classified), ``deltas`` reads the result with plain torch, and
:func:`harness.loaders.judge.judge` compares per module. The caller's dict must come back
unchanged (INPUT_MUTATED).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.inputs.checkpoints.lora.build import Pick
from harness.inputs.checkpoints.lora.cases import Case, candidates, realise
from harness.inputs.checkpoints.lora.formats import FORMATS, family_of, stems_of
from harness.inputs.checkpoints.lora.layouts import FLUX_DOUBLE, FLUX_SINGLE
from harness.loaders.judge import flux_layout, judge
from harness.loaders.registry import get_spec
from harness.oracles.compare import fingerprint_inputs, input_mutations
from harness.oracles.lora import parse
from harness.protocol.outcomes import Outcome

ARCH = "flux"
RANK, ALPHA = 4, 2.0
#: The fused groups whose parts the partial rows drop: block 1 (block 0 is what the app's
#: format probe looks at), BFL name -> its parts' short names.
PARTIAL_GROUPS = {
    "double": (
        "double_blocks.1.img_attn.qkv",
        tuple(s.rsplit(".", 1)[-1] for s in FLUX_DOUBLE[0][1]),
    ),
    "single": ("single_blocks.1.linear1", tuple(s.rsplit(".", 1)[-1] for s in FLUX_SINGLE[0][1])),
}
VALID = {
    "complete": ("float32", True),
    "no-alpha": ("float32", False),
    "bfloat16": ("bfloat16", True),
}
FAMILIES = ("embedders", "final-layer")


def _claimed_formats() -> list[str]:
    seen: dict[str, None] = {}
    for claim in get_spec().claims:
        if claim.arch == ARCH:
            seen.update(dict.fromkeys(claim.formats))
    return list(seen)


def _kinds(fmt: str) -> list[str]:
    kinds = [k for k in VALID if k != "no-alpha" or FORMATS[fmt].alpha]
    for where, (_, parts) in PARTIAL_GROUPS.items():
        kinds += [f"partial-{where}-no-{part}" for part in parts]
    return kinds + ["stray-key"] + [f"with-{family}" for family in FAMILIES]


ROWS = [(fmt, kind) for fmt in _claimed_formats() for kind in _kinds(fmt)]


def _case(fmt: str, kind: str, components: tuple[str, ...]) -> tuple[Case, bool, list[Pick]]:
    """The file of a row: its case, whether it is valid input, the partial pick."""
    lora_format = FORMATS[fmt]
    families = (kind.removeprefix("with-"),) if kind.startswith("with-") else ()
    cands = [
        (g, parts)
        for g, parts in candidates(
            lora_format, ARCH, flux_layout(), narrow=False, families=families
        )
        if g.component in components and family_of(ARCH, g) in (None, *families)
    ]
    dtype, with_alpha = VALID.get(kind, ("float32", True))
    alpha = ALPHA if with_alpha and lora_format.alpha else None
    picks = [Pick(g, parts, RANK, alpha) for g, parts in cands]
    if kind in VALID or families:
        return Case(picks, 0, dtype, 0, 0), True, []
    if kind == "stray-key":
        return Case(picks, 1, dtype, 0, 0), False, []
    where, missing = kind.removeprefix("partial-").split("-no-")
    native = PARTIAL_GROUPS[where][0]
    for i, pick in enumerate(picks):
        if pick.group.native == native:
            present = tuple(p for p in pick.present if p.rsplit(".", 1)[-1] != missing)
            picks[i] = Pick(pick.group, present, RANK, alpha)
            return Case(picks, 0, dtype, 0, 0), False, [picks[i]]
    raise RuntimeError(f"{fmt} expresses no {native}")  # our tables: a harness error


def _names(built: Any, partial: list[Pick], fmt: str) -> list[str]:
    """What a refusal must name (as in suites/lora): stray keys, else the partial group's
    BFL name, parts, stems and keys, else any stem of the file."""
    if built.stray_keys:
        return sorted({k.rsplit(".", 2)[0] for k in built.stray_keys}) + list(built.stray_keys)
    if partial:
        group = partial[0].group
        stems = [
            s
            for s, g in stems_of(FORMATS[fmt], ARCH, flux_layout()).items()
            if g.component == group.component and set(g.parts) <= set(group.parts)
        ]
        keys = [k for k in built.state_dict if any(k.startswith(s + ".") for s in stems)]
        return [group.native, *group.parts, *stems, *keys]
    return built.stems()


@pytest.mark.parametrize("fmt,kind", ROWS, ids=[f"{f}-{k}" for f, k in ROWS])
def test_load(compat, loader_under_test, fmt: str, kind: str) -> None:
    """One deterministic file through the app's probe + converter, judged per module."""
    spec, loader = loader_under_test
    compat.param(target=spec.name, arch=ARCH, format=fmt, kind=kind)
    compat.require(not isinstance(loader, str), f"{spec.name} cannot run here: {loader}")
    compat.detail(loader_version=loader.version)
    claim = spec.claim(loader.version)
    compat.require(
        claim is not None and fmt in claim.formats,
        f"{spec.name} {loader.version} claims no {fmt} Flux LoRA",
    )
    case, valid, partial = _case(fmt, kind, claim.components[fmt])
    built = realise(FORMATS[fmt], ARCH, flux_layout(), case)
    if valid:
        compat.valid_input(f"{kind} {fmt} Flux LoRA")
    else:
        compat.may_reject(f"{kind} {fmt} Flux LoRA")
    compat.detail(example=case.describe(), n_keys=len(built.state_dict))
    ref = parse(built.state_dict, FORMATS[fmt], ARCH, flux_layout())
    unknown = set(ref.unknown_keys) - set(built.stray_keys)
    if unknown:  # our writer and reference disagree: a harness error
        raise RuntimeError(
            f"reference could not place keys the writer wrote: {sorted(unknown)[:5]}"
        )
    before = fingerprint_inputs(built.state_dict)
    try:
        with compat.library_call(names=_names(built, partial, fmt)) as msgs:
            converted = loader.convert(built.state_dict, None)
    finally:
        changed = input_mutations(before, built.state_dict)
    if changed:
        compat.detail(mutations=changed[:20])
        compat.finding(Outcome.INPUT_MUTATED, f"{len(changed)} change(s) to the caller's dict")
    compat.detail(detected=loader.detect(built.state_dict))
    deltas = loader.deltas(converted)
    compat.detail(
        status=judge(compat, ref, deltas, spec.naming, flux_layout(), built.stray_keys, msgs)
    )
