"""Bad LoRA state dicts for the zoo's SD1.5-style UNet, and what a loader owes for each.

:data:`LORA_CASES` holds the dicts (shape, dtype, rank, NaN, non-tensors, nesting,
colliding names); :func:`lora_expectation` is their reference, computed from the dict
alone (independent of diffusers): every key either has its reference effect or is
*reported* (a clear error, or a warning that names it - :func:`names_in`), and a load that
has no effect at all must say so. The policy these references encode is written down once,
in :mod:`harness.inputs.malformed`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

# -- LoRA: naming schemes of the SD1.5-style UNet ---------------------------------------------------
#: How one UNet Linear module ``m`` is written by each naming scheme (down, up, alpha).
#: ``peft``: diffusers >= 0.21 / PEFT; ``old``: attention-processor era diffusers;
#: ``kohya``: sd-scripts (dots become underscores). A None alpha: the scheme has none.
LORA_SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "peft": ("unet.{m}.lora_A.weight", "unet.{m}.lora_B.weight", None),
    "old": ("unet.{m}.lora.down.weight", "unet.{m}.lora.up.weight", None),
    "kohya": (
        "lora_unet_{u}.lora_down.weight",
        "lora_unet_{u}.lora_up.weight",
        "lora_unet_{u}.alpha",
    ),
}

#: UNet Linear modules a LoRA targets in the robustness suite (attention projections).
LORA_TARGET_RE = re.compile(r"attn[12]\.to_(q|k|v|out\.0)$")


@dataclass(frozen=True)
class LinearTarget:
    module: str
    in_features: int
    out_features: int


def key_names(scheme: str, module: str) -> tuple[str, str, str | None]:
    down, up, alpha = LORA_SCHEMES[scheme]
    u = module.replace(".", "_")
    return (
        down.format(m=module, u=u),
        up.format(m=module, u=u),
        alpha.format(m=module, u=u) if alpha else None,
    )


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def lora_pair(target: LinearTarget, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (down, up) of a LoRA for ``target``; small values so deltas stay O(0.1)."""
    g = _generator(seed)
    down = torch.randn(rank, target.in_features, generator=g) * 0.3
    up = torch.randn(target.out_features, rank, generator=g) * 0.3
    return down, up


def build_lora(
    targets: Sequence[LinearTarget], rank: int = 2, seed: int = 0, scheme: str = "peft"
) -> dict[str, torch.Tensor]:
    """A valid LoRA for ``targets`` (scale 1: no alpha, or alpha == rank for kohya)."""
    out: dict[str, torch.Tensor] = {}
    for i, target in enumerate(targets):
        down, up = lora_pair(target, rank, seed * 1000 + i)
        d, u, a = key_names(scheme, target.module)
        out[d], out[u] = down, up
        if a:
            out[a] = torch.tensor(float(rank))
    return out


@dataclass
class Acceptable:
    """One acceptable end state of a module: ``delta`` added to its weight (None: the
    weight unchanged), and whether the library must also have *said* something naming
    one of ``report`` (an error, or a warning)."""

    delta: torch.Tensor | None
    report: tuple[str, ...] = ()
    label: str = ""  # which reading this is (a naming scheme, "unchanged") for records


@dataclass
class Expectation:
    """What the oracle requires after a load that returned without error."""

    modules: dict[str, list[Acceptable]] = field(default_factory=dict)
    #: Keys that affect no module: each must be named by a warning (or an error).
    stray: list[str] = field(default_factory=list)
    #: Nothing in the input can have an effect: the load must say so (names to look for).
    nothing: tuple[str, ...] = ()
    #: Strings a clear *error* should mention (offending keys, modules).
    names: list[str] = field(default_factory=list)
    #: False when some content is unusable: then CLEAR_ERROR is an acceptable outcome.
    fully_valid: bool = True


#: A load with no effect must say so; any of these words in a warning counts.
NOTHING_LOADED_WORDS = ("LoRA", "lora", "empty", "no keys", "No keys", "state dict", "state_dict")


