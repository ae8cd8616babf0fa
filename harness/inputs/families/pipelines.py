"""One tiny offline pipeline per family, built once per session, handed out as copies.

The real pipeline class is constructed with the tiny denoiser (from the family's table
config) and ``None`` for every other component the constructor asks for: the LoRA
mixins only touch ``pipe.<transformer_name>``. No text encoder, tokenizer, VAE or
scheduler is built, so nothing is downloaded and a family costs milliseconds to copy.
``FamilyBuild.way`` records how the pipeline was made (shown in every record).

A family whose only host is a modular pipeline (``Family.modular``) is built from the
pipeline's default blocks with ``update_components`` instead (:func:`build_modular`).

A release without the family's mixin, pipeline or denoiser class, or whose pipeline does
not inherit the mixin, raises :class:`Unsupported` (grey in the grid).
"""

from __future__ import annotations

import importlib
import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.cell.classify import Unsupported
from harness.inputs.families.probe import MIXIN_MODULES
from harness.inputs.families.table import FAMILIES, Family
from harness.inputs.models.build import build_component, resolve, seed_for
from harness.inputs.models.specs import Component
from harness.inputs.models.zoo import deep_copy


@dataclass
class FamilyBuild:
    """A built family pipeline and the facts of how it was built."""

    pipe: Any
    way: str
    dropped: list[str] = field(default_factory=list)  # table config keys this release lacks
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "built_as": self.way,
            "config_dropped": self.dropped,
            "build_s": round(self.seconds, 3),
        }


def find_mixin(name: str) -> type:
    """The mixin class ``name`` of the installed diffusers, or Unsupported."""
    for module_name in MIXIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    import diffusers

    raise Unsupported(f"{name} does not exist in diffusers {diffusers.__version__}")


def family_classes(family: Family) -> tuple[type, type, type]:
    """(mixin, pipeline, denoiser) classes; Unsupported when one is absent or the pipeline
    does not load LoRAs through the mixin in this release."""
    mixin = find_mixin(family.mixin)
    pipeline = resolve("diffusers", family.pipeline)
    denoiser = _resolve_in(family.library, family.denoiser)
    if not issubclass(pipeline, mixin):
        raise Unsupported(f"{family.pipeline} does not inherit {family.mixin} in this release")
    return mixin, pipeline, denoiser


def build_family(family: Family, device: torch.device, dtype: torch.dtype) -> FamilyBuild:
    """The real pipeline class around a tiny denoiser, other components ``None``."""
    start = time.perf_counter()
    _, pipeline_cls, _ = family_classes(family)
    spec = Component(family.library, family.denoiser, family.config)
    built = build_component(spec, seed_for("families", family.name))
    denoiser = built.obj
    current = next(denoiser.parameters())
    if current.dtype == dtype:
        denoiser.to(device=device)
    else:
        denoiser.to(device=device, dtype=dtype)
    if family.modular:
        pipe, way = build_modular(family, pipeline_cls, denoiser)
        return FamilyBuild(pipe, way, built.dropped, time.perf_counter() - start)
    params = inspect.signature(pipeline_cls.__init__).parameters
    if family.attr not in params:
        raise Unsupported(f"{family.pipeline} takes no {family.attr!r} component")
    nones = [
        name
        for name, p in params.items()
        if name not in ("self", family.attr)
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is inspect.Parameter.empty
    ]
    parts: dict[str, Any] = {name: None for name in nones}
    parts[family.attr] = denoiser
    companions = build_companions(family, parts, device, dtype)
    real: list[str] = []
    try:
        pipe = pipeline_cls(**parts)
    except Exception:  # noqa: BLE001 - this release's constructor needs a real component
        if not family.fallback:
            raise
        for name, (cls, config) in family.fallback.items():
            extra = build_component(_dotted_component(cls, config), seed_for(name))
            extra.obj.to(device=device, dtype=dtype)
            parts[name] = extra.obj
            real.append(f"{name} (tiny {cls})")
        pipe = pipeline_cls(**parts)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    nones = [n for n in nones if parts[n] is None]
    way = f"real {family.pipeline} with a tiny {family.denoiser} ({_size(denoiser)})"
    if real:
        way += f"; real {', '.join(real)}: the constructor reads it"
    if companions:
        way += f"; real {', '.join(companions)}: the mixin loads into it too"
    way += f"; None for {', '.join(nones) or 'no other component'}"
    return FamilyBuild(pipe, way, built.dropped, time.perf_counter() - start)


