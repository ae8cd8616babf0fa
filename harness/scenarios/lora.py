"""The LoRA suites' session object: one zoo architecture measured once.

A :class:`Scene` holds an architecture's canonical layout and pristine weights, reads what
a pipeline now computes per layer, and compares it with the independent reference
(:mod:`harness.oracles.lora`); :func:`scene_cache` builds each one once per session so the
LoRA, lifecycle and sharing suites share them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.cell.classify import Unsupported
from harness.drivers.probe import accepts
from harness.inputs.checkpoints.lora.layouts import ModelLayout, model_layout
from harness.oracles.lora import (
    Comparison,
    Reference,
    allowance,
    base_weight,
    compare,
    compare_bias,
    effective_bias,
    effective_weight,
)
from harness.protocol.outcomes import Outcome


@dataclass
class Scene:
    """One zoo architecture, measured once: canonical layout and pristine weights."""

    arch: str
    zoo: Any
    layout: ModelLayout = field(init=False)
    classes: dict[str, str] = field(init=False)
    base: dict[str, dict[str, torch.Tensor]] = field(init=False)
    dtype: torch.dtype = field(init=False)
    #: Pristine biases, measured on first use (only files with ``lora_B.bias`` need them).
    _base_bias: dict[str, dict[str, torch.Tensor]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        pipe = self.zoo.get(self.arch)
        self.layout = model_layout(pipe, self.arch)
        self.classes = {c: type(getattr(pipe, c)).__name__ for c in self.layout}
        self.base = {
            c: {n: base_weight(m) for n, m in self.modules(pipe, c).items()} for c in self.layout
        }
        self.dtype = self.zoo.dtype

    def fresh(self) -> Any:
        return self.zoo.get(self.arch)

    def modules(self, pipe: Any, component: str) -> dict[str, torch.nn.Module]:
        """Probe-able layers (Linear, 1x1 Conv) by canonical path."""
        layout = self.layout[component]
        comp = getattr(pipe, component)
        return {
            name: comp.get_submodule(layout.real_path(name))
            for name, layer in layout.layers.items()
            if layer.kernel in ((0, 0), (1, 1))
        }

    def observe(self, pipe: Any) -> dict[str, dict[str, torch.Tensor]]:
        return {
            c: {n: effective_weight(m) for n, m in self.modules(pipe, c).items()}
            for c in self.layout
        }

    def observe_bias(self, pipe: Any) -> dict[str, dict[str, torch.Tensor]]:
        """The bias each probe-able layer acts with (``f(0)``)."""
        return {
            c: {n: effective_bias(m) for n, m in self.modules(pipe, c).items()} for c in self.layout
        }

    def compare_bias(
        self, observed: Mapping[str, Mapping[str, torch.Tensor]], ref: Reference
    ) -> dict[str, Comparison]:
        """Observed biases vs pristine + the file's ``s * b`` (pristine where none)."""
        if self._base_bias is None:
            self._base_bias = self.observe_bias(self.fresh())
        return {
            c: compare_bias(observed[c], self._base_bias[c], ref, c, self.dtype)
            for c in self.layout
        }

    def stored(self, pipe: Any) -> dict[str, dict[str, torch.Tensor]]:
        """The stored (base_layer) weights, e.g. after fuse_lora."""
        return {
            c: {n: base_weight(m) for n, m in self.modules(pipe, c).items()} for c in self.layout
        }

    def compare(
        self,
        observed: Mapping[str, Mapping[str, torch.Tensor]],
        ref: Reference,
        weight: float = 1.0,
    ) -> dict[str, Comparison]:
        out = {}
        for component in self.layout:
            cmp = compare(
                observed[component], self.base[component], ref, component, self.dtype, weight
            )
            missing = [m for c, m in ref.terms if c == component and m not in observed[component]]
            for name in missing:  # a reference module the model does not have: our bug
                raise RuntimeError(f"reference targets {component}.{name}, which the model lacks")
            out[component] = cmp
        return out

    def expect_effect(
        self, compat: Any, pipe: Any, ref: Reference, what: str, weight: float = 1.0,
        prefix: str = "after ",
    ) -> None:  # fmt: skip
        """The pipeline now computes base + weight * reference delta, else the finding of
        ``judge_load`` prefixed with what was done. The probe runs outside any library call."""
        from harness.cell.classify import Finding
        from harness.drivers.lora import judge_load

        refuse_unfilled_layers(compat, pipe, what, prefix)
        comparisons = self.compare(self.observe(pipe), ref, weight)
        try:
            judge_load(ref, comparisons, [], [], compat, self.classes)
        except Finding as exc:
            raise Finding(exc.outcome, f"{prefix}{what}: {exc}") from None

    def restore_diff(self, pipe: Any) -> dict[str, float]:
        """Modules whose effective weight differs from pristine: exactly for plain layers
        (read directly), within probe rounding for layers still wrapped by an adapter."""
        changed: dict[str, float] = {}
        for component in self.layout:
            for name, module in self.modules(pipe, component).items():
                w = effective_weight(module)
                b = self.base[component][name]
                if module is getattr(module, "base_layer", module):
                    same = torch.equal(w, b)
                else:
                    same = float((w - b).abs().max()) <= allowance(
                        torch.zeros(()), b, self.dtype, self.dtype
                    )
                if not same:
                    changed[f"{component}.{name}"] = float((w - b).abs().max())
        return changed

    def fuse_kwargs(self, pipe: Any) -> dict[str, Any]:
        """Fuse every component: ``components=`` from 0.30 (Flux's default is the
        transformer only), ``fuse_unet`` / ``fuse_text_encoder`` (default True) before."""
        if accepts(pipe.fuse_lora, "components"):
            return {"components": list(self.layout)}
        return {}


