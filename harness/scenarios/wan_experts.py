"""Wan 2.2's two-expert pipeline: which of the two transformers a LoRA file lands in.

Wan 2.2 A14B denoises with two experts of the same architecture: ``transformer`` for the
high-noise steps and ``transformer_2`` for the low-noise ones (``boundary_ratio``). Users
get one LoRA file per expert, both keyed ``transformer.`` (the lightx2v / Wan2.2 LoRAs),
and load the second with ``load_lora_weights(..., load_into_transformer_2=True)``
(``WanLoraLoaderMixin._lora_loadable_modules`` is ``["transformer", "transformer_2"]``).

:class:`ExpertsScene` is the LoRA suites' :class:`~harness.scenarios.lora.Scene` over both
experts of a tiny ``WanPipeline`` built with ``transformer``, ``transformer_2`` (the same
tiny config as the ``wan`` family row, another seed) and ``boundary_ratio``: a file's
reference, re-aimed at the expert it must reach, is compared on both, so a LoRA in the
wrong expert moves weights the reference leaves alone (WRONG_RESULT) and leaves the right
one untouched. A release whose Wan pipeline takes no ``transformer_2`` is UNSUPPORTED.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from harness.cell.classify import Unsupported
from harness.inputs.checkpoints.lora.layouts import layout_of
from harness.inputs.families.lora_files import (
    ADAPTER_METADATA_KEY,
    FamilyLora,
    block_targets,
    write_lora,
)
from harness.inputs.families.pipelines import FamilyZoo
from harness.inputs.families.table import FAMILIES
from harness.inputs.models.build import build_component, seed_for
from harness.inputs.models.specs import Component
from harness.inputs.models.zoo import deep_copy
from harness.oracles.lora import Reference, base_weight
from harness.oracles.lora_peft import adapter_metadata, peft_reference
from harness.scenarios.families import ALPHA, RANK, reads_adapter_metadata
from harness.scenarios.lora import Scene

#: The family row whose tiny transformer both experts are built from.
FAMILY = "wan"
EXPERTS = ("transformer", "transformer_2")
#: Wan2.2-T2V-A14B's published ``boundary_ratio`` (its ``model_index.json``).
BOUNDARY_RATIO = 0.875
#: The prefix of every published Wan 2.2 expert LoRA, whichever expert it is for.
FILE_PREFIX = "transformer"


class TwoExperts:
    """What :class:`Scene` calls its zoo: copies of one two-expert ``WanPipeline``."""

    def __init__(self, zoo: FamilyZoo) -> None:
        self.zoo = zoo
        self.dtype = zoo.dtype
        self.way = ""
        self._pipe: Any = None

    def get(self, name: str) -> Any:
        if self._pipe is None:
            self._pipe = self._build()
        return deep_copy(self._pipe)

    def _build(self) -> Any:
        """The family's pipeline class around two tiny experts and the boundary."""
        family = FAMILIES[FAMILY]
        single = self.zoo.build(family).pipe  # Unsupported where the family is absent
        pipeline_cls = type(single)
        params = inspect.signature(pipeline_cls.__init__).parameters
        if "transformer_2" not in params or "boundary_ratio" not in params:
            raise Unsupported(f"{pipeline_cls.__name__} takes no transformer_2 (Wan 2.1 only)")
        spec = Component(family.library, family.denoiser, family.config)
        second = build_component(spec, seed_for("families", FAMILY, "transformer_2")).obj
        second.to(device=self.zoo.device, dtype=self.dtype)
        parts: dict[str, Any] = {
            name: None
            for name, p in params.items()
            if name != "self"
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is inspect.Parameter.empty
        }
        parts.update(
            transformer=deep_copy(single.transformer),
            transformer_2=second,
            boundary_ratio=BOUNDARY_RATIO,
        )
        pipe = pipeline_cls(**parts)
        self.way = (
            f"real {pipeline_cls.__name__}(transformer=, transformer_2=, "
            f"boundary_ratio={BOUNDARY_RATIO}) with two tiny {family.denoiser}s (row "
            f"{FAMILY}'s config, two seeds); None for every other component"
        )
        return pipe


@dataclass
class ExpertsScene(Scene):
    """Both experts measured once: layouts and pristine weights."""

    def __post_init__(self) -> None:
        pipe = self.zoo.get(self.arch)
        self.layout = {c: layout_of(getattr(pipe, c)) for c in EXPERTS}
        self.classes = {c: type(getattr(pipe, c)).__name__ for c in EXPERTS}
        self.base = {
            c: {n: base_weight(m) for n, m in self.modules(pipe, c).items()} for c in EXPERTS
        }
        self.dtype = self.zoo.dtype
        self.build_info = {"built_as": self.zoo.way}

    def lora_for(self, expert: str, seed: int = 0) -> tuple[FamilyLora, Reference]:
        """A ``transformer.``-keyed file on every block Linear (alpha 2 in the header where
        the release reads it) and its reference re-aimed at ``expert`` (same module names,
        so the same deltas)."""
        alpha = ALPHA if reads_adapter_metadata() else None
        layers = self.layout[expert].layers
        targets = block_targets(self.layout[expert], FAMILIES[FAMILY].blocks)
        built = write_lora(FILE_PREFIX, targets, RANK, alpha, seed)
        meta = adapter_metadata(built.header, ADAPTER_METADATA_KEY)
        read = peft_reference(built.state_dict, FILE_PREFIX, layers, meta)
        ref = Reference(format=read.format, unknown_keys=list(read.unknown_keys))
        ref.terms = {(expert, path): terms for (_, path), terms in read.terms.items()}
        return built, ref


def experts_scene(zoo: FamilyZoo) -> ExpertsScene:
    """The session's scene (Unsupported where the release has no two-expert Wan)."""
    return ExpertsScene(FAMILY, TwoExperts(zoo))
