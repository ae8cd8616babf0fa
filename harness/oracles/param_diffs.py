"""Full-parameter differences: a file's ``.diff`` / ``.diff_b`` on a parameter no LoRA pair
targets (Wan's norm weights and biases) must leave the parameter at pristine + difference.

Computed from the pristine parameters and the file's tensors alone (float64); no diffusers.
A parameter is judged three ways: it holds the expected value (applied), it still holds its
pristine value while the difference is not zero (dropped), or anything else (wrong). A zero
difference is "applied" whatever the loader did with its key: nothing was lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from harness.oracles.lora import REL_TOL


@dataclass
class ParamComparison:
    """Parameter paths by how they came out of a load; worst relative error per path."""

    applied: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    errors: dict[str, float] = field(default_factory=dict)


def expected_params(
    base: Mapping[str, torch.Tensor], diffs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Parameter path -> pristine + the file's difference (float64)."""
    return {
        path: base[path].to(torch.float64) + diff.detach().to("cpu", torch.float64)
        for path, diff in diffs.items()
    }


def _close(got: torch.Tensor, want: torch.Tensor, tol: float) -> tuple[bool, float]:
    if got.shape != want.shape:
        return False, float("inf")
    scale = max(1.0, float(want.abs().max()))
    err = float((got - want).abs().max()) / scale
    return err <= tol, err


def compare_params(
    observed: Mapping[str, torch.Tensor | None],
    base: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    dtypes: Mapping[str, torch.dtype],
) -> ParamComparison:
    """Each expected parameter against what the model holds (``None``: the model no longer
    has it, which is wrong). ``dtypes``: the dtype each parameter and difference was stored
    in (the looser one sets the rounding allowance)."""
    out = ParamComparison()
    for path, want in expected.items():
        got = observed.get(path)
        if got is None:
            out.wrong.append(path)
            continue
        got = got.to(torch.float64)
        tol = REL_TOL.get(dtypes.get(path, torch.float32), 2e-5)
        ok, err = _close(got, want, tol)
        out.errors[path] = err
        if ok:
            out.applied.append(path)
        elif _close(got, base[path].to(torch.float64), tol)[0]:
            out.dropped.append(path)
        else:
            out.wrong.append(path)
    return out
