"""Which lifecycle APIs a cell has, and the library semantics the pure model follows.

Where versions differ for the lifecycle suite. Availability is *probed*
(method present, keyword accepted); facts a probe cannot see are data in ``FACTS`` with the
source they were read from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.drivers.probe import Since, installed


@dataclass(frozen=True)
class Fact:
    """A library behaviour the model relies on, and where it comes from."""

    name: str
    holds: str  # versions it holds for
    source: str


#: Behaviours the pure model encodes (``harness/scenarios/lifecycle/model.py``). Same in every cell
#: of the grid (checked against 0.26.3 / peft 0.8.2, 0.33.1 / 0.15.1, 0.42.1 / 0.21.2).
FACTS: tuple[Fact, ...] = (
    Fact(
        "a load activates the new adapter on its components",
        "peft >= 0.10 (cells 0.28.2+); before (peft 0.8.2 / 0.9.0: cells 0.26.3, 0.27.2) "
        "only layers the adapter wraps first activate it",
        "peft tuners_utils.py BaseTuner.inject_adapter ends with "
        "self.set_adapter(self.active_adapters) (the new tuner's active adapter is the new "
        "one) since peft 0.10; older: LoraLayer.update_layer keeps the layer's active list",
    ),
    Fact(
        "set_adapters lists names per layer",
        "all",
        "diffusers set_weights_and_activate_adapters -> BaseTunerLayer.set_adapter(names) "
        "(names absent from a layer are skipped in forward); set_scale(name, w) multiplies "
        "scaling = w * alpha / r",
    ),
    Fact(
        "fuse folds active adapters with weights",
        "all",
        "diffusers fuse_lora -> BaseTunerLayer.merge(adapter_names=None) merges "
        "self.active_adapters with get_delta_weight (scaling includes the weight)",
    ),
    Fact(
        "unload keeps fused weights",
        "all",
        "diffusers recurse_remove_peft_layers / _unload_and_optionally_merge(merge=False) "
        "put the base layer back as is: a fused delta stays (documented fuse+unload recipe)",
    ),
    Fact(
        "disable unmerges",
        "all",
        "peft LoraLayer.forward: if self.disable_adapters and self.merged: self.unmerge()",
    ),
    Fact(
        "delete activates the first remaining adapter",
        "all",
        "peft BaseTunerLayer.delete_adapter: when no active adapter is left, "
        "set_adapter(remaining_adapters[0])",
    ),
    Fact(
        "hotswap zeroes untargeted layers and resets the weight",
        "diffusers >= 0.33, peft > 0.14",
        "peft utils/hotswap.py hotswap_adapter_from_state_dict: missing keys are fill_(0.0); "
        "_update_scaling(module, adapter, alpha / rank) drops a set_adapters weight",
    ),
    Fact(
        "hotswap of a fused adapter",
        "peft >= 0.21 raises ValueError; older peft swaps lora_B under the fused weight",
        "peft 0.21 utils/hotswap.py: 'Cannot hot-swap adapter ... currently merged'",
    ),
)


#: peft >= 0.10: ``BaseTuner.inject_adapter`` ends by activating the new adapter (the
#: first fact above; peft 0.10.0 release notes, tuners_utils.py). Our table, not a read of
#: peft's source at run time: what is correct is decided by the documented semantics.
LOAD_ACTIVATES = Since("0.10", package="peft", source="peft 0.10.0, BaseTuner.inject_adapter")


def load_activates() -> bool:
    """Whether a load makes the new adapter the active one on every wrapped layer of the
    components it targets (``LOAD_ACTIVATES``)."""
    return LOAD_ACTIVATES.holds()


def has_hotswap(pipe: Any) -> bool:
    """``load_lora_weights(hotswap=True)``: diffusers >= 0.33 (``enable_lora_hotswap`` is
    there) with peft > 0.14 (``peft.utils.hotswap``)."""
    if not callable(getattr(pipe, "enable_lora_hotswap", None)):
        return False
    try:
        return installed("peft") > (0, 14, 99)
    except Exception:  # noqa: BLE001 - no peft: no hotswap
        return False


#: Pipeline methods each rule family needs (a rule is drawn only where all exist).
RULE_APIS: dict[str, tuple[str, ...]] = {
    "load": ("load_lora_weights",),
    "set_adapters": ("set_adapters",),
    "fuse": ("fuse_lora", "unfuse_lora"),
    "disable": ("disable_lora", "enable_lora"),
    "delete": ("delete_adapters",),
    "unload": ("unload_lora_weights",),
    "set_lora_device": ("set_lora_device",),
    "save_reload": ("save_lora_weights",),
    "ip_adapter": ("load_ip_adapter", "unload_ip_adapter", "set_ip_adapter_scale"),
}


def available_rules(pipe: Any, arch: str) -> dict[str, bool]:
    """Rule family -> whether this cell's pipeline has the API (``hotswap`` included)."""
    out = {
        rule: all(callable(getattr(pipe, m, None)) for m in methods)
        for rule, methods in RULE_APIS.items()
    }
    out["ip_adapter"] = out["ip_adapter"] and arch in ("sd15", "sdxl")
    out["hotswap"] = has_hotswap(pipe)
    return out
