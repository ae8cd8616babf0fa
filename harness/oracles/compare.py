"""Comparison helpers shared by every suite's oracle.

Tolerances are dtype-aware (a bf16 round trip is not bit-exact, an fp32 unload must be),
snapshots are detached CPU copies (so later in-place changes cannot leak into the
"before" picture), and input-mutation checks fingerprint the caller's objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

#: (rtol, atol) per dtype for "equal up to rounding" comparisons of weights and outputs.
TOLERANCE: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-6),
    torch.float64: (1e-9, 1e-12),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return TOLERANCE.get(dtype, TOLERANCE[torch.float32])


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copy of every parameter and buffer, keyed by state-dict name."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@dataclass
class StateDiff:
    changed: dict[str, float] = field(default_factory=dict)  # key -> max abs difference
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.changed or self.added or self.removed)

    def summary(self, limit: int = 8) -> str:
        parts = []
        if self.changed:
            worst = sorted(self.changed.items(), key=lambda kv: -kv[1])[:limit]
            parts.append("changed: " + ", ".join(f"{k} (max {v:.3g})" for k, v in worst))
        if self.added:
            parts.append("added: " + ", ".join(self.added[:limit]))
        if self.removed:
            parts.append("removed: " + ", ".join(self.removed[:limit]))
        return "; ".join(parts) or "identical"


def diff_state(
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor],
    exact: bool = True,
    dtype: torch.dtype | None = None,
) -> StateDiff:
    """Compare two snapshots; ``exact=False`` uses the dtype's tolerance."""
    diff = StateDiff()
    diff.added = sorted(set(after) - set(before))
    diff.removed = sorted(set(before) - set(after))
    for key in sorted(set(before) & set(after)):
        a, b = before[key], after[key]
        if a.shape != b.shape:
            diff.changed[key] = float("inf")
            continue
        if exact:
            if not torch.equal(a, b):
                diff.changed[key] = _max_abs(a, b)
        else:
            rtol, atol = tolerance(dtype or a.dtype)
            if not torch.allclose(a.float(), b.float(), rtol=rtol, atol=atol):
                diff.changed[key] = _max_abs(a, b)
    return diff


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def outputs_close(a: Any, b: Any, dtype: torch.dtype, exact: bool = False) -> tuple[bool, float]:
    """Compare two pipeline outputs (tensors or numpy arrays); returns (close, max abs diff)."""
    ta, tb = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    if ta.shape != tb.shape:
        return False, float("inf")
    delta = float((ta - tb).abs().max()) if ta.numel() else 0.0
    if exact:
        return bool(torch.equal(ta, tb)), delta
    rtol, atol = tolerance(dtype)
    return bool(torch.allclose(ta, tb, rtol=rtol, atol=max(atol, 1e-5))), delta


def fingerprint_inputs(obj: Any) -> Any:
    """A structure-preserving fingerprint of a caller's (nested) dict of tensors: keys, order,
    and each tensor's shape, dtype, device, data pointer and a content clone."""
    if isinstance(obj, torch.Tensor):
        return (
            "tensor",
            tuple(obj.shape),
            str(obj.dtype),
            str(obj.device),
            obj.detach().to("cpu", copy=True),
        )
    if isinstance(obj, Mapping):
        return ("dict", [(k, fingerprint_inputs(v)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [fingerprint_inputs(v) for v in obj])
    return ("value", repr(obj))


def input_mutations(before: Any, after_obj: Any, path: str = "") -> list[str]:
    """Where ``after_obj`` no longer matches the fingerprint ``before`` (empty when intact)."""
    after = fingerprint_inputs(after_obj)
    return _compare(before, after, path or "<input>")


def _compare(a: Any, b: Any, path: str) -> list[str]:
    if a[0] != b[0]:
        return [f"{path}: type changed {a[0]} -> {b[0]}"]
    if a[0] == "tensor":
        problems = []
        if a[1:4] != b[1:4]:
            problems.append(f"{path}: shape/dtype/device changed {a[1:4]} -> {b[1:4]}")
        elif not torch.equal(a[4], b[4]):
            problems.append(f"{path}: values changed in place")
        return problems
    if a[0] == "dict":
        keys_a = [k for k, _ in a[1]]
        keys_b = [k for k, _ in b[1]]
        problems = []
        missing = [k for k in keys_a if k not in keys_b]
        extra = [k for k in keys_b if k not in keys_a]
        if missing:
            problems.append(f"{path}: keys removed {missing[:5]}")
        if extra:
            problems.append(f"{path}: keys added {extra[:5]}")
        if not missing and not extra and keys_a != keys_b:
            problems.append(f"{path}: key order changed")
        values_b = dict(b[1])
        for key, value in a[1]:
            if key in values_b:
                problems += _compare(value, values_b[key], f"{path}[{key!r}]")
        return problems
    if a[0] in ("list", "tuple"):
        if len(a[1]) != len(b[1]):
            return [f"{path}: length changed"]
        out = []
        for i, (x, y) in enumerate(zip(a[1], b[1], strict=True)):
            out += _compare(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: value changed {a[1]} -> {b[1]}"]
