"""Which LoRA (and IP-Adapter) loader mixins the installed diffusers has, and what uses them.

The family axis comes from the library: every public class named ``*LoraLoaderMixin`` in
``diffusers.loaders.lora_pipeline`` (0.30 on) or ``diffusers.loaders`` (every release), with

* its denoiser attribute (``transformer_name`` / ``unet_name``, read off the class);
* the components it loads LoRAs into (``_lora_loadable_modules``);
* the pipeline classes that inherit it and the denoiser class they annotate, read from the
  pipelines' *source* (``class X(..., Mixin)`` and ``transformer: Model``; a modular
  pipeline names its components in its blocks' ``ComponentSpec("transformer", Model)``
  in the same folder), because
  importing every pipeline module of a release costs tens of seconds and optional
  dependencies; the families the suite runs are checked again on the imported classes.

:func:`unknown_mixins` lists the mixins the committed table does not know: a new family.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIXIN_SUFFIX = "LoraLoaderMixin"
#: Where releases define their LoRA loader mixins (``lora_pipeline`` from 0.30 on).
MIXIN_MODULES = ("diffusers.loaders.lora_pipeline", "diffusers.loaders")
#: The same probe for IP-Adapter loaders (``IPAdapterMixin``, ``SD3IPAdapterMixin``, ...).
IP_ADAPTER_SUFFIX = "IPAdapterMixin"
IP_ADAPTER_MODULES = ("diffusers.loaders.ip_adapter", "diffusers.loaders")

_CLASS = re.compile(r"^class\s+(\w+)\s*\(([^)]*)\)\s*:", re.MULTILINE)
#: Components a family row loads into: denoisers, MiniMax-H3's second partition, Anima's
#: text conditioner, LTX2's text connectors.
_TARGETS = r"(transformer|unet|transformer_2|transformer_ref|text_conditioner|connectors)"
_DENOISER_ARG = re.compile(rf"\b{_TARGETS}\s*:\s*([\w.]+)")
#: A block's spec names the component literally or by a variable (MiniMax-H3's denoise
#: step takes ``self.transformer_name``: one step class serves both partitions).
_COMPONENT_SPEC = re.compile(
    rf"ComponentSpec\(\s*(?:[\"']{_TARGETS}[\"']|[\w.]*(?:transformer|unet)\w*)\s*,\s*([\w.]+)"
)


@dataclass
class MixinInfo:
    """One mixin class of the installed release."""

    name: str
    attr: str | None  # ``transformer_name`` / ``unet_name`` value
    pipelines: list[str] = field(default_factory=list)
    denoisers: list[str] = field(default_factory=list)
    loadable: list[str] = field(default_factory=list)  # ``_lora_loadable_modules``

    def as_dict(self) -> dict[str, Any]:
        return {
            "attr": self.attr,
            "pipelines": self.pipelines,
            "denoisers": self.denoisers,
            "loadable": self.loadable,
        }


def mixin_classes(
    modules: Iterable[str] = MIXIN_MODULES, suffix: str = MIXIN_SUFFIX
) -> dict[str, type]:
    """Public ``*<suffix>`` classes (``*LoraLoaderMixin`` by default) of the installed
    diffusers, by name."""
    found: dict[str, type] = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in dir(module):
            if name.startswith("_") or not name.endswith(suffix):
                continue
            cls = getattr(module, name, None)
            if isinstance(cls, type):
                found.setdefault(name, cls)
    return found


def denoiser_attr(cls: type) -> str | None:
    """The pipeline attribute the mixin loads denoiser LoRAs into."""
    for key in ("transformer_name", "unet_name"):
        value = getattr(cls, key, None)
        if isinstance(value, str):
            return value
    return None


#: Package folders whose modules define pipeline classes (modular pipelines from 0.34 on).
PIPELINE_FOLDERS = ("pipelines", "modular_pipelines")


def pipeline_sources() -> list[Path]:
    import diffusers

    package = Path(diffusers.__file__).parent
    return sorted(p for folder in PIPELINE_FOLDERS for p in (package / folder).rglob("*.py"))


def scan_pipelines(
    sources: Iterable[Path], mixins: Iterable[str], suffix: str = MIXIN_SUFFIX
) -> dict[str, MixinInfo]:
    """Pipelines whose class statement names a mixin, and the denoiser class they annotate."""
    infos = {name: MixinInfo(name, None) for name in mixins}
    for path in sources:
        text = path.read_text(encoding="utf-8", errors="replace")
        if suffix not in text:
            continue
        denoisers = sorted({m.group(2).rsplit(".", 1)[-1] for m in _DENOISER_ARG.finditer(text)})
        if path.parent.parent.name == "modular_pipelines":
            denoisers = sorted(set(denoisers) | _folder_components(path.parent))
        for match in _CLASS.finditer(text):
            bases = {b.strip().rsplit(".", 1)[-1] for b in match.group(2).split(",")}
            for name in bases & set(infos):
                info = infos[name]
                info.pipelines.append(match.group(1))
                info.denoisers = sorted(set(info.denoisers) | set(denoisers))
    for info in infos.values():
        info.pipelines.sort()
    return infos


def _folder_components(folder: Path) -> set[str]:
    """Classes a modular pipeline's blocks declare for its LoRA-target components."""
    found: set[str] = set()
    for source in folder.glob("*.py"):
        text = source.read_text(encoding="utf-8", errors="replace")
        found |= {m.group(2).rsplit(".", 1)[-1] for m in _COMPONENT_SPEC.finditer(text)}
    return found


def probe(
    modules: Iterable[str] = MIXIN_MODULES, suffix: str = MIXIN_SUFFIX
) -> dict[str, MixinInfo]:
    """Every mixin of the installed release with its attribute, pipelines and denoisers."""
    classes = mixin_classes(modules, suffix)
    infos = scan_pipelines(pipeline_sources(), classes, suffix)
    for name, cls in classes.items():
        infos[name].attr = denoiser_attr(cls)
        infos[name].loadable = list(getattr(cls, "_lora_loadable_modules", None) or [])
    return dict(sorted(infos.items()))


def unknown_mixins(found: Iterable[str], known: Iterable[str]) -> list[str]:
    """Mixins of the release that the committed table does not know (a new family)."""
    return sorted(set(found) - set(known))
