"""Build zoo components from the data table: the ONE place version differences live.

``filter_kwargs`` keeps the keys a constructor accepts and returns the ones it dropped, so
an old diffusers that lacks e.g. ``AutoencoderKL(use_quant_conv=...)`` gets the rest of the
config and the record says what was left out. Nothing else in the zoo looks at versions.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.cell.classify import Unsupported
from harness.inputs.models import tokenizers
from harness.inputs.models.specs import Component

#: Standard deviation used to re-initialise all-zero parameters (see ``reinit_zeros``).
ZERO_REINIT_STD = 0.02


def accepted_parameters(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """Names ``fn`` accepts, and whether it also takes ``**kwargs``.

    diffusers wraps ``__init__`` in ``register_to_config`` (``functools.wraps``), so the
    signature seen here is the real constructor's."""
    params = inspect.signature(fn).parameters
    names = {
        n
        for n, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"
    }
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return names, var_kw


def filter_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """Split ``kwargs`` into those ``fn`` accepts and the names it does not (sorted).

    A callable with ``**kwargs`` accepts everything (transformers configs store unknown keys
    as attributes, which is harmless)."""
    names, var_kw = accepted_parameters(fn)
    if var_kw:
        return dict(kwargs), []
    kept = {k: v for k, v in kwargs.items() if k in names}
    return kept, sorted(set(kwargs) - set(kept))


def resolve(library: str, name: str) -> Any:
    """The class ``name`` of ``library``, or :class:`Unsupported` when this version lacks it."""
    import importlib

    module = importlib.import_module(library)
    cls = getattr(module, name, None)
    if cls is None:
        version = getattr(module, "__version__", "?")
        raise Unsupported(f"{name} does not exist in {library} {version}")
    return cls


def seed_for(*parts: str, base: int = 0) -> int:
    """A stable per-component seed (``hash()`` is salted per process; crc32 is not)."""
    return (base + zlib.crc32("/".join(parts).encode())) % (2**31)


@dataclass
class Built:
    """A constructed component and what building it had to change."""

    obj: Any
    dropped: list[str] = field(default_factory=list)  # config keys this version rejects
    reinitialised: list[str] = field(default_factory=list)  # all-zero params re-drawn


def build_component(component: Component, seed: int) -> Built:
    """Construct one component from its table entry (the config keys its constructor does
    not accept are dropped and listed).

    Models are built under ``torch.random.fork_rng`` with ``manual_seed(seed)`` so weights
    are identical across runs and processes without touching the caller's RNG state, put in
    ``eval()`` mode (as ``from_pretrained`` would), and get :func:`reinit_zeros`."""
    import torch

    if component.library == "tokenizer":
        return Built(tokenizers.GENERATORS[component.cls](**component.config))
    if component.library == "image_processor":
        # Late transformers 5.x made the default processor classes need torchvision (cells have
        # none) and split the PIL backend out as ``<Name>Pil``; prefer that where it exists.
        import transformers

        cls = getattr(transformers, component.cls + "Pil", None)
        cls = cls or resolve("transformers", component.cls)
        kwargs, dropped = filter_kwargs(cls.__init__, component.config)
        return Built(cls(**kwargs), dropped)

    cls = resolve(component.library, component.cls)
    with torch.random.fork_rng(devices=[]), _unset_memory_as_nan():
        torch.manual_seed(seed)
        if component.library == "transformers":
            config_cls = resolve("transformers", component.config_cls or "")
            kwargs, dropped = filter_kwargs(config_cls.__init__, component.config)
            obj = cls(config_cls(**kwargs))
        else:
            kwargs, dropped = filter_kwargs(cls.__init__, component.config)
            obj = cls(**kwargs)
        reinitialised: list[str] = []
        if isinstance(obj, torch.nn.Module):
            obj.eval()
            # unset first: it draws only where a constructor left memory unset, so every
            # other model's zero re-draws keep the values they always had
            reinitialised = reinit_unset(obj) + reinit_zeros(obj)
    return Built(obj, dropped, reinitialised)


@contextmanager
def _unset_memory_as_nan() -> Iterator[None]:
    """Make ``torch.empty`` hand out NaN instead of whatever memory held, while a model is
    constructed. Why: some constructors leave parameters for ``from_pretrained`` to fill
    (diffusers 0.37 Z-Image: ``x_pad_token = nn.Parameter(torch.empty(...))``); built from a
    config, those held garbage, so a step was NaN in one run and finite in the next. As NaN
    they are found and re-drawn (:func:`reinit_unset`)."""
    import torch

    deterministic = getattr(torch.utils, "deterministic", None)
    if deterministic is None:  # torch < 2.1: nothing to switch
        yield
        return
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    was_fill = deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        deterministic.fill_uninitialized_memory = was_fill
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn)


def reinit_unset(module: Any, std: float = ZERO_REINIT_STD) -> list[str]:
    """Re-draw every parameter holding a NaN after construction (a constructor's
    ``torch.empty`` nothing filled; see :func:`_unset_memory_as_nan`), and every buffer
    that is NaN throughout; returns their names. NaN only: a mask buffer may hold ``-inf``
    on purpose."""
    import torch

    names = []
    with torch.no_grad():
        for kind, tensors in (("any", module.named_parameters()), ("all", module.named_buffers())):
            for name, tensor in tensors:
                if not (tensor.is_floating_point() and tensor.numel()):
                    continue
                nan = torch.isnan(tensor)
                if bool(nan.any() if kind == "any" else nan.all()):
                    tensor.normal_(0.0, std)
                    names.append(name)
    return names


def reinit_zeros(module: Any, std: float = ZERO_REINIT_STD) -> list[str]:
    """Give every all-zero parameter small random values; returns their names.

    Why: freshly constructed models contain zero tensors (norm and linear biases, and in
    some diffusers versions zero-initialised output projections). A LoRA or IP-Adapter
    delta that feeds only into a zero path changes nothing, so a check comparing outputs
    would call a working loader a SILENT_NOOP (or miss a real no-op). Real checkpoints have
    no all-zero tensors either. Uses the current RNG (seeded by the caller)."""
    import torch

    names = []
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.numel() and not bool(param.detach().ne(0).any()):
                param.normal_(0.0, std)
                names.append(name)
    return names


def module_components(components: Mapping[str, Any]) -> dict[str, Any]:
    """The ``torch.nn.Module`` entries of a pipeline's component dict."""
    import torch

    return {k: v for k, v in components.items() if isinstance(v, torch.nn.Module)}
