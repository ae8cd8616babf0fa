"""Where loaders come from: the built-in ones, an entry point, or ``module:attribute``.

``get_spec(name)`` answers for ``diffusers``, ``invokeai``, any name an installed package
registers in the ``adapter_compat.loaders`` entry point group (its value: a
:class:`~harness.loaders.spec.LoaderSpec` object), or ``package.module:ATTRIBUTE`` naming
one directly (what the self-tests and a maintainer's first try use). Stdlib-only: the outer
tool reads install recipes from here before any cell venv exists.
"""

from __future__ import annotations

import importlib
import json
import os
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.loaders.spec import Claim, InstallRecipe, LoaderSpec

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT_GROUP = "adapter_compat.loaders"
#: The loader a downstream suite judges (a name or ``module:attribute``); the cell of a
#: target sets it, a maintainer sets it to try their own.
LOADER_ENV = "ADAPTER_COMPAT_LOADER"

#: InvokeAI's committed releases (cells, recipes, locks).
INVOKEAI_DIR = ROOT / "fixtures" / "invokeai"

#: What every InvokeAI release we test claims for Flux, from its own code: the diffusers
#: (PEFT-named) converter reads the transformer only (alpha passed in, None in the app);
#: the kohya converter reads ``lora_unet_*`` and CLIP ``lora_te1_*`` keys.
INVOKEAI_FLUX = {"peft": ("transformer",), "kohya": ("transformer", "text_encoder")}

#: The probe a target cell runs: build the loader (imports the release's converters).
PROBE = "import harness.loaders.{module} as m; m.make_loader()"


def _invokeai_recipe(cell: dict[str, Any]) -> InstallRecipe:
    """``no-deps``: the lock, then the app alone; ``full``: the lock is the whole closure,
    its torchvision named again next to it (the cell's torch is pinned by the driver)."""
    version = cell["version"]
    requirements = [f"-r {INVOKEAI_DIR / 'locks' / (version + '.txt')}"]
    if "torchvision" in cell.get("torch_pair", {}):
        requirements.append(f"torchvision=={cell['torch_pair']['torchvision']}")
    no_deps = (f"invokeai=={version}",) if cell["recipe"] == "no-deps" else ()
    return InstallRecipe(tuple(requirements), no_deps, PROBE.format(module="invokeai"))


@cache
def invokeai_data() -> dict[str, Any]:
    with open(INVOKEAI_DIR / "cells.json", encoding="utf-8") as handle:
        return json.load(handle)


def invokeai_spec() -> LoaderSpec:
    data = invokeai_data()
    return LoaderSpec(
        name="invokeai",
        description="InvokeAI's Flux LoRA converters (diffusers/PEFT and kohya naming)",
        distribution="invokeai",
        implementation="harness.loaders.invokeai:make_loader",
        naming="bfl",
        claims=(Claim("5.4.0", "flux", INVOKEAI_FLUX),),
        recipes={c["version"]: _invokeai_recipe(c) for c in data["cells"]},
    )


def diffusers_spec() -> LoaderSpec:
    """diffusers through today's path (a tiny pipeline's ``load_lora_weights``); its
    releases are the main matrix (``fixtures/matrix``), so it carries no recipes here."""
    return LoaderSpec(
        name="diffusers",
        description="diffusers' load_lora_weights into the tiny zoo pipeline",
        distribution="diffusers",
        implementation="harness.loaders.diffusers:make_loader",
        naming="diffusers",
        claims=(Claim("0.30.0", "flux", {"peft": ("transformer",), "kohya": ("transformer",)}),),
    )


BUILT_IN = {"invokeai": invokeai_spec, "diffusers": diffusers_spec}


def get_spec(name: str | None = None) -> LoaderSpec:
    """The spec of a loader by name (default: ``ADAPTER_COMPAT_LOADER``, else invokeai)."""
    name = name or os.environ.get(LOADER_ENV) or "invokeai"
    if name in BUILT_IN:
        return BUILT_IN[name]()
    if ":" in name:
        return _check(_resolve(name), name)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            return _check(entry.load(), name)
    known = sorted({*BUILT_IN, *(e.name for e in metadata.entry_points(group=ENTRY_POINT_GROUP))})
    raise KeyError(f"unknown loader {name!r}: known {', '.join(known)} (or module:attribute)")


def make_loader(spec: LoaderSpec) -> Any:
    """Build the implementation (inside a cell: this imports torch and the app)."""
    return _resolve(spec.implementation)()


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _check(obj: Any, name: str) -> LoaderSpec:
    if not isinstance(obj, LoaderSpec):
        raise TypeError(f"{name} is a {type(obj).__name__}, not a LoaderSpec")
    if obj.naming not in ("bfl", "diffusers"):
        raise ValueError(f"{name}: naming {obj.naming!r} is not one of bfl, diffusers")
    return obj
