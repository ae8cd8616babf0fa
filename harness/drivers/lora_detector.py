"""Read what a pipeline's ``lora_state_dict`` classmethod hands to the model, version-agnostic.

``<Pipeline>.lora_state_dict(file)`` is where diffusers detects a format and converts it
(the "detector view"). Its output has changed spelling over the years:

* PEFT: ``unet.<module>.lora_A.weight`` / ``lora_B``;
* the old diffusers layout: ``unet.<...>.attn1.processor.to_q_lora.down.weight``,
  ``<module>.lora.down.weight``, text encoders' ``q_proj.lora_linear_layer.down.weight``;
* network alphas in a second dict, keyed ``<component>.<module>.alpha`` or, for kohya SD
  files, the converted down-key plus ``.alpha``.

:func:`read_converted` maps all of them back to (component, module, role) by the naming
facts above - never by calling diffusers' converters - so the result can be compared with
the reference (:mod:`harness.oracles.lora`) module by module. A key it cannot place is
our gap, raised as a plain error (HARNESS_ERROR), never a library finding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")

#: (suffix, role), longest first.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
    ("_lora.down.weight", "down"),
    ("_lora.up.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_A.bias", "down_bias"),
    (".lora_B.bias", "up_bias"),
    (".lora_magnitude_vector.weight", "dora"),  # 0.28-0.30 SD kohya DoRA conversion
    (".lora_magnitude_vector", "dora"),
)
#: Old attention-processor names -> module suffixes (UNet / text encoder).
_PROCESSOR_NAMES = {
    "to_q": "to_q",
    "to_k": "to_k",
    "to_v": "to_v",
    "to_out": "to_out.0",
}
_TE_PROCESSOR_NAMES = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}


#: A full RMSNorm scale in diffusers naming (Flux Control LoRAs carry them).
NORM_KEY = re.compile(r"(?:^|\.)attn\.norm_(?:added_)?[qk]\.weight$")


class UnreadableKey(RuntimeError):
    """A converted key the harness cannot place (a gap in this module, not a finding)."""


def split_key(key: str) -> tuple[str | None, str, str]:
    """``(component, module, role)`` of one converted key (component None: no prefix)."""
    component = None
    key = key.removeprefix("base_model.model.")  # passed through unconverted (peft layout)
    head, _, rest = key.partition(".")
    if head in COMPONENTS:
        component, key = head, rest
    if key.endswith(".alpha"):
        stem = key[: -len(".alpha")]
        for suffix, _ in _SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)] + ("_lora" if suffix.startswith("_lora") else "")
                break
        return component, _module(stem, component), "alpha"
    for suffix, role in _SUFFIXES:
        if key.endswith(suffix):
            stem = key[: -len(suffix)]
            if suffix.startswith("_lora"):
                stem += "_lora"
            return component, _module(stem, component), role
    raise UnreadableKey(f"cannot read converted LoRA key {key!r}")


def _module(stem: str, component: str | None) -> str:
    """Undo the old processor spelling: ``attn1.processor.to_q_lora`` -> ``attn1.to_q``."""
    stem = stem.replace(".processor.", ".")
    match = re.search(r"(?:^|\.)(to_q|to_k|to_v|to_out)_lora$", stem)
    if match:
        names = (
            _TE_PROCESSOR_NAMES
            if (component or "").startswith("text_encoder")
            else _PROCESSOR_NAMES
        )
        stem = stem[: match.start(1)] + names[match.group(1)]
    return stem


@dataclass
class Converted:
    """(component, module) -> down / up / alpha as the loader will apply them."""

    pairs: dict[tuple[str | None, str], dict[str, torch.Tensor]] = field(default_factory=dict)
    alphas: dict[tuple[str | None, str], float] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)  # bias keys: noted, not compared
    unconverted: list[str] = field(default_factory=list)  # input keys passed through as-is
    magnitudes: dict[tuple[str | None, str], torch.Tensor] = field(default_factory=dict)
    norms: dict[tuple[str | None, str], torch.Tensor] = field(default_factory=dict)

    def modules(self) -> list[tuple[str | None, str]]:
        return sorted(self.pairs, key=lambda k: (k[0] or "", k[1]))


def read_converted(
    state_dict: Mapping[str, Any],
    alphas: Mapping[str, Any] | None = None,
    inputs: set[str] | frozenset[str] = frozenset(),
) -> Converted:
    """``inputs``: the file's own keys. One the library handed back unchanged and that we
    cannot read as a diffusers key was not converted at all: it reaches no module."""
    out = Converted()
    for key, value in state_dict.items():
        if NORM_KEY.search(key):
            head, _, rest = key.partition(".")
            component, path = (head, rest) if head in COMPONENTS else (None, key)
            out.norms[(component, path)] = value
            continue
        try:
            component, module, role = split_key(key)
        except UnreadableKey:
            if "lora_magnitude_vector" in key:  # a mangled DoRA name: reaches no module
                out.other.append(key)
                continue
            if key in inputs:
                out.unconverted.append(key)
                continue
            raise
        if role in ("down", "up"):
            out.pairs.setdefault((component, module), {})[role] = value
        elif role == "alpha":
            out.alphas[(component, module)] = float(torch.as_tensor(value).double().item())
        elif role == "dora":
            out.magnitudes[(component, module)] = value
        else:
            out.other.append(key)
    for key, value in (alphas or {}).items():
        component, module, _ = split_key(key if key.endswith(".alpha") else key + ".alpha")
        out.alphas[(component, module)] = float(torch.as_tensor(value).double().item())
    return out


def unpack(result: Any) -> tuple[Mapping[str, Any], Mapping[str, Any] | None]:
    """``lora_state_dict`` returns a dict, ``(dict, alphas)`` or ``(dict, alphas, metadata)``."""
    if isinstance(result, tuple):
        return result[0], result[1] if len(result) > 1 else None
    return result, None


def apply_converted(
    pair: Mapping[str, torch.Tensor], alpha: float | None, x: torch.Tensor
) -> torch.Tensor:
    """``scale * B @ (A @ x)`` of a converted pair (scale = alpha / rank, 1 without alpha)."""
    down = pair["down"].detach().to("cpu", torch.float64).flatten(1)
    up = pair["up"].detach().to("cpu", torch.float64).flatten(1)
    scale = 1.0 if alpha is None else alpha / down.shape[0]
    return scale * (up @ (down @ x))


def route(
    converted: Converted, denoiser: str, passthrough: bool
) -> dict[tuple[str, str], tuple[str | None, str]]:
    """(component, module) each converted pair reaches. A key without a component prefix
    reaches nothing (the loaders filter by prefix), unless the file itself had none (the
    ``peft_*`` pass-through layouts): then whether it lands is the model-level check's
    business, and here it is matched to the denoiser."""
    out: dict[tuple[str, str], tuple[str | None, str]] = {}
    for component, module in converted.pairs:
        if component is None:
            if passthrough:
                out[(denoiser, module)] = (component, module)
        else:
            out[(component, module)] = (component, module)
    return out


@dataclass
class ViewResult:
    """Detector view vs reference: what is missing, extra or numerically wrong."""

    expected: int = 0
    converted: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)
    wrong: dict[str, float] = field(default_factory=dict)
    #: DoRA magnitudes / full norm weights of the file that never reach the model.
    dropped_extra: list[str] = field(default_factory=list)


def compare_view(
    ref: Any, converted: Converted, denoiser: str, passthrough: bool, probes: int = 4
) -> ViewResult:
    """Compare converted pairs with the reference without forming any full matrix: each
    module's delta is applied to ``probes`` random vectors (a Freivalds check)."""
    routed = route(converted, denoiser, passthrough)
    expected, got = set(ref.terms), set(routed)
    result = ViewResult(len(expected), len(got))
    result.missing = sorted(expected - got, key=str)
    result.extra = sorted(got - expected, key=str)
    gen = torch.Generator().manual_seed(0)
    for key in sorted(expected & got, key=str):
        terms = ref.terms[key]
        x = torch.randn(
            terms[0].down.flatten(1).shape[1], probes, generator=gen, dtype=torch.float64
        )
        want = sum(t.apply(x) for t in terms)
        source = routed[key]
        try:
            have = apply_converted(converted.pairs[source], converted.alphas.get(source), x)
        except (RuntimeError, KeyError):
            result.wrong[f"{key[0]}.{key[1]}"] = float("inf")  # shape mismatch / half a pair
            continue
        if have.shape != want.shape:
            result.wrong[f"{key[0]}.{key[1]}"] = float("inf")
            continue
        err = float((have - want).abs().max())
        if err > 1e-4 * float(want.abs().max()) + 1e-7:
            result.wrong[f"{key[0]}.{key[1]}"] = err
    _compare_extras(ref, converted, routed, result)
    return result


def _close(have: Any, want: torch.Tensor) -> bool:
    have = torch.as_tensor(have).detach().to("cpu", torch.float64).flatten()
    want = want.flatten()
    if have.shape != want.shape:
        return False
    return float((have - want).abs().max()) <= 1e-6 * float(want.abs().max()) + 1e-9


def _compare_extras(
    ref: Any,
    converted: Converted,
    routed: Mapping[tuple[str, str], tuple[str | None, str]],
    result: ViewResult,
) -> None:
    """DoRA magnitudes and full norm weights: present under the right module, same values."""
    for key, mag in getattr(ref, "magnitudes", {}).items():
        source = routed.get(key, key)
        have = converted.magnitudes.get(source)
        if have is None:
            result.dropped_extra.append(ref.magnitude_keys[key])
        elif not _close(have, mag):
            result.wrong[f"{key[0]}.{key[1]}.magnitude"] = float("inf")
    for (component, path), (value, file_key) in getattr(ref, "replaced", {}).items():
        have = converted.norms.get((component, path))
        if have is None:
            result.dropped_extra.append(file_key)
        elif not _close(have, value):
            result.wrong[f"{component}.{path}"] = float("inf")