def _as_float(value: Any) -> torch.Tensor | None:
    """The float32 tensor a value converts to (complex: its real part), None otherwise."""
    if not isinstance(value, torch.Tensor):
        return None
    if value.is_complex():
        value = value.real
    return value.detach().to("cpu").float()


#: Words a warning about dropping imaginary parts uses (torch: "Casting complex values to
#: real discards the imaginary part").
COMPLEX_WORDS = ("complex", "imaginary")


def _questionable(*values: Any) -> tuple[str, ...] | None:
    """Why a pair is loadable only by a conversion a loader may also refuse: integer /
    bool tensors (exact cast), a conv-shaped [r, n, 1, 1] matrix for a Linear (exact
    squeeze), complex tensors (real part; must be reported). None: nothing questionable;
    an empty tuple: questionable, no report needed when converted."""
    reasons: tuple[str, ...] | None = None
    for v in values:
        if not isinstance(v, torch.Tensor):
            continue
        if v.is_complex():
            return COMPLEX_WORDS
        if not v.is_floating_point() or v.ndim == 4:
            reasons = ()
    return reasons


def _pair_delta(down: Any, up: Any, target: LinearTarget, alpha: Any = None) -> torch.Tensor | None:
    """``scale * up @ down`` when the pair fits ``target``; None when it cannot load."""
    d, u = _as_float(down), _as_float(up)
    if d is None or u is None:
        return None
    if d.ndim == 4 and d.shape[2:] == (1, 1):
        d = d[:, :, 0, 0]
    if u.ndim == 4 and u.shape[2:] == (1, 1):
        u = u[:, :, 0, 0]
    if d.ndim != 2 or u.ndim != 2:
        return None
    rank = d.shape[0]
    if rank == 0 or u.shape[1] != rank:
        return None
    if d.shape[1] != target.in_features or u.shape[0] != target.out_features:
        return None
    scale = 1.0
    if alpha is not None:
        a = _as_float(alpha)
        if a is None or a.numel() != 1:
            return None
        scale = float(a.reshape(())) / rank
    return scale * (u @ d)


def _module_of(key: str, targets: Mapping[str, LinearTarget]) -> tuple[str, str, str] | None:
    """(scheme, module, role) for a key of a known scheme and module; role in down/up/alpha."""
    by_kohya = {t.replace(".", "_"): t for t in targets}
    for scheme, patterns in LORA_SCHEMES.items():
        for role, pattern in zip(("down", "up", "alpha"), patterns, strict=True):
            if pattern is None:
                continue
            rx = re.escape(pattern).replace(r"\{m\}", "(?P<m>.+)").replace(r"\{u\}", "(?P<u>.+)")
            match = re.fullmatch(rx, key)
            if not match:
                continue
            groups = match.groupdict()
            module = groups.get("m") or by_kohya.get(groups.get("u") or "")
            if module in targets:
                return scheme, module, role
    return None


