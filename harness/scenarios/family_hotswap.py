"""Hot-swap on a family pipeline: whether the release offers it, how each file reaches
``load_lora_weights``, what a swap left behind, and the swap chain run after
``enable_lora_hotswap`` (eager and with a compiled denoiser).

The rules are the lifecycle suite's (``suites/lifecycle/test_hotswap.py``): a swap the
documentation promises (same keys, same rank; another rank or alpha after
``enable_lora_hotswap(target_rank=...)``) must leave the adapter acting as a fresh load of
the new file; modules that still act as the old file are STALE_STATE, a second adapter
next to the swapped one too. Here they are applied to one family component, probed with
the family scene (:class:`~harness.scenarios.families.FamilyScene`); the compiled rows
judge one denoising step of the complete pipeline instead
(:mod:`harness.scenarios.family_steps`), since only a forward through the compiled graph
can show what the graph computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.drivers.lifecycle import has_hotswap
from harness.drivers.probe import accepts
from harness.inputs.families.components import FamilyPipeline
from harness.inputs.families.lora_files import FamilyLora
from harness.inputs.families.table import Family
from harness.oracles.lora import Reference
from harness.oracles.lora_merge import merge_reference, step_agreement
from harness.scenarios.families import ALPHA, RANK, FamilyScene, load_source
from harness.scenarios.family_steps import family_step


@dataclass(frozen=True)
class SwapFile:
    """One file of a swap chain: its seed (values), rank and header alpha."""

    seed: int
    rank: int
    alpha: float

    def label(self) -> str:
        return f"rank {self.rank}, alpha {self.alpha:g}"


#: ``enable_lora_hotswap(target_rank=...)``: above every file's rank, so the padding stays
#: in the model after each swap and a scale read off the padded rank (alpha / 16 instead
#: of alpha / rank) shows in the effect.
TARGET_RANK = 16
#: The adapter loaded first (the family suite's complete file: rank 4, alpha 2).
FIRST = SwapFile(seed=6, rank=RANK, alpha=ALPHA)
#: Hot-swapped into it in turn: a larger rank (padded rows 8-15 stay), then back to rank 4
#: with another alpha (rows 4-7 of the rank-8 file must be cleared, the scale must change).
CHAIN: tuple[SwapFile, ...] = (
    SwapFile(seed=7, rank=2 * RANK, alpha=ALPHA),
    SwapFile(seed=8, rank=RANK, alpha=3 * ALPHA),
)


def hotswap_missing(pipe: Any) -> str | None:
    """Why this release cannot hot-swap into ``pipe`` (None when it can): hot-swap needs
    diffusers >= 0.33 with peft > 0.14, and the family mixin's ``load_lora_weights`` must
    name ``hotswap`` (0.33's video-family mixins take ``**kwargs`` only)."""
    if not has_hotswap(pipe):
        return "load_lora_weights(hotswap=True) needs diffusers >= 0.33 and peft > 0.14"
    if not accepts(type(pipe).load_lora_weights, "hotswap"):
        return f"{type(pipe).__name__}.load_lora_weights has no hotswap parameter here"
    return None


def enable_missing(pipe: Any, component: str) -> str | None:
    """Why ``pipe.enable_lora_hotswap(target_rank=...)`` cannot prepare ``component`` here
    (None when it can): the pipeline's method forwards to every loadable component that
    has its own ``enable_lora_hotswap`` and skips the others without a word."""
    missing = hotswap_missing(pipe)
    if missing:
        return missing
    model = getattr(pipe, component)
    method = getattr(model, "enable_lora_hotswap", None)
    if not callable(method):
        return f"{type(model).__name__} has no enable_lora_hotswap in this release"
    if not accepts(method, "target_rank"):
        return f"{type(model).__name__}.enable_lora_hotswap takes no target_rank here"
    return None


def load_args(built: FamilyLora, folder: Path) -> tuple[Any, dict[str, Any]]:
    """What to hand ``load_lora_weights`` for ``built``: its file in a folder of its own
    (two files of one row share the writer's file name), or a copy of its dict (the first
    load may keep the caller's tensors and a swap writes into them: lifecycle finding 2)."""
    folder.mkdir(parents=True, exist_ok=True)
    source, kwargs = load_source(built, folder)
    if isinstance(source, dict):
        source = {k: v.clone() for k, v in source.items()}
    return source, kwargs


def adapter_names(pipe: Any, component: str) -> list[str]:
    """The adapters on ``pipe.<component>`` (a swap must neither add nor remove one)."""
    config = getattr(getattr(pipe, component), "peft_config", None) or {}
    return sorted(config)


def adapter_rank(pipe: Any, component: str, adapter: str) -> int | None:
    """The rank the adapter's config reports (for the record: after ``enable_lora_hotswap``
    it is the padded rank, which a later ``save_lora_weights`` writes: lifecycle finding 5)."""
    config = (getattr(getattr(pipe, component), "peft_config", None) or {}).get(adapter)
    return getattr(config, "r", None)


def still_acting(scene: FamilyScene, pipe: Any, old: Reference, new: Reference) -> list[str]:
    """Modules that act as the ``old`` file's reference and not as the ``new`` one's: what
    a swap kept of the adapter it replaced."""
    observed = scene.observe(pipe)
    was = scene.compare(observed, old)[scene.component]
    now = scene.compare(observed, new)[scene.component]
    return sorted(set(was.matched) - set(now.matched))


@dataclass
class StepVerdict:
    """A step after a swap against the merge of the new file (``error``), the merge of the
    file it replaced (``error_old``) and the size of the new file's effect."""

    error: float
    error_old: float
    effect: float
    tolerance: float

    @property
    def matches(self) -> bool:
        return self.error <= self.tolerance

    @property
    def stale(self) -> bool:
        return not self.matches and self.error_old <= self.tolerance


def merged_step(
    fresh: Any, family: Family, spec: FamilyPipeline, ref: Reference, embeds: Any
) -> torch.Tensor:
    """One step of ``fresh`` (a LoRA-free copy) with the reference deltas merged into its
    denoiser's weights: what a step with the file loaded must give."""
    merge_reference(getattr(fresh, family.attr), ref, family.attr)
    return family_step(fresh, spec, seed=0, embeds=embeds)


def judge_step(
    got: torch.Tensor,
    want: torch.Tensor,
    old: torch.Tensor,
    pristine: torch.Tensor,
    relative_tolerance: float,
) -> StepVerdict:
    """How far ``got`` is from the new file's merged step and from the old one's, with the
    smoke suite's tolerance (a fraction of the new file's effect on the step)."""
    error, effect = step_agreement(got, want, pristine)
    error_old, _ = step_agreement(got, old, pristine)
    if effect == 0.0:  # our merge changed nothing: the comparison would mean nothing
        raise RuntimeError("the reference merge is a no-op on the step")
    return StepVerdict(error, error_old, effect, relative_tolerance * effect)