def build_companions(
    family: Family, parts: dict[str, Any], device: torch.device, dtype: torch.dtype
) -> list[str]:
    """Put the tiny component of every ``family.companions`` row into ``parts`` (a real
    model where the mixin would otherwise call a method on ``None``); what was built."""
    built: list[str] = []
    for name in family.companions:
        other = FAMILIES[name]
        spec = Component(other.library, other.denoiser, other.config)
        component = build_component(spec, seed_for("families", other.name)).obj
        component.to(device=device, dtype=dtype)
        parts[other.attr] = component
        built.append(f"{other.attr} (tiny {other.denoiser}, row {other.name})")
    return built


def _resolve_in(library: str, name: str) -> type:
    """``resolve`` for a class of a diffusers sub-package (absent package: Unsupported)."""
    try:
        return resolve(library, name)
    except ImportError as exc:
        raise Unsupported(f"{library} does not exist in this release: {exc}") from None


def _dotted_component(cls: str, config: dict[str, Any]) -> Component:
    """A fallback entry: a diffusers class name, or a dotted one (``torch.nn.Identity``, an
    inert stand-in for a component the constructor insists on but the mixin never uses)."""
    library, _, name = cls.rpartition(".")
    return Component(library or "diffusers", name, config)


def build_modular(family: Family, pipeline_cls: type, component: Any) -> tuple[Any, str]:
    """A modular pipeline as users assemble one offline: the class with its default blocks
    (``workflow=`` where the family names one: MiniMax-H3's partitions are workflows), then
    ``update_components`` with the tiny component. Components the blocks create from
    config (schedulers, guiders, processors) are the library's; pretrained ones stay
    ``None``: the mixins only touch ``pipe.<attr>``."""
    kwargs = {"workflow": family.workflow} if family.workflow else {}
    if kwargs and "workflow" not in inspect.signature(pipeline_cls.__init__).parameters:
        raise Unsupported(f"{family.pipeline} takes no workflow= in this release")
    pipe = pipeline_cls(**kwargs)
    specs = getattr(pipe, "_component_specs", {})
    if family.attr not in specs:
        raise Unsupported(f"{family.pipeline}'s blocks expect no {family.attr!r} component")
    pipe.update_components(**{family.attr: component})
    others = sorted(n for n in specs if n != family.attr)
    nones = [n for n in others if getattr(pipe, n, None) is None]
    made = [n for n in others if n not in nones]
    call = f"{family.pipeline}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    way = (
        f"modular {call} (default blocks) + update_components({family.attr}=tiny "
        f"{family.denoiser} ({_size(component)})); from config by the blocks: "
        f"{', '.join(made) or 'none'}; None for {', '.join(nones) or 'no other component'}"
    )
    return pipe, way


def _size(module: torch.nn.Module) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e3:.0f}k parameters"


class FamilyZoo:
    """Each family built once (per device and dtype), handed out as deep copies."""

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self._built: dict[str, FamilyBuild] = {}
        self._failed: dict[str, str] = {}

    def build(self, family: Family) -> FamilyBuild:
        """The session's original (built on first use); Unsupported where absent."""
        if family.name in self._failed:  # a fresh exception: re-raising one grows its traceback
            raise Unsupported(self._failed[family.name])
        if family.name not in self._built:
            try:
                self._built[family.name] = build_family(family, self.device, self.dtype)
            except Unsupported as exc:
                self._failed[family.name] = str(exc)
                raise
        return self._built[family.name]

    def get(self, family: Family) -> Any:
        """A pristine copy that shares no tensor with the original."""
        return deep_copy(self.build(family).pipe)
