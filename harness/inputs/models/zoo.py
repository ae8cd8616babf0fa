"""``Zoo``: tiny pipelines and image encoders, built once per session, handed out as copies.

Why copies: every check mutates what it gets (loads adapters, fuses, swaps processors);
the next check must start from the pristine model. Each architecture is built once per
``Zoo`` (seeded, so identical across processes) and ``get`` returns a deep copy of that
original (:func:`deep_copy`). Deep copy was measured against rebuilding the components
and loading a cached state dict (``python -m harness.inputs.models.copy_bench``): at these sizes both
are dominated by Python object-graph work, not tensor bytes, and are about even; a deep
copy also keeps pipeline-level state a constructor would not restore. ``deep_copy``
walks ``nn.Module`` trees itself (several times faster than plain ``copy.deepcopy``, same
result). A copy owns its tensors: no parameter storage is shared with the original or
with other copies.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.cell.classify import Unsupported
from harness.inputs.models.build import (
    Built,
    build_component,
    filter_kwargs,
    module_components,
    resolve,
    seed_for,
)
from harness.inputs.models.specs import ENCODER_SPECS, PIPELINE_SPECS, Component


@dataclass
class BuildInfo:
    """What building one zoo entry involved (for records: ``compat.detail(**info.as_dict())``)."""

    name: str
    cls: str
    seconds: float = 0.0
    #: component -> config keys the installed constructor does not accept.
    dropped: dict[str, list[str]] = field(default_factory=dict)
    #: component -> number of all-zero parameters given small random values.
    reinitialised: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "zoo_cls": self.cls,
            "zoo_build_s": round(self.seconds, 3),
            "zoo_dropped": {k: v for k, v in self.dropped.items() if v},
            "zoo_reinitialised": {k: v for k, v in self.reinitialised.items() if v},
        }


_EMPTY_CONTAINERS = (dict, OrderedDict, set, list)


def deep_copy(obj: Any) -> Any:
    """``copy.deepcopy(obj)`` with a fast path for ``torch.nn.Module`` trees.

    Why: ``copy.deepcopy`` reconstructs every module through ``__reduce_ex__`` and
    deep-copies its ~10 (mostly empty) hook dictionaries one by one. Best of 10 per tiny
    pipeline (diffusers 0.26.3 and 0.42.1, CPU): plain deepcopy 24-66 ms, this 9-27 ms,
    rebuild + ``load_state_dict`` 38-91 ms. The fast path builds each module with ``cls.__new__`` and
    ``__setstate__`` exactly as ``deepcopy`` does, creates empty hook containers directly,
    recurses into ``_modules`` itself and hands every other attribute (parameters,
    buffers, configs, processors, hooks) to ``copy.deepcopy`` with the shared memo, so
    sharing inside the copied graph is preserved and nothing is shared with ``obj``.
    Modules with their own copy protocol (``__deepcopy__``, ``__reduce_ex__``,
    ``__getstate__``) take the plain ``deepcopy`` route."""
    memo: dict[int, Any] = {}
    modules = obj.components.values() if hasattr(obj, "components") else [obj]
    for module in modules:
        if isinstance(module, torch.nn.Module):
            _copy_module(module, memo)
    return copy.deepcopy(obj, memo)


def _copy_module(module: torch.nn.Module, memo: dict[int, Any]) -> Any:
    if id(module) in memo:
        return memo[id(module)]
    cls = type(module)
    if (
        hasattr(cls, "__deepcopy__")
        or cls.__reduce_ex__ is not torch.nn.Module.__reduce_ex__
        or cls.__getstate__ is not torch.nn.Module.__getstate__
    ):
        return copy.deepcopy(module, memo)
    new = cls.__new__(cls)
    memo[id(module)] = new
    state: dict[str, Any] = {}
    for key, value in module.__getstate__().items():  # what deepcopy would copy
        kind = type(value)
        if id(value) in memo:
            state[key] = memo[id(value)]
        elif kind in _EMPTY_CONTAINERS and not value:
            state[key] = memo[id(value)] = kind()  # in the memo: aliasing survives
        elif key == "_modules":
            state[key] = kind(
                (name, None if child is None else _copy_module(child, memo))
                for name, child in value.items()
            )
        else:
            state[key] = copy.deepcopy(value, memo)
    new.__setstate__(state)
    return new


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        return getattr(torch, dtype.removeprefix("torch."))
    return dtype


class Zoo:
    """Tiny offline pipelines (``sd15``, ``sdxl``, ``sd3``, ``flux``) and image encoders
    (``clip-vision-1024``, ``clip-vision-1280``, ``siglip``) on one device and dtype.

    ``get`` / ``component`` raise :class:`harness.cell.classify.Unsupported` when the installed
    diffusers / transformers lacks a class the entry needs (grey in the grid, not red).
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str | None = torch.float32,
        seed: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = _as_dtype(dtype)
        self.seed = seed
        self._originals: dict[str, Any] = {}
        self._info: dict[str, BuildInfo] = {}

    # -- names ----------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Pipeline names, whether or not this version has them (see ``available``)."""
        return list(PIPELINE_SPECS)

    def component_names(self) -> list[str]:
        """Image-encoder names for ``component``."""
        return list(ENCODER_SPECS)

    def available(self, name: str) -> bool:
        """Whether every class entry ``name`` needs exists in the installed libraries."""
        return self.missing(name) is None

    def missing(self, name: str) -> str | None:
        """Why ``name`` cannot be built here (the first missing class), or ``None``."""
        try:
            for library, cls in self._classes(name):
                resolve(library, cls)
        except Unsupported as exc:
            return str(exc)
        return None

    def info(self, name: str) -> BuildInfo:
        """Build facts of ``name`` (builds it if needed)."""
        self._original(name)
        return self._info[name]

    # -- copies ---------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """A pristine pipeline that shares no state with the cache or other copies."""
        if name not in PIPELINE_SPECS:
            raise KeyError(f"unknown zoo pipeline {name!r}; known: {self.names()}")
        return deep_copy(self._original(name))

    def component(self, name: str) -> Any:
        """A pristine image encoder (``CLIPVisionModelWithProjection`` / ``SiglipVisionModel``)."""
        if name not in ENCODER_SPECS:
            raise KeyError(f"unknown zoo component {name!r}; known: {self.component_names()}")
        return deep_copy(self._original(name))

    def processor(self, name: str) -> Any:
        """A new image processor matching encoder ``name`` (cheap: built on every call)."""
        return build_component(ENCODER_SPECS[name].processor, 0).obj

    # -- building -------------------------------------------------------------------------
    def _classes(self, name: str) -> list[tuple[str, str]]:
        if name in PIPELINE_SPECS:
            spec = PIPELINE_SPECS[name]
            comps: list[Component] = list(spec.components.values())
            out = [("diffusers", spec.pipeline_cls)]
        elif name in ENCODER_SPECS:
            enc = ENCODER_SPECS[name]
            comps, out = [enc.model, enc.processor], []
        else:
            raise KeyError(f"unknown zoo entry {name!r}")
        for comp in comps:
            if comp.library in ("diffusers", "transformers"):
                out.append((comp.library, comp.cls))
            elif comp.library == "image_processor":
                out.append(("transformers", comp.cls))
            if comp.config_cls:
                out.append(("transformers", comp.config_cls))
        return out

    def _original(self, name: str) -> Any:
        if name not in self._originals:
            start = time.perf_counter()
            if name in PIPELINE_SPECS:
                obj, info = self._build_pipeline(name)
            else:
                obj, info = self._build_encoder(name)
            info.seconds = time.perf_counter() - start
            self._originals[name] = obj
            self._info[name] = info
        return self._originals[name]

    def _place(self, module: torch.nn.Module) -> None:
        """Move to the zoo's device and dtype; the dtype only when it differs (newer
        diffusers log a warning on every ``.to(dtype)``)."""
        current = next(module.parameters(), None)
        if current is not None and current.dtype == self.dtype:
            module.to(device=self.device)
        else:
            module.to(device=self.device, dtype=self.dtype)

    def _build_pipeline(self, name: str) -> tuple[Any, BuildInfo]:
        spec = PIPELINE_SPECS[name]
        pipeline_cls = resolve("diffusers", spec.pipeline_cls)  # Unsupported when absent
        missing = self.missing(name)
        if missing:
            raise Unsupported(f"{spec.pipeline_cls} needs a class this version lacks: {missing}")
        info = BuildInfo(name, spec.pipeline_cls)
        parts: dict[str, Any] = {}
        for comp_name, comp in spec.components.items():
            built: Built = build_component(comp, seed_for(name, comp_name, base=self.seed))
            parts[comp_name] = built.obj
            info.dropped[comp_name] = built.dropped
            info.reinitialised[comp_name] = len(built.reinitialised)
        kwargs, info.dropped["<pipeline>"] = filter_kwargs(
            pipeline_cls.__init__, {**parts, **spec.init_extra}
        )
        for comp_name, module in module_components(parts).items():
            if comp_name not in kwargs:
                raise Unsupported(f"{spec.pipeline_cls} takes no {comp_name!r} component")
            self._place(module)
        pipe = pipeline_cls(**kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe, info

    def _build_encoder(self, name: str) -> tuple[Any, BuildInfo]:
        enc = ENCODER_SPECS[name]
        missing = self.missing(name)
        if missing:
            raise Unsupported(missing)
        built = build_component(enc.model, seed_for(name, base=self.seed))
        self._place(built.obj)
        info = BuildInfo(name, enc.model.cls, dropped={"model": built.dropped})
        info.reinitialised["model"] = len(built.reinitialised)
        return built.obj, info
