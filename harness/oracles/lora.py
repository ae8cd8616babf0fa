"""Reference LoRA effects computed from the checkpoint alone, never by diffusers' converters.

``parse(state_dict, fmt, arch, layout)`` reads a file's keys with the format's naming table
(:mod:`harness.inputs.checkpoints.lora.formats`) and returns, for every diffusers module the file
targets, the terms ``scale * B_rows @ A`` whose sum is the module's weight delta:

* ``scale = alpha / rank`` with ``rank = A.shape[0]``; no alpha key means ``alpha = rank``;
* a fused BFL layer (``img_attn.qkv``, ``linear1``) shares its down matrix ``A``; each part
  gets its own row block of the up matrix ``B`` (widths from the model layout, in the
  layer's order q, k, v[, proj_mlp]);
* BFL ``final_layer.adaLN_modulation.1`` stores shift|scale; diffusers' ``norm_out.linear``
  stores scale|shift, so the up rows are swapped by halves;
* DoRA (``lora_magnitude_vector`` / ``dora_scale``): the module acts with
  ``diag(m / ||W + s B A||_row) (W + s B A)`` - the norm of each *output row* (PEFT
  ``get_weight_norm``: ``torch.linalg.norm(W + s*BA, dim=1)``, detached, which only matters
  for gradients), ``m`` the file's magnitude (a fused layer's rows split like its up);
  a ``(1, in)`` magnitude (OneTrainer / LyCORIS ``wd_on_out=False``) is one per *input
  column*: ``(W + s B A) diag(m / ||W + s B A||_col)``, norms taken down each column;
* an up bias (``lora_B.bias``, peft ``lora_bias`` / BFL ``LinearLora``) adds ``s * b`` to the
  module's bias (the LoRA branch ``s * (B A x + b)``);
* Flux Control: a down matrix wider than the layer means the layer's input is widened with
  zero columns (the base ``[W | 0]``), and RMSNorm scales in the file replace the model's.

No diffusers code is involved: this is the independent side of every LoRA check. Also here:
reading a module's *effective* weight by probing it (``effective_weight``), which works the
same whatever wraps the layer (peft LoRA layers of any version, fused or not).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from harness.inputs.checkpoints.lora.formats import LoraFormat, get_format, stems_of
from harness.inputs.checkpoints.lora.layouts import Group, ModelLayout

#: Relative rounding allowance per dtype (a few ulps), for file tensors and model weights.
REL_TOL: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 2e-5,
    torch.float16: 4e-3,
    torch.bfloat16: 3e-2,
}


@dataclass
class Term:
    """One contribution ``scale * up @ down`` to a module (float64 copies)."""

    down: torch.Tensor
    up: torch.Tensor
    scale: float
    keys: tuple[str, ...]
    dtype: torch.dtype
    bias: torch.Tensor | None = None  # the up matrix's bias rows (``lora_B.bias``)

    def bias_delta(self) -> torch.Tensor | None:
        return None if self.bias is None else self.scale * self.bias

    def delta(self) -> torch.Tensor:
        if self.down.dim() == 4:  # conv: up (out, r, 1, 1), down (r, in, kh, kw)
            return self.scale * torch.einsum("or,rikl->oikl", self.up[:, :, 0, 0], self.down)
        return self.scale * (self.up @ self.down)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``delta @ x`` without forming delta (full-size modules): x is (in, n)."""
        down = self.down.flatten(1)
        up = self.up.flatten(1)
        return self.scale * (up @ (down @ x))


