"""Hypothesis strategies over LoRA files: which groups, which parts of a fused group, rank,
alpha, layout, dtype, key order, stray keys. Used by the suites and by the self-tests.

Only the *choices* are drawn; :func:`realise` turns them into a state dict with
:func:`harness.inputs.checkpoints.lora.build.build`, so a failing example is printable as a short
list of picks (``describe``) instead of a wall of tensors.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.inputs.checkpoints.lora.build import Built, Pick, build
from harness.inputs.checkpoints.lora.formats import LoraFormat, expressible
from harness.inputs.checkpoints.lora.layouts import Group, ModelLayout

RANKS = (1, 2, 4)
FILE_DTYPES = ("float32", "float16", "bfloat16")

#: Groups a tiny (narrow) model cannot take in a fused format: diffusers' Flux converters
#: split ``linear1`` with the hard-coded real widths 3072 x 3 + 12288. They are covered at
#: real width by the full-scale detector check instead. Only parts of unequal widths need
#: them: the q/k/v rows alone (XLabs' ``qkv_lora``) are split in equal thirds of the up
#: matrix, which a tiny model takes.
REAL_WIDTH_ONLY = ("linear1",)


@dataclass
class Case:
    picks: list[Pick]
    stray: int
    dtype: str
    seed: int
    order_seed: int
    #: Key families to add (``biases``, ``t5``; group families are in the picks already).
    families: tuple[str, ...] = ()

    def describe(self) -> str:
        picks = "; ".join(p.describe() for p in self.picks)
        extra = f" families={','.join(self.families)}" if self.families else ""
        return (
            f"{picks} | stray={self.stray} dtype={self.dtype} order_seed={self.order_seed}{extra}"
        )

    @property
    def partial_groups(self) -> list[Pick]:
        return [p for p in self.picks if len(p.present) < len(p.group.parts)]


def candidates(
    fmt: LoraFormat,
    arch: str,
    layout: ModelLayout,
    narrow: bool = True,
    families: Iterable[str] = (),
) -> list[tuple[Group, tuple[str, ...]]]:
    """Groups (with the parts the format can carry) eligible for a model of ``layout``;
    ``families``: optional group families to include."""
    out = []
    for group, parts in expressible(fmt, arch, layout, families):
        if (
            narrow
            and fmt.native_fused
            and group.fused
            and group.native.rsplit(".", 1)[-1] in REAL_WIDTH_ONLY
            and len(set(group.widths)) > 1
        ):
            continue
        out.append((group, parts))
    return out


def realise(fmt: LoraFormat, arch: str, layout: ModelLayout, case: Case) -> Built:
    built = build(
        fmt,
        arch,
        layout,
        case.picks,
        seed=case.seed,
        dtype=case.dtype,
        stray=case.stray,
        families=case.families,
    )
    keys = list(built.state_dict)
    random.Random(case.order_seed).shuffle(keys)
    built.state_dict = {k: built.state_dict[k] for k in keys}
    return built


def full_case(
    fmt: LoraFormat,
    arch: str,
    layout: ModelLayout,
    rank: int = 4,
    alpha: float | None = 1.0,
    dtype: str = "float32",
    narrow: bool = True,
    seed: int = 0,
    families: Iterable[str] = (),
) -> Case:
    """Every eligible group with all its parts (deterministic), plus optional ``families``."""
    families = tuple(families)
    picks = [
        Pick(g, parts, rank, alpha if fmt.alpha else None)
        for g, parts in candidates(fmt, arch, layout, narrow, families)
    ]
    return Case(picks, 0, dtype, seed, 0, families)


def case_strategy(
    fmt: LoraFormat, cands: Sequence[tuple[Group, tuple[str, ...]]], stray: bool = True
):  # returns a hypothesis strategy
    """Draw a :class:`Case`: half the time a fused group comes first with a random non-empty
    subset of its parts (the partial Q/K/V shape that crashed strict converters), then up to four more groups."""
    from hypothesis import strategies as st

    fused = [i for i, (_, parts) in enumerate(cands) if len(parts) > 1]
    n = len(cands)

    @st.composite
    def strategy(draw):
        chosen: list[int] = []
        if fused and draw(st.booleans()):
            chosen.append(draw(st.sampled_from(fused)))
        for i in draw(st.lists(st.integers(0, n - 1), max_size=4, unique=True)):
            if i not in chosen:
                chosen.append(i)
        if not chosen:
            chosen.append(draw(st.integers(0, n - 1)))
        picks = []
        for i in chosen:
            group, parts = cands[i]
            if len(parts) > 1:
                present = tuple(p for p in parts if draw(st.booleans()))
                present = present or (draw(st.sampled_from(parts)),)
            else:
                present = parts
            rank = draw(st.sampled_from(RANKS))
            alpha = None
            if fmt.alpha:
                alpha = draw(st.sampled_from((None, float(rank), 2.0 * rank, 1.0, 3.0)))
            layout = "dense"
            if fmt.native_fused and group.fused:
                layout = draw(st.sampled_from(("dense", "stacked")))
            picks.append(Pick(group, present, rank, alpha, layout))
        n_stray = draw(st.sampled_from((0, 0, 1))) if stray else 0
        dtype = draw(st.sampled_from(FILE_DTYPES))
        seed = draw(st.integers(0, 2**16))
        order_seed = draw(st.integers(0, 2**16))
        return Case(picks, n_stray, dtype, seed, order_seed)

    return strategy()
