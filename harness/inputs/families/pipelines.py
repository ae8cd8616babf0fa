"""One tiny offline pipeline per family, built once per session, handed out as copies.

The real pipeline class is constructed with the tiny denoiser (from the family's table
config) and ``None`` for every other component the constructor asks for: the LoRA
mixins only touch ``pipe.<transformer_name>``. No text encoder, tokenizer, VAE or
scheduler is built, so nothing is downloaded and a family costs milliseconds to copy.
``FamilyBuild.way`` records how the pipeline was made (shown in every record).

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
from harness.inputs.families.table import Family
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
    denoiser = resolve("diffusers", family.denoiser)
    if not issubclass(pipeline, mixin):
        raise Unsupported(f"{family.pipeline} does not inherit {family.mixin} in this release")
    return mixin, pipeline, denoiser


def build_family(family: Family, device: torch.device, dtype: torch.dtype) -> FamilyBuild:
    """The real pipeline class around a tiny denoiser, other components ``None``."""
    start = time.perf_counter()
    _, pipeline_cls, _ = family_classes(family)
    spec = Component("diffusers", family.denoiser, family.config)
    built = build_component(spec, seed_for("families", family.name))
    denoiser = built.obj
    current = next(denoiser.parameters())
    if current.dtype == dtype:
        denoiser.to(device=device)
    else:
        denoiser.to(device=device, dtype=dtype)
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
    real: list[str] = []
    try:
        pipe = pipeline_cls(**parts)
    except Exception:  # noqa: BLE001 - this release's constructor needs a real component
        if not family.fallback:
            raise
        for name, (cls, config) in family.fallback.items():
            extra = build_component(Component("diffusers", cls, config), seed_for(name))
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
    way += f"; None for {', '.join(nones) or 'no other component'}"
    return FamilyBuild(pipe, way, built.dropped, time.perf_counter() - start)


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