def lora_expectation(state_dict: Mapping[str, Any], targets: Sequence[LinearTarget]) -> Expectation:
    """The reference for a LoRA state dict over ``targets`` (independent of diffusers).

    A module gets ``scale * up @ down`` from a complete, well-shaped pair of one scheme;
    two schemes writing one module are a collision (either value, and it must be
    reported); an incomplete or ill-shaped pair leaves the module unchanged and must be
    reported; keys of no known module are stray and must be reported.
    """
    by_name = {t.module: t for t in targets}
    exp = Expectation()
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            exp.stray.append(repr(key))
            continue
        where = _module_of(key, by_name)
        if where is None:
            exp.stray.append(key)
            continue
        scheme, module, role = where
        found.setdefault(module, {}).setdefault(scheme, {})[role] = (key, value)
    exp.names = list(exp.stray)
    for module, schemes in found.items():
        candidates: list[Acceptable] = []
        keys = [k for roles in schemes.values() for k, _ in roles.values()]
        report = (module, module.replace(".", "_"), *keys)
        questionable = False
        for scheme, roles in schemes.items():
            if "down" not in roles or "up" not in roles:
                continue
            alpha = roles.get("alpha", (None, None))[1]
            delta = _pair_delta(roles["down"][1], roles["up"][1], by_name[module], alpha)
            if delta is None:
                continue
            why = _questionable(roles["down"][1], roles["up"][1])
            questionable = questionable or why is not None
            candidates.append(Acceptable(delta, why or (), label=scheme))
        if len(candidates) == 1 and len(schemes) == 1 and not questionable:
            exp.modules[module] = candidates
            continue
        # a collision, a conversion a loader may refuse, or nothing usable: either a
        # clear error, or a load that applies a candidate (reported where marked) or
        # leaves the module alone and names it
        exp.fully_valid = False
        exp.names.extend([module, *keys])
        if len(schemes) > 1:  # colliding names: whichever value wins, it must be said
            candidates = [Acceptable(c.delta, report, c.label) for c in candidates]
        exp.modules[module] = [*candidates, Acceptable(None, report, "unchanged")]
    if exp.stray:
        exp.fully_valid = False
    if not any(c.delta is not None for accs in exp.modules.values() for c in accs):
        exp.nothing = NOTHING_LOADED_WORDS
        exp.names.extend(NOTHING_LOADED_WORDS)
        if not state_dict:
            exp.fully_valid = False
    return exp


# -- LoRA state-dict cases ----------------------------------------------------------------------------
LoraBuilder = Callable[[Sequence[LinearTarget]], dict[str, Any]]


@dataclass(frozen=True)
class DictCase:
    """A state dict to load. ``file_ok``: representable as safetensors (tensors only, flat).

    :data:`LORA_FILE_CASES` (a few representative ids) also go through the file loader:
    the file and dict paths share their conversion code, so the whole table twice would
    double the time for no new evidence."""

    id: str
    build: LoraBuilder
    note: str
    file_ok: bool = True


def _base(targets: Sequence[LinearTarget]) -> dict[str, Any]:
    return build_lora(targets)


def _replace_first(role: str, make: Callable[[torch.Tensor], Any]) -> LoraBuilder:
    def build(targets: Sequence[LinearTarget]) -> dict[str, Any]:
        sd = _base(targets)
        down, up, _ = key_names("peft", targets[0].module)
        key = down if role == "down" else up
        sd[key] = make(sd[key])
        return sd

    return build