@dataclass
class Reference:
    """Expected effect of one LoRA file on a model: (component, module) -> terms."""

    terms: dict[tuple[str, str], list[Term]] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)
    format: str = ""
    #: DoRA: (component, module) -> per-output-row magnitude (float64), and its file key.
    magnitudes: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    magnitude_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (component, module) -> "input" for a per-input-column magnitude (default: per row).
    magnitude_axis: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Full weights the file replaces: (component, parameter path) -> (value, file key).
    replaced: dict[tuple[str, str], tuple[torch.Tensor, str]] = field(default_factory=dict)

    def plain(self) -> Reference:
        """The same file read as a plain LoRA (DoRA magnitudes ignored)."""
        return Reference(dict(self.terms), list(self.unknown_keys), self.format)

    def expected_weight(
        self, component: str, module: str, base: torch.Tensor, weight: float = 1.0
    ) -> torch.Tensor:
        """What the module should act with: base (zero-padded to a wider down) + delta, or
        the DoRA-normalised weight when the file has a magnitude for it."""
        delta = self.delta(component, module, weight)
        if delta.dim() == base.dim() and delta.shape[1:] != base.shape[1:]:
            base = widen(base, delta.shape)
        delta = delta.reshape(base.shape)
        total = base + delta
        mag = self.magnitudes.get((component, module))
        if mag is None:
            return total
        if self.magnitude_axis.get((component, module)) == "input":
            col_norm = total.flatten(2).norm(dim=(0, 2)) if total.dim() > 2 else total.norm(dim=0)
            return total * (mag / col_norm).reshape(1, -1, *([1] * (total.dim() - 2)))
        norm = total.flatten(1).norm(dim=1)
        return (mag / norm).reshape(-1, *([1] * (total.dim() - 1))) * total

    def modules(self) -> list[tuple[str, str]]:
        return sorted(self.terms)

    def delta(self, component: str, module: str, weight: float = 1.0) -> torch.Tensor:
        terms = self.terms[(component, module)]
        total = terms[0].delta()
        for term in terms[1:]:
            total = total + term.delta()
        return total * weight

    def bias_modules(self) -> list[tuple[str, str]]:
        """Modules whose terms carry an up bias."""
        return sorted(m for m, ts in self.terms.items() if any(t.bias is not None for t in ts))

    def bias_delta(self, component: str, module: str, weight: float = 1.0) -> torch.Tensor | None:
        deltas = [
            d for t in self.terms.get((component, module), []) if (d := t.bias_delta()) is not None
        ]
        if not deltas:
            return None
        return sum(deltas[1:], deltas[0]) * weight

    def keys_for(self, component: str, module: str) -> list[str]:
        keys = {k for t in self.terms.get((component, module), []) for k in t.keys}
        if (component, module) in self.magnitude_keys:
            keys.add(self.magnitude_keys[(component, module)])
        return sorted(keys)

    def file_dtype(self, component: str, module: str) -> torch.dtype:
        return self.terms[(component, module)][0].dtype

    def nonzero(self) -> list[tuple[str, str]]:
        return [m for m, ts in self.terms.items() if any(bool(t.up.abs().sum() > 0) for t in ts)]


