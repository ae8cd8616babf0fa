"""Each family's complete tiny pipeline, built once per session, handed out as copies.

Unlike :mod:`harness.inputs.families.pipelines` (the denoiser and ``None`` elsewhere, all
the LoRA mixins need), every component the pipeline constructor declares is built here
from :mod:`harness.inputs.families.components`, so a denoising step runs. The denoiser is
the family table's, seeded as the family suite seeds it (same weights in both suites).

A release without the family (mixin, pipeline or denoiser class), or without a component
class (diffusers VAE, transformers text encoder), raises :class:`Unsupported`. Components
the data names that the constructor does not take are our data's error for that release:
Unsupported too (recorded), never a silent drop of a module. A modular-only family
(``Family.modular``) is assembled as users do: default blocks + ``update_components``.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.cell.classify import Unsupported
from harness.inputs.families.components import FAMILY_PIPELINES, FamilyPipeline
from harness.inputs.families.pipelines import family_classes
from harness.inputs.families.table import FAMILIES, Family
from harness.inputs.models.build import build_component, filter_kwargs, seed_for
from harness.inputs.models.specs import Component
from harness.inputs.models.zoo import deep_copy


@dataclass
class FullBuild:
    """A built complete family pipeline and how it was built."""

    pipe: Any
    way: str
    dropped: dict[str, list[str]] = field(default_factory=dict)  # config keys per component
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "built_as": self.way,
            "config_dropped": {k: v for k, v in self.dropped.items() if v},
            "build_s": round(self.seconds, 3),
        }


def _place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Device, and dtype only where it differs (newer diffusers warn on every ``.to``)."""
    current = next(module.parameters(), None)
    if current is not None and current.dtype == dtype:
        module.to(device=device)
    else:
        module.to(device=device, dtype=dtype)


def _detach_weight_norm(module: torch.nn.Module) -> None:
    """Recompute every legacy ``weight_norm`` weight without autograd history.

    Why: ``torch.nn.utils.weight_norm`` (ACE-Step's Oobleck VAE) stores the weight it
    computes at construction as a non-leaf tensor, which ``copy.deepcopy`` refuses; the
    copies :class:`FullFamilyZoo` hands out would fail before any step. The value is the
    same (the hook recomputes it on every forward anyway)."""
    from torch.nn.utils.weight_norm import WeightNorm

    for sub in module.modules():
        for hook in sub._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm):
                with torch.no_grad():
                    setattr(sub, hook.name, hook.compute_weight(sub))


def _size(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e3:.0f}k"


def build_full(
    family: Family, spec: FamilyPipeline, device: torch.device, dtype: torch.dtype
) -> FullBuild:
    """The real pipeline class with every component real and tiny."""
    start = time.perf_counter()
    _, pipeline_cls, _ = family_classes(family)
    config = {**family.config, **spec.denoiser_config}
    denoiser_spec = Component(family.library, family.denoiser, config)
    built = build_component(denoiser_spec, seed_for("families", family.name))
    parts: dict[str, Any] = {family.attr: built.obj}
    dropped = {family.attr: built.dropped}
    for name, component in spec.components.items():
        part = build_component(component, seed_for("family-steps", family.name, name))
        parts[name] = part.obj
        dropped[name] = part.dropped
    modules = {n: p for n, p in parts.items() if isinstance(p, torch.nn.Module)}
    for module in modules.values():
        _place(module, device, dtype)
        _detach_weight_norm(module)
    if family.modular:
        pipe, made = _assemble_modular(family, pipeline_cls, parts)
    else:
        pipe = _construct(family, pipeline_cls, parts, spec, dropped)
        made = []
    pipe.set_progress_bar_config(disable=True)
    for attribute, value in spec.attributes.items():
        setattr(pipe, attribute, value)
    sizes = ", ".join(f"{n} {type(m).__name__} {_size(m)}" for n, m in modules.items())
    kind = "modular " if family.modular else ""
    way = f"real {kind}{family.pipeline}, every component tiny: {sizes}"
    if made:
        way += f"; default blocks, from config by the blocks: {', '.join(made)}"
    if spec.denoiser_config:
        way += f"; {family.denoiser} config beyond the family table's: {dict(spec.denoiser_config)}"
    if spec.attributes:
        way += f"; set after construction: {dict(spec.attributes)}"
    return FullBuild(pipe, way, dropped, time.perf_counter() - start)


def _construct(
    family: Family,
    pipeline_cls: type,
    parts: dict[str, Any],
    spec: FamilyPipeline,
    dropped: dict[str, list[str]],
) -> Any:
    """A ``DiffusionPipeline`` from its constructor, every declared component given."""
    kwargs, dropped["<pipeline>"] = filter_kwargs(
        pipeline_cls.__init__, {**parts, **spec.init_extra}
    )
    refused = sorted(set(parts) - set(kwargs))
    if refused:
        raise Unsupported(f"{family.pipeline} takes no {', '.join(refused)} in this release")
    params = inspect.signature(pipeline_cls.__init__).parameters
    missing = [
        n
        for n, p in params.items()
        if n != "self"
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is inspect.Parameter.empty
        and n not in kwargs
    ]
    if missing:  # the data lacks a component this release requires: ours to add
        raise RuntimeError(f"{family.pipeline} requires {missing}; components.py has none")
    return pipeline_cls(**kwargs)


def _assemble_modular(
    family: Family, pipeline_cls: type, parts: dict[str, Any]
) -> tuple[Any, list[str]]:
    """A modular pipeline as a user assembles one: the class with its default blocks
    (``workflow=`` where the family names one), then ``update_components`` with every
    pretrained component; the blocks create the ``from_config`` ones (scheduler, guider,
    processors) themselves. Returns the pipeline and the components the blocks made."""
    kwargs = {"workflow": family.workflow} if family.workflow else {}
    if kwargs and "workflow" not in inspect.signature(pipeline_cls.__init__).parameters:
        raise Unsupported(f"{family.pipeline} takes no workflow= in this release")
    pipe = pipeline_cls(**kwargs)
    specs = getattr(pipe, "_component_specs", {})
    refused = sorted(set(parts) - set(specs))
    if refused:
        raise Unsupported(f"{family.pipeline}'s blocks expect no {', '.join(refused)}")
    pipe.update_components(**parts)
    missing = sorted(n for n in specs if getattr(pipe, n, None) is None)
    if missing:  # the data lacks a component the default blocks use: ours to add
        raise RuntimeError(f"{family.pipeline} blocks expect {missing}; components.py has none")
    return pipe, sorted(n for n in specs if n not in parts)


class FullFamilyZoo:
    """Each family's complete pipeline built once (per device and dtype), copies out."""

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self._built: dict[str, FullBuild] = {}
        self._failed: dict[str, str] = {}

    def build(self, name: str) -> FullBuild:
        """The session's original (built on first use); Unsupported where absent."""
        if name in self._failed:  # a fresh exception: re-raising one grows its traceback
            raise Unsupported(self._failed[name])
        if name not in self._built:
            try:
                self._built[name] = build_full(
                    FAMILIES[name], FAMILY_PIPELINES[name], self.device, self.dtype
                )
            except Unsupported as exc:
                self._failed[name] = str(exc)
                raise
        return self._built[name]

    def get(self, name: str) -> Any:
        """A pristine copy that shares no tensor with the original."""
        return deep_copy(self.build(name).pipe)