def refuse_unfilled_layers(compat: Any, pipe: Any, what: str, prefix: str) -> None:
    """WRONG_RESULT when the library said it left adapter layers of an adapter still in the
    pipeline unfilled ("missing keys in the model"): their effect is uninitialised memory,
    so comparing it would make the verdict a coin toss (it matched the reference by chance
    in one full-matrix run and not in the next). A deleted adapter's layers are gone."""
    from harness.cell.classify import Finding
    from harness.drivers.lora import unfilled_adapter_layers

    unfilled = unfilled_adapter_layers(getattr(compat, "library_messages", []))
    if not unfilled:
        return
    listed = getattr(pipe, "get_list_adapters", None)
    present: set[str] | None = None
    if callable(listed):
        try:  # a read-only probe; where it fails, every reported adapter counts as live
            present = {name for names in listed().values() for name in names}
        except Exception:  # noqa: BLE001
            present = None
    live = {a: m for a, m in unfilled.items() if present is None or a in present}
    if live:
        adapter, modules = next(iter(live.items()))
        compat.detail(unfilled_adapter_layers=live)
        raise Finding(
            Outcome.WRONG_RESULT,
            f"{prefix}{what}: the library reported adapter {adapter!r} weights missing for "
            f"{', '.join(modules[:4])} (layers created, not loaded from the file): their "
            "effect is whatever memory held",
        )


def scene_cache(zoo: Any) -> Callable[[str], Scene]:
    """``get(arch)`` -> the session's Scene for ``arch`` (built once); raises Unsupported
    (grey) where the pipeline class is absent in this version (Flux before 0.30)."""
    cache: dict[str, Scene] = {}
    failures: dict[str, str] = {}

    def get(arch: str) -> Scene:
        if arch in failures:  # a fresh exception each time: re-raising one grows its traceback
            raise Unsupported(failures[arch])
        if arch not in cache:
            try:
                cache[arch] = Scene(arch, zoo)
            except Unsupported as exc:
                failures[arch] = str(exc)
                raise
        return cache[arch]

    return get
