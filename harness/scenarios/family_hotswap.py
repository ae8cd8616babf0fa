"""Hot-swap on a family pipeline: whether the release offers it, how each file reaches
``load_lora_weights``, and what a swap left behind.

The rules are the lifecycle suite's (``suites/lifecycle/test_hotswap.py``): a swap the
documentation promises (same keys, same rank) must leave the adapter acting as a fresh
load of the new file; modules that still act as the old file are STALE_STATE, a second
adapter next to the swapped one too. Here they are applied to one family component,
probed with the family scene (:class:`~harness.scenarios.families.FamilyScene`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.drivers.lifecycle import has_hotswap
from harness.drivers.probe import accepts
from harness.inputs.families.lora_files import FamilyLora
from harness.oracles.lora import Reference
from harness.scenarios.families import FamilyScene, load_source


def hotswap_missing(pipe: Any) -> str | None:
    """Why this release cannot hot-swap into ``pipe`` (None when it can): hot-swap needs
    diffusers >= 0.33 with peft > 0.14, and the family mixin's ``load_lora_weights`` must
    name ``hotswap`` (0.33's video-family mixins take ``**kwargs`` only)."""
    if not has_hotswap(pipe):
        return "load_lora_weights(hotswap=True) needs diffusers >= 0.33 and peft > 0.14"
    if not accepts(type(pipe).load_lora_weights, "hotswap"):
        return f"{type(pipe).__name__}.load_lora_weights has no hotswap parameter here"
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


def still_first(scene: FamilyScene, pipe: Any, first: Reference, second: Reference) -> list[str]:
    """Modules that act as the first file's reference and not as the second's: what a
    swap kept of the old adapter."""
    observed = scene.observe(pipe)
    old = scene.compare(observed, first)[scene.component]
    new = scene.compare(observed, second)[scene.component]
    return sorted(set(old.matched) - set(new.matched))
