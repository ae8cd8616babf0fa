"""A pure model of a pipeline's adapter state: what the effective weights must be.

No torch, no diffusers: adapters are opaque *content* ids (a LoRA file) plus the modules
they target. The model follows peft's per-layer semantics, which diffusers exposes as is
(verified in 0.26.3, 0.33.1 and 0.42.1, see ``harness/drivers/lifecycle.py``):

* each wrapped layer has its own ``present`` adapters and its own ``active`` list: a layer
  wrapped for the first time activates the adapter that wrapped it; a layer that already
  holds adapters keeps its active list when another one is added;
* ``set_adapters(names, weights)`` sets every wrapped layer's active list to ``names``
  (names the layer lacks are listed but contribute nothing) and each weight scales that
  adapter's delta;
* ``fuse`` folds the layer's active adapters, with their weights, into the stored weight
  (``merged``); a merged layer adds nothing on top; ``unfuse`` takes the fold out again;
  ``disable`` turns the adapters off (and unmerges: peft unmerges a disabled merged layer
  on its next forward); ``unload`` removes every LoRA layer and keeps what was fused
  (``baked``), the diffusers-documented way to bake a LoRA in;
* ``delete`` drops an adapter; a layer whose active list becomes empty activates its first
  remaining adapter (peft ``delete_adapter``);
* ``hotswap`` replaces the content of an adapter in place on the layers the new file
  targets, zeroes the others (peft ``hotswap_adapter_from_state_dict``) and resets the
  weight on swapped layers to 1 (peft recomputes ``scaling = alpha / rank``).

``contributions(module)`` is what the oracle patches a pristine copy with.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Module = tuple[str, str]  # (component, module path)
Contribution = tuple[str, float]  # (content id, weight)


@dataclass
class LayerState:
    """One LoRA-wrapped layer: adapter name -> content id (None: zeroed by a hotswap)."""

    present: dict[str, str | None] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    weight: dict[str, float] = field(default_factory=dict)
    merged: list[Contribution] = field(default_factory=list)


@dataclass
class LifecycleModel:
    """The expected adapter state of one pipeline."""

    adapters: list[str] = field(default_factory=list)  # load order
    layers: dict[Module, LayerState] = field(default_factory=dict)
    baked: dict[Module, list[Contribution]] = field(default_factory=dict)
    disabled: bool = False
    fused: bool = False
    hotswap_enabled: bool = False
    ip_adapter: str | None = None

    def clone(self) -> LifecycleModel:
        return copy.deepcopy(self)

    # -- LoRA ---------------------------------------------------------------------------
    def load(
        self, name: str, content: str, modules: Iterable[Module], activate: bool = True
    ) -> None:
        """``activate``: the new adapter becomes the only active one on every wrapped layer
        of the components it targets (peft >= 0.10 ``BaseTuner.inject_adapter`` ends with
        ``set_adapter``); otherwise only the layers it wraps first activate it."""
        if name in self.adapters:
            raise ValueError(f"adapter {name!r} already loaded (hotswap replaces it)")
        self.adapters.append(name)
        modules = list(modules)
        if activate:
            components = {c for c, _ in modules}
            for (component, _), layer in self.layers.items():
                if component in components:
                    layer.active = [name]
        for module in modules:
            layer = self.layers.get(module)
            if layer is None:
                layer = self.layers[module] = LayerState(active=[name])
            layer.present[name] = content
            layer.weight[name] = 1.0

    def load_layers(
        self, name: str, contents: Mapping[Module, str | None], activate: bool = True
    ) -> None:
        """Load a re-saved adapter whose layers carry these contents (None: zeroed)."""
        self.load(name, "", contents, activate)
        for module, content in contents.items():
            self.layers[module].present[name] = content

    def contents(self, name: str) -> dict[Module, str | None]:
        return {m: layer.present[name] for m, layer in self.layers.items() if name in layer.present}

    def set_adapters(self, names: list[str], weights: list[float]) -> None:
        for layer in self.layers.values():
            layer.active = list(names)
            for name, weight in zip(names, weights, strict=True):
                if name in layer.present:
                    layer.weight[name] = weight

    def fuse(self) -> None:
        for layer in self.layers.values():
            if not layer.merged and not self.disabled:
                layer.merged = self._active_terms(layer)
        self.fused = True

    def unfuse(self) -> None:
        for layer in self.layers.values():
            layer.merged = []
        self.fused = False

    def disable(self) -> None:
        self.unfuse()
        self.disabled = True

    def enable(self) -> None:
        self.disabled = False

    def delete(self, name: str) -> None:
        self.adapters.remove(name)
        for layer in self.layers.values():
            layer.present.pop(name, None)
            layer.weight.pop(name, None)
            if name in layer.active:
                layer.active = [a for a in layer.active if a != name]
                if not layer.active and layer.present:
                    layer.active = [next(iter(layer.present))]

    def unload(self) -> None:
        for module, layer in self.layers.items():
            if layer.merged:
                self.baked.setdefault(module, []).extend(layer.merged)
        self.layers = {}
        self.adapters = []
        self.disabled = False
        self.fused = False

    def hotswap(self, name: str, content: str, modules: Iterable[Module]) -> None:
        """Swap ``name``'s content; the caller has checked ``modules`` is a subset."""
        new = set(modules)
        for module, layer in self.layers.items():
            if name not in layer.present:
                continue
            if module in new:
                layer.present[name] = content
                layer.weight[name] = 1.0
            else:
                layer.present[name] = None

    def targets(self, name: str) -> set[Module]:
        return {m for m, layer in self.layers.items() if name in layer.present}

    # -- IP-Adapter ---------------------------------------------------------------------
    def load_ip(self, entry: str) -> None:
        self.ip_adapter = entry

    def unload_ip(self) -> None:
        self.ip_adapter = None

    # -- the oracle's view --------------------------------------------------------------
    def _active_terms(self, layer: LayerState) -> list[Contribution]:
        out = []
        for name in layer.active:
            content = layer.present.get(name)
            if content is not None:
                out.append((content, layer.weight[name]))
        return out

    def contributions(self, module: Module) -> list[Contribution]:
        """(content, weight) terms whose deltas add to the pristine weight of ``module``."""
        out = list(self.baked.get(module, []))
        layer = self.layers.get(module)
        if layer is None:
            return out
        if layer.merged:
            return out + list(layer.merged)
        if self.disabled:
            return out
        return out + self._active_terms(layer)

    def expected(self) -> dict[Module, list[Contribution]]:
        """Every module with a non-empty expected delta."""
        modules = set(self.layers) | set(self.baked)
        return {m: terms for m in sorted(modules) if (terms := self.contributions(m))}

    def summary(self) -> dict[str, object]:
        return {
            "adapters": list(self.adapters),
            "fused": self.fused,
            "disabled": self.disabled,
            "baked_modules": len(self.baked),
            "ip_adapter": self.ip_adapter,
        }


def as_plain(expected: Mapping[Module, list[Contribution]]) -> dict[str, list[list[object]]]:
    """JSON-friendly form (``"component:module" -> [[content, weight], ...]``)."""
    return {f"{c}:{m}": [[k, w] for k, w in terms] for (c, m), terms in expected.items()}