def widen(base: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """``[W | 0]``: a layer whose input was widened (Flux Control's ``x_embedder``)."""
    out = torch.zeros(tuple(shape), dtype=base.dtype)
    out[tuple(slice(0, n) for n in base.shape)] = base
    return out


def parse(
    state_dict: Mapping[str, torch.Tensor],
    fmt: LoraFormat | str,
    arch: str,
    layout: ModelLayout,
) -> Reference:
    """Expected per-module terms of ``state_dict`` read as ``fmt`` for a model ``layout``."""
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    table = stems_of(fmt, arch, layout)
    pairs: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    ref = Reference(format=fmt.name)
    norms = fmt.norms(arch, layout) if fmt.norms is not None else {}
    for key, value in state_dict.items():
        if key in norms:
            component, path, _ = norms[key]
            ref.replaced[(component, path)] = (value.detach().to("cpu", torch.float64), key)
            continue
        split = fmt.split_key(key)
        if split is None or split[0] not in table:
            ref.unknown_keys.append(key)
            continue
        stem, role = split
        pairs.setdefault(stem, {})[role] = (key, value)
    for stem, roles in pairs.items():
        if "down" not in roles or "up" not in roles:
            ref.unknown_keys += [k for k, _ in roles.values()]
            continue
        axis = "input" if fmt.magnitude_shape == "input" else "row"
        _add_terms(ref, table[stem], roles, permute=fmt.native_fused, axis=axis)
    return ref


def _add_magnitude(
    ref: Reference, group: Group, key: str, value: torch.Tensor, permute: bool, axis: str = "row"
) -> None:
    mag = value.detach().to("cpu", torch.float64).flatten()
    if axis == "input":  # one magnitude per input column: shared by every row of the layer
        if group.fused:
            raise ValueError(f"{key}: a per-input-column magnitude of a fused layer")
        ref.magnitudes[(group.component, group.parts[0])] = mag
        ref.magnitude_keys[(group.component, group.parts[0])] = key
        ref.magnitude_axis[(group.component, group.parts[0])] = "input"
        return
    if permute and group.permute == "swap_halves":
        half = mag.shape[0] // 2
        mag = torch.cat([mag[half:], mag[:half]])
    for part, rows in group.row_slices().items():
        ref.magnitudes[(group.component, part)] = mag[rows]
        ref.magnitude_keys[(group.component, part)] = key


def _add_terms(
    ref: Reference,
    group: Group,
    roles: Mapping[str, tuple[str, torch.Tensor]],
    permute: bool,
    axis: str = "row",
) -> None:
    down_key, down = roles["down"]
    up_key, up = roles["up"]
    rank = down.shape[0]
    alpha = float(roles["alpha"][1].double().item()) if "alpha" in roles else float(rank)
    scale = alpha / rank
    if "magnitude" in roles:
        _add_magnitude(ref, group, *roles["magnitude"], permute=permute, axis=axis)
    keys = tuple(k for k, _ in roles.values())
    bias64 = roles["bias"][1].detach().to("cpu", torch.float64) if "bias" in roles else None
    if bias64 is not None and permute and group.permute == "swap_halves":
        half = bias64.shape[0] // 2
        bias64 = torch.cat([bias64[half:], bias64[:half]])
    up64 = up.detach().to("cpu", torch.float64)
    if permute and group.permute == "swap_halves":
        half = up64.shape[0] // 2
        up64 = torch.cat([up64[half:], up64[:half]])
    down64 = down.detach().to("cpu", torch.float64)
    for part, rows in group.row_slices().items():
        ref.terms.setdefault((group.component, part), []).append(
            Term(
                down64,
                up64[rows],
                scale,
                keys,
                up.dtype,
                None if bias64 is None else bias64[rows],
            )
        )


# --------------------------------------------------------------------------- observing
@torch.no_grad()
def effective_weight(module: torch.nn.Module) -> torch.Tensor:
    """The weight a Linear / 1x1-Conv-like module *acts* with, found by probing it with the
    identity: ``W_eff^T = f(I) - f(0)``. Independent of how (or whether) a LoRA wraps it.
    One forward of ``[I; 0]`` rather than two: a wrapped layer's forward is Python-bound
    (peft), and this probe runs on every layer of every judged pipeline."""
    base = getattr(module, "base_layer", module)
    weight = base.weight
    if base is module and type(module) in (torch.nn.Linear, torch.nn.Conv2d):
        return weight.detach().to("cpu", torch.float64)  # a plain layer computes with .weight
    conv = isinstance(base, torch.nn.Conv2d)
    n = base.in_channels if conv else weight.shape[1]
    probe = torch.cat([torch.eye(n), torch.zeros(1, n)]).to(weight.device, weight.dtype)
    was_training = module.training
    module.eval()
    try:
        out = module(probe.reshape(n + 1, n, 1, 1) if conv else probe)
    finally:
        module.train(was_training)
    if conv:
        out = out[:, :, 0, 0]
    acted = (out[:n] - out[n:]).T.to("cpu", torch.float64)
    return acted.reshape(weight.shape[0], n, 1, 1) if conv else acted


@torch.no_grad()
def effective_bias(module: torch.nn.Module) -> torch.Tensor:
    """The bias a Linear-like module *acts* with: its output at zero input, ``f(0)``."""
    base = getattr(module, "base_layer", module)
    weight = base.weight
    if base is module and type(module) is torch.nn.Linear:
        b = module.bias
        return (torch.zeros(weight.shape[0]) if b is None else b.detach()).to("cpu", torch.float64)
    was_training = module.training
    module.eval()
    try:
        if isinstance(base, torch.nn.Conv2d):
            zero = torch.zeros(1, base.in_channels, 1, 1, dtype=weight.dtype, device=weight.device)
            return module(zero)[0, :, 0, 0].to("cpu", torch.float64)
        zero = torch.zeros(1, weight.shape[1], dtype=weight.dtype, device=weight.device)
        return module(zero)[0].to("cpu", torch.float64)
    finally:
        module.train(was_training)


def compare_bias(
    observed: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
    ref: Reference,
    component: str,
    model_dtype: torch.dtype = torch.float32,
) -> Comparison:
    """Biases of one component: modules with an up bias in the file must act with base +
    ``s * b``; the others keep their bias (a LoRA without bias keys adds nothing there)."""
    result = Comparison()
    for name, obs in observed.items():
        b = base[name]
        delta = ref.bias_delta(component, name)
        exp = torch.zeros_like(b) if delta is None else delta
        target = b + exp
        file_dtype = ref.file_dtype(component, name) if delta is not None else model_dtype
        tol = allowance(exp, b, file_dtype, model_dtype)
        err = float((obs - target).abs().max()) if obs.numel() else 0.0
        moved = float((obs - b).abs().max()) if obs.numel() else 0.0
        if delta is None:
            if moved > tol:
                result.unexpected[name] = moved
            continue
        result.worst = max(result.worst, err)
        if err <= tol:
            result.matched.append(name)
        elif moved <= tol and float(exp.abs().max()) > tol:
            result.dropped.append(name)
        else:
            result.wrong[name] = err
    return result


def base_weight(module: torch.nn.Module) -> torch.Tensor:
    """The stored weight of a (possibly LoRA-wrapped) layer, as float64 on CPU."""
    base = getattr(module, "base_layer", module)
    return base.weight.detach().to("cpu", torch.float64)


def probe_targets(component: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every Linear / 1x1 Conv2d of a pristine component, by module path."""
    out = {}
    for name, sub in component.named_modules():
        if type(sub) is torch.nn.Linear:
            out[name] = sub
        elif type(sub) is torch.nn.Conv2d and tuple(sub.kernel_size) == (1, 1) and sub.groups == 1:
            out[name] = sub
    return out


@dataclass
class Comparison:
    """How observed weights compare with base + reference delta."""

    matched: list[str] = field(default_factory=list)
    wrong: dict[str, float] = field(default_factory=dict)  # module -> max abs error
    dropped: list[str] = field(default_factory=list)  # expected a change, saw none
    unexpected: dict[str, float] = field(default_factory=dict)  # changed, no reference term
    worst: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.wrong or self.dropped or self.unexpected)

    def summary(self, limit: int = 5) -> str:
        parts = []
        if self.dropped:
            parts.append(f"no effect: {', '.join(self.dropped[:limit])}")
        if self.wrong:
            worst = sorted(self.wrong.items(), key=lambda kv: -kv[1])[:limit]
            parts.append("wrong delta: " + ", ".join(f"{k} (err {v:.3g})" for k, v in worst))
        if self.unexpected:
            parts.append("changed without a key: " + ", ".join(list(self.unexpected)[:limit]))
        return "; ".join(parts) or f"all {len(self.matched)} modules match"


def allowance(
    expected: torch.Tensor, base: torch.Tensor, file_dtype: torch.dtype, model_dtype: torch.dtype
) -> float:
    """Absolute error allowed for one module: rounding of the file tensors (the library may
    rescale them in the file dtype) plus rounding of the model's own arithmetic."""
    exp_mag = float(expected.abs().max()) if expected.numel() else 0.0
    base_mag = float(base.abs().max()) if base.numel() else 0.0
    model_tol = REL_TOL.get(model_dtype, 2e-5)
    file_tol = max(REL_TOL.get(file_dtype, 2e-5), model_tol)
    return 1e-6 + file_tol * exp_mag + model_tol * (base_mag + exp_mag)


def compare(
    observed: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
    ref: Reference,
    component: str,
    model_dtype: torch.dtype = torch.float32,
    weight: float = 1.0,
) -> Comparison:
    """Check every probed module of one component: targeted ones must equal base + weight *
    delta, the others must be unchanged."""
    result = Comparison()
    for name, obs in observed.items():
        b = base[name]
        key = (component, name)
        if key in ref.terms:
            target = ref.expected_weight(component, name, b, weight)
            if target.shape != b.shape:
                b = widen(b, target.shape)
            if obs.shape != target.shape:  # e.g. an input layer that was never widened
                result.wrong[name] = float("inf")
                continue
            exp = target - b
            tol = allowance(exp, b, ref.file_dtype(component, name), model_dtype)
            err = float((obs - target).abs().max())
            result.worst = max(result.worst, err)
            moved = float((obs - b).abs().max())
            if err <= tol:
                result.matched.append(name)
            elif moved <= tol and float(exp.abs().max()) > tol:
                result.dropped.append(name)
            else:
                result.wrong[name] = err
        else:
            tol = allowance(torch.zeros(()), b, model_dtype, model_dtype)
            moved = float((obs - b).abs().max())
            if moved > tol:
                result.unexpected[name] = moved
    return result


def expected_modules(ref: Reference, component: str) -> list[str]:
    return sorted(m for c, m in ref.terms if c == component)


def keys_of(ref: Reference, modules: Iterable[tuple[str, str]]) -> list[str]:
    out: set[str] = set()
    for component, module in modules:
        out.update(ref.keys_for(component, module))
    return sorted(out)


def combine(weighted: Iterable[tuple[Reference, float]]) -> Reference:
    """The expected effect of several adapters active at once with the given weights."""
    out = Reference(
        format="+".join(ref.format for ref, _ in weighted) if not isinstance(weighted, map) else ""
    )
    for ref, weight in weighted:
        for key, terms in ref.terms.items():
            for t in terms:
                out.terms.setdefault(key, []).append(
                    Term(t.down, t.up, t.scale * weight, t.keys, t.dtype, t.bias)
                )
        out.unknown_keys += ref.unknown_keys
        out.magnitudes.update(ref.magnitudes)
        out.magnitude_keys.update(ref.magnitude_keys)
        out.magnitude_axis.update(ref.magnitude_axis)
        out.replaced.update(ref.replaced)
    return out