def _poison(value: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def make(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t.view(-1)[0] = value
        return t

    return make


def _nested_top(targets: Sequence[LinearTarget]) -> dict[str, Any]:
    sd = _base(targets)
    return {"unet": {k.removeprefix("unet."): v for k, v in sd.items()}}


def _nested_module(targets: Sequence[LinearTarget]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in _base(targets).items():
        module, _, leaf = key.rpartition(".lora_")
        out.setdefault(module, {})["lora_" + leaf] = value
    return out


def _big_rank(targets: Sequence[LinearTarget]) -> dict[str, Any]:
    rank = 2 * max(max(t.in_features, t.out_features) for t in targets)
    return build_lora(targets, rank=rank)


def _collide(first: str, second: str) -> LoraBuilder:
    """The first module written by two schemes with *different* values."""

    def build(targets: Sequence[LinearTarget]) -> dict[str, Any]:
        sd = build_lora(targets, scheme=first)
        other = build_lora(targets[:1], seed=7, scheme=second)
        sd.update(other)
        return sd

    return build


def _stray(targets: Sequence[LinearTarget]) -> dict[str, Any]:
    sd = _base(targets)
    sd["unet.not_a_module.lora_A.weight"] = torch.zeros(2, 16)
    sd["unet.not_a_module.lora_B.weight"] = torch.zeros(16, 2)
    return sd


def _foreign_prefix(targets: Sequence[LinearTarget]) -> dict[str, Any]:
    """One module's pair under a component the pipeline has no LoRA support for."""
    sd = _base(targets)
    down, up, _ = key_names("peft", targets[0].module)
    sd["vae." + down.removeprefix("unet.")] = sd.pop(down)
    sd["vae." + up.removeprefix("unet.")] = sd.pop(up)
    return sd


def _half_pair(role: str) -> LoraBuilder:
    def build(targets: Sequence[LinearTarget]) -> dict[str, Any]:
        sd = _base(targets)
        down, up, _ = key_names("peft", targets[0].module)
        del sd[down if role == "down" else up]
        return sd

    return build


def _rank_mismatch(targets: Sequence[LinearTarget]) -> dict[str, Any]:
    sd = _base(targets)
    t = targets[0]
    down, _, _ = key_names("peft", t.module)
    sd[down] = torch.randn(4, t.in_features, generator=_generator(3))
    return sd


def _zero_rank(targets: Sequence[LinearTarget]) -> dict[str, Any]:
    sd = _base(targets)
    t = targets[0]
    down, up, _ = key_names("peft", t.module)
    sd[down], sd[up] = torch.zeros(0, t.in_features), torch.zeros(t.out_features, 0)
    return sd


def _all_dtype(dtype: torch.dtype) -> LoraBuilder:
    def build(targets: Sequence[LinearTarget]) -> dict[str, Any]:
        sd = _base(targets)
        if dtype.is_floating_point or dtype.is_complex:
            return {k: v.to(dtype) for k, v in sd.items()}
        # integers / bool: exact small values so the conversion is lossless
        return {k: (v * 4).round().clamp(-3, 3).to(dtype) for k, v in sd.items()}

    return build


def _kohya_alpha(make: Callable[[torch.Tensor], Any]) -> LoraBuilder:
    def build(targets: Sequence[LinearTarget]) -> dict[str, Any]:
        sd = build_lora(targets, scheme="kohya")
        _, _, alpha = key_names("kohya", targets[0].module)
        assert alpha is not None
        sd[alpha] = make(sd[alpha])
        return sd

    return build


LORA_CASES: tuple[DictCase, ...] = (
    DictCase("control", _base, "valid PEFT-named LoRA (positive control)"),
    DictCase("control-kohya", lambda t: build_lora(t, scheme="kohya"), "valid kohya LoRA"),
    DictCase("control-old", lambda t: build_lora(t, scheme="old"), "valid old-diffusers LoRA"),
    DictCase("empty", lambda t: {}, "an empty dict: nothing to load must be said"),
    DictCase("nan", _replace_first("up", _poison(float("nan"))), "one NaN in an up matrix"),
    DictCase("inf", _replace_first("up", _poison(float("inf"))), "one +Inf in an up matrix"),
    DictCase(
        "wrong-shape-down",
        _replace_first("down", lambda t: torch.zeros(t.shape[0], t.shape[1] + 3)),
        "down matrix 3 columns wider than the layer's input",
    ),
    DictCase(
        "wrong-shape-up",
        _replace_first("up", lambda t: torch.zeros(t.shape[0] + 3, t.shape[1])),
        "up matrix 3 rows taller than the layer's output",
    ),
    DictCase("rank-mismatch", _rank_mismatch, "down has rank 4, up has rank 2"),
    DictCase("zero-rank", _zero_rank, "a rank-0 pair"),
    DictCase("rank-1d", _replace_first("down", lambda t: t.reshape(-1)), "down flattened to 1-D"),
    DictCase("rank-3d", _replace_first("down", lambda t: t[:, :, None]), "down as [r, in, 1]"),
    DictCase(
        "rank-4d-conv-style",
        _replace_first("down", lambda t: t[:, :, None, None]),
        "down as [r, in, 1, 1] (conv layout for a Linear; loadable by squeezing)",
    ),
    DictCase("rank-0d", _replace_first("down", lambda t: t.sum()), "down is a scalar"),
    DictCase("rank-larger-than-layer", _big_rank, "rank twice the layer width (loadable)"),
    DictCase("dtype-float16", _all_dtype(torch.float16), "every tensor float16"),
    DictCase("dtype-bfloat16", _all_dtype(torch.bfloat16), "every tensor bfloat16"),
    DictCase("dtype-float64", _all_dtype(torch.float64), "every tensor float64"),
    DictCase("dtype-int32", _all_dtype(torch.int32), "small integers in int32"),
    DictCase("dtype-bool", _all_dtype(torch.bool), "bool tensors"),
    DictCase(
        "dtype-complex64",
        _all_dtype(torch.complex64),
        "complex tensors (imaginary part would be lost)",
        file_ok=False,
    ),
    DictCase(
        "non-tensor-list",
        _replace_first("down", lambda t: t.tolist()),
        "nested Python lists instead of a tensor",
        file_ok=False,
    ),
    DictCase(
        "non-tensor-numpy",
        _replace_first("down", lambda t: t.numpy()),
        "a numpy array instead of a tensor",
        file_ok=False,
    ),
    DictCase(
        "non-tensor-string",
        _replace_first("down", lambda t: "0.1"),
        "a string value",
        file_ok=False,
    ),
    DictCase(
        "non-tensor-none", _replace_first("down", lambda t: None), "a None value", file_ok=False
    ),
    DictCase(
        "nested-component",
        _nested_top,
        "{'unet': {flat keys}} where flat keys belong",
        file_ok=False,
    ),
    DictCase(
        "nested-module",
        _nested_module,
        "{'unet.<module>': {'lora_A.weight': ...}} per module",
        file_ok=False,
    ),
    DictCase(
        "collision-peft-old",
        _collide("peft", "old"),
        "one module as both unet.x.lora_A.weight and unet.x.lora.down.weight",
    ),
    DictCase(
        "collision-old-kohya",
        _collide("old", "kohya"),
        "one module as both unet.x.lora.down.weight and lora_unet_x.lora_down.weight",
    ),
    DictCase(
        "collision-peft-kohya",
        _collide("peft", "kohya"),
        "one module as both unet.x.lora_A.weight and lora_unet_x.lora_down.weight",
    ),
    DictCase("stray-module", _stray, "a pair for a module the UNet does not have"),
    DictCase("foreign-prefix", _foreign_prefix, "one pair under 'vae.' (no LoRA support)"),
    DictCase("half-pair-no-up", _half_pair("up"), "one module's up matrix missing"),
    DictCase("half-pair-no-down", _half_pair("down"), "one module's down matrix missing"),
    DictCase(
        "kohya-alpha-mixed",
        _kohya_alpha(lambda a: a / 2),
        "one module's alpha half the others' (valid: that module's scale is 0.5)",
    ),
    DictCase(
        "kohya-alpha-nan",
        _kohya_alpha(lambda a: torch.tensor(float("nan"))),
        "alpha NaN (scale NaN: loadable, poisons outputs)",
    ),
    DictCase(
        "kohya-alpha-vector",
        _kohya_alpha(lambda a: a.repeat(3)),
        "alpha is a 3-vector instead of a scalar",
    ),
)

LORA_CASE_IDS = tuple(c.id for c in LORA_CASES)
LORA_FILE_CASES = (
    "control",
    "control-kohya",
    "dtype-float16",
    "inf",
    "wrong-shape-down",
    "collision-old-kohya",
    "half-pair-no-up",
    "kohya-alpha-mixed",
)


def lora_case(case_id: str) -> DictCase:
    for case in LORA_CASES:
        if case.id == case_id:
            return case
    raise KeyError(case_id)


# -- reports: does a library message name a key? ---------------------------------------------------
def names_in(messages: Iterable[str], names: Iterable[str]) -> list[str]:
    """The ``names`` some message mentions (a key, a module path, or its underscore form)."""
    text = "\n".join(messages)
    hits = []
    for name in names:
        if not name:
            continue
        variants = {name, name.removeprefix("unet."), name.replace(".", "_")}
        if any(v and v in text for v in variants):
            hits.append(name)
    return hits
