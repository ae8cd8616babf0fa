"""The adapter API users call on the denoiser itself, driven without any LoRA loader.

``PeftAdapterMixin`` (``pipe.unet`` / ``pipe.transformer``) lets a user add an adapter
from a ``peft.LoraConfig`` (``add_adapter``: how training scripts attach a LoRA), pick the
active ones (``set_adapter``), switch them off and on (``disable_adapters`` /
``enable_adapters``), ask which are active (``active_adapters``) and fuse / unfuse them.
These rows attach adapters with ``add_adapter`` and then write the tensors of a LoRA file
into the injected layers themselves, so no loader or converter stands between the method
under test and the oracle: the independent reference of that file
(:mod:`harness.oracles.lora`), scaled by the config's ``lora_alpha / r``.

Why alpha != rank: a method that applies (or forgets) the ``alpha / r`` factor must show.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from harness.inputs.checkpoints.lora.cases import Case, full_case, realise
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.checkpoints.lora.layouts import DENOISER
from harness.oracles.lora import Reference, parse

#: Rank and alpha of every adapter these rows attach: alpha != rank, so the scaling shows.
RANK, ALPHA = 4, 2.0
SCALING = ALPHA / RANK


@dataclass
class Adapter:
    """One adapter a row attaches: its name, the reference effect at weight 1 of the file
    (``alpha = rank``), and the real module paths it targets in the denoiser."""

    name: str
    ref: Reference
    paths: dict[str, str]  # canonical module name -> real path in the denoiser
    built: Any  # the file (``Built``: state dict + key stems), for rows that load it


def denoiser_lora(scene: Any, name: str, seed: int, part: str = "all") -> Adapter:
    """A diffusers/PEFT-format LoRA on the denoiser's layers (``part``: ``all``, ``even``
    or ``odd`` groups; even and odd share the first group, so two adapters overlap)."""
    denoiser = DENOISER[scene.arch]
    fmt = FORMATS["peft"]
    case = full_case(fmt, scene.arch, scene.layout, rank=RANK, alpha=None, seed=seed)
    picks = [p for p in case.picks if p.group.component == denoiser]
    if part == "even":
        picks = [p for i, p in enumerate(picks) if i % 2 == 0]
    elif part == "odd":
        picks = [p for i, p in enumerate(picks) if i % 2 == 1 or i == 0]
    case = Case(picks, 0, case.dtype, seed, 0)
    built = realise(fmt, scene.arch, scene.layout, case)
    ref = parse(built.state_dict, fmt, scene.arch, scene.layout)
    layout = scene.layout[denoiser]
    paths = {module: layout.real_path(module) for _, module in ref.modules()}
    if not paths:  # a row over no module would pass vacuously: our bug
        raise RuntimeError(f"no {denoiser} module in the {part} LoRA of {scene.arch}")
    return Adapter(name, ref, paths, built)


def lora_config(adapter: Adapter) -> Any:
    """The ``peft.LoraConfig`` a training script would pass: the adapter's exact modules."""
    from peft import LoraConfig

    return LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=sorted(adapter.paths.values()))


def write_weights(scene: Any, pipe: Any, adapter: Adapter) -> list[str]:
    """Copy the file's down / up matrices into the adapter's injected ``lora_A`` / ``lora_B``
    (harness code, outside any library call). Returns the modules that carry no such layer
    for the adapter (nothing could be written there)."""
    denoiser = DENOISER[scene.arch]
    modules = scene.modules(pipe, denoiser)
    absent = []
    with torch.no_grad():
        for component, module_name in adapter.ref.modules():
            terms = adapter.ref.terms[(component, module_name)]
            if len(terms) != 1 or terms[0].scale != 1.0:
                raise RuntimeError(f"{module_name}: expected one unscaled term per module")
            module = modules[module_name]
            lora_a = getattr(module, "lora_A", {})
            if adapter.name not in lora_a:
                absent.append(module_name)
                continue
            down, up = lora_a[adapter.name].weight, module.lora_B[adapter.name].weight
            down.copy_(terms[0].down.reshape(down.shape).to(down.dtype))
            up.copy_(terms[0].up.reshape(up.shape).to(up.dtype))
    return absent


def wrapped_paths(model: torch.nn.Module, adapter_name: str) -> set[str]:
    """Module paths that carry a LoRA layer of ``adapter_name`` (read by attribute, so it
    works for every peft release of the grid)."""
    return {
        path
        for path, module in model.named_modules()
        if adapter_name in getattr(module, "lora_A", {})
    }


def as_names(value: Any) -> list[str]:
    """A list of adapter names from what the library returned (a name or a list)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def missing_methods(obj: Any, names: Iterable[str]) -> list[str]:
    """Public methods / attributes ``obj``'s class lacks (the API probe for UNSUPPORTED)."""
    return [n for n in names if not hasattr(type(obj), n)]


def require_methods(compat: Any, obj: Any, *names: str) -> None:
    """UNSUPPORTED where ``obj``'s class lacks one of the public methods ``names``."""
    missing = missing_methods(obj, names)
    compat.require(not missing, f"{type(obj).__name__} has no {', '.join(missing)}")


def denoiser_with(compat: Any, scene: Any, pipe: Any, *methods: str) -> Any:
    """The pipeline's denoiser, UNSUPPORTED where it lacks ``methods`` or peft is absent."""
    model = getattr(pipe, DENOISER[scene.arch])
    require_methods(compat, model, *methods)
    try:
        import peft  # noqa: F401
    except ImportError:
        compat.unsupported("peft is not installed in this cell")
    return model


def add_with_weights(compat: Any, scene: Any, pipe: Any, model: Any, adapter: Adapter) -> None:
    """``model.add_adapter(LoraConfig(...), adapter_name=...)``, then the file's matrices
    written into the new layers (ours). A target without a layer is DROPPED_KEYS."""
    from harness.protocol.outcomes import Outcome

    config = lora_config(adapter)  # our build, outside the library call
    with compat.library_call(names=[adapter.name]):
        model.add_adapter(config, adapter_name=adapter.name)
    absent = write_weights(scene, pipe, adapter)
    if absent:
        compat.detail(not_wrapped=absent[:20])
        compat.finding(
            Outcome.DROPPED_KEYS,
            f"add_adapter({adapter.name!r}) put no LoRA layer on {len(absent)} targeted "
            f"module(s): {', '.join(absent[:5])}",
        )


def load_adapter(compat: Any, pipe: Any, adapter: Adapter) -> None:
    """``pipe.load_lora_weights`` of the adapter's file (a copy of its dict)."""
    with compat.library_call(names=adapter.built.stems()):
        pipe.load_lora_weights(dict(adapter.built.state_dict), adapter_name=adapter.name)


def fused_left(scene: Any, pipe: Any) -> dict[str, float]:
    """Stored weights beyond fp rounding of pristine (unfuse subtracts what fuse added):
    module -> max abs difference."""
    left = {}
    for component, weights in scene.stored(pipe).items():
        for name, w in weights.items():
            base = scene.base[component][name]
            tol = 1e-5 * float(base.abs().max()) + 1e-6 if scene.dtype == torch.float32 else 2e-2
            err = float((w - base).abs().max())
            if err > tol:
                left[f"{component}.{name}"] = err
    return left
