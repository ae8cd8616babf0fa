"""Drive LoRA loaders of a pipeline and observe the result, the same way in every version.

The LoRA suites talk to diffusers only through this module, so each per-version API
difference lives in one place (``API facts`` below), and every observation goes through the
independent reference (:mod:`harness.oracles.lora`):

* :func:`judge_load` - turn "what the model now computes" into an outcome: OK, or
  DROPPED_KEYS / WRONG_RESULT with the offending keys named;
* version facts (``LORA_LOW_CPU_MEM_USAGE``) and public-API probes that make a missing API
  UNSUPPORTED.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from harness.cell.classify import Finding
from harness.drivers.probe import Since, accepts
from harness.inputs.checkpoints.lora.layouts import ARCH_COMPONENTS, ModelLayout, model_layout
from harness.oracles.lora import (
    Comparison,
    Reference,
)
from harness.protocol.outcomes import Outcome

if TYPE_CHECKING:  # the session object lives with the scenarios, which import this module
    from harness.scenarios.lora import Scene

#: Phrases by which a library warning reports that LoRA keys were not (all) used.
REPORT_PHRASES = re.compile(
    r"no lora keys|unexpected key|not found|ignor|unsupported|incompatible|not loaded|"
    r"could not|couldn't|filter(ed)? out|were not used|not (be )?used|missing",
    re.IGNORECASE,
)


def components_of(arch: str) -> tuple[str, ...]:
    return ARCH_COMPONENTS[arch]


def reported(messages: Iterable[str], names: Iterable[str], scope: Iterable[str] = ()) -> list[str]:
    """Library messages that report the given keys/modules: they name one of ``names``, or
    they say generically that LoRA keys went unused *and* name one of ``scope`` (the
    component, e.g. ``'transformer'`` or ``FluxTransformer2DModel``)."""
    names = [n for n in names if n]
    scopes = [re.compile(rf"(?<![\w.]){re.escape(s)}(?![\w])") for s in scope]
    out = []
    for msg in messages:
        if any(n in msg for n in names):
            out.append(msg)
        elif scopes and REPORT_PHRASES.search(msg) and any(p.search(msg) for p in scopes):
            out.append(msg)
    return out


#: peft / diffusers: "Loading adapter weights from state_dict led to missing keys in the
#: model: <module>.lora_A.<adapter>.weight, ..." - adapter layers the library created but
#: did not fill from the file. Under ``low_cpu_mem_usage`` they hold whatever the allocator
#: handed out, so their effect is luck (0.31-0.34 Flux: right by chance in one run, NaN or
#: 1e19 in the next).
_MISSING_ADAPTER_KEYS = re.compile(r"missing keys in the model:\s*(.+)", re.IGNORECASE)
_ADAPTER_PARAM = re.compile(
    r"^(?P<module>[\w.]+?)\.(?:lora_A|lora_B|lora_magnitude_vector|lora_embedding_A|"
    r"lora_embedding_B)\.(?P<adapter>[\w-]+)(?:\.weight|\.bias)?$"
)


def unfilled_adapter_layers(messages: Iterable[str]) -> dict[str, list[str]]:
    """Adapter name -> module paths whose adapter weights the library said it did not load
    (its own "missing keys in the model" warning)."""
    out: dict[str, list[str]] = {}
    for msg in messages:
        match = _MISSING_ADAPTER_KEYS.search(msg)
        if not match:
            continue
        for key in match.group(1).rstrip(". ").split(","):
            param = _ADAPTER_PARAM.match(key.strip().rstrip("."))
            if param and param["module"] not in out.setdefault(param["adapter"], []):
                out[param["adapter"]].append(param["module"])
    return out


def _short(name: str) -> list[str]:
    """Ways a message may name a module: its full path only. A tail such as
    ``attn1.to_q`` stands in every block, so it names nothing of this case."""
    return [name]


def judge_load(
    ref: Reference,
    comparisons: Mapping[str, Comparison],
    messages: list[str],
    stray_keys: list[str],
    compat: Any = None,
    classes: Mapping[str, str] | None = None,
) -> str:
    """Classify a load that raised nothing. Returns "OK" or "OK-reported" (keys without
    effect, but a library warning said so); raises a Finding for DROPPED_KEYS (no effect,
    no warning) and WRONG_RESULT (an effect the reference does not predict).

    A warning counts for a component's dropped keys when it names one of them, or says
    generically that keys went unused for that component (``prefix='unet'`` / its class).
    Stray (unknown) keys must be named, unless nothing at all was loaded and that was
    reported."""
    classes = classes or {}
    wrong = {f"{c}.{m}": e for c, cmp in comparisons.items() for m, e in cmp.wrong.items()}
    unexpected = {
        f"{c}.{m}": e for c, cmp in comparisons.items() for m, e in cmp.unexpected.items()
    }
    if compat is not None:
        compat.detail(
            modules_matched=sum(len(c.matched) for c in comparisons.values()),
            worst_abs_error=max((c.worst for c in comparisons.values()), default=0.0),
        )
    if wrong or unexpected:
        parts = []
        if wrong:
            parts.append("wrong delta on " + ", ".join(sorted(wrong)[:6]))
        if unexpected:
            parts.append("changed without a key: " + ", ".join(sorted(unexpected)[:6]))
        if compat is not None:
            compat.detail(
                wrong=dict(list(wrong.items())[:20]), unexpected=dict(list(unexpected.items())[:20])
            )
        raise Finding(Outcome.WRONG_RESULT, "; ".join(parts))
    status = "OK"
    silent: list[str] = []
    warned: list[str] = []  # dropped keys a message reported (by name or generically)
    generic: list[str] = []  # ... of which no message names a key or module of the case
    for component, cmp in comparisons.items():
        if not cmp.dropped:
            continue
        keys = sorted({k for m in cmp.dropped for k in ref.keys_for(component, m)})
        names = [n for m in cmp.dropped for n in _short(m)] + keys
        scope = [f"'{component}'", classes.get(component, component)]
        if reported(messages, names, scope):
            status = "OK-reported"
            warned += keys
            if not reported(messages, names):
                generic += keys
        else:
            silent += keys
    if silent:
        if compat is not None:
            compat.detail(dropped_keys=silent[:40])
        raise Finding(
            Outcome.DROPPED_KEYS,
            f"{len(silent)} key(s) had no effect and no warning: " + ", ".join(silent[:6]),
        )
    if warned and compat is not None and getattr(compat, "input_valid", False):
        _judge_warned_drop(compat, comparisons, warned, generic)
    if stray_keys:
        nothing_loaded = all(not cmp.matched for cmp in comparisons.values())
        tokens = sorted({tok for k in stray_keys for tok in re.findall(r"bogus\d+", k)})
        if not reported(messages, tokens + stray_keys) and not (
            nothing_loaded and status == "OK-reported"
        ):
            if compat is not None:
                compat.detail(dropped_keys=stray_keys)
            raise Finding(
                Outcome.DROPPED_KEYS,
                "unknown key(s) were silently ignored: " + ", ".join(stray_keys[:6]),
            )
        status = "OK-reported"
    return status


#: How a warning may name a file's bias keys as a family (peft's up bias, a full bias
#: difference of the ComfyUI convention).
BIAS_TOKENS = ("lora_B.bias", "lora_bias", "diff_b")


def judge_biases(compat: Any, scene: Scene, ref: Reference, observed: Any, msgs: list[str]) -> str:
    """The modules' biases after a load of a file with bias keys (``lora_B.bias``,
    ``.diff_b``): each must act with pristine + the reference's bias delta. A bias that did
    not move is DROPPED_KEYS unless a warning named the keys; a different value (or a moved
    bias the file has no key for) is WRONG_RESULT."""
    comparisons = scene.compare_bias(observed, ref)
    wrong = [f"{c}.{m}" for c, cmp in comparisons.items() for m in (*cmp.wrong, *cmp.unexpected)]
    compat.detail(biases_matched=sum(len(c.matched) for c in comparisons.values()))
    if wrong:
        compat.detail(wrong_biases=wrong[:20])
        raise Finding(Outcome.WRONG_RESULT, f"wrong bias on {', '.join(wrong[:6])}")
    dropped = [(c, m) for c, cmp in comparisons.items() for m in cmp.dropped]
    if not dropped:
        return "OK"
    keys = sorted(
        {k for c, m in dropped for k in ref.keys_for(c, m) if k.endswith((".bias", ".diff_b"))}
    )
    compat.detail(dropped_bias_keys=keys[:40])
    if reported(msgs, keys + list(BIAS_TOKENS)):
        return "OK-reported"
    raise Finding(
        Outcome.DROPPED_KEYS,
        f"{len(keys)} bias key(s) had no effect and no warning: " + ", ".join(keys[:6]),
    )


def _judge_warned_drop(
    compat: Any, comparisons: Mapping[str, Comparison], warned: list[str], generic: list[str]
) -> None:
    """Keys of a complete, valid file that had no effect, with a warning: never a pass (the
    user needed them loaded). Nothing loaded at all is a refusal by warning (REFUSED); a part
    dropped under a warning that names none of its keys or modules (e.g. "No LoRA keys
    associated to CLIPTextModel found ... safe to ignore") is DROPPED_KEYS; a part dropped
    under a warning that names them is REFUSED (clear, but valid input refused)."""
    compat.detail(dropped_keys=warned[:40], dropped_with_generic_warning=len(generic))
    if not any(cmp.matched for cmp in comparisons.values()):
        raise Finding(
            Outcome.REFUSED,
            f"nothing of a complete file loaded: all {len(warned)} key(s) dropped with a "
            "warning: " + ", ".join(warned[:4]),
        )
    if generic:
        raise Finding(
            Outcome.DROPPED_KEYS,
            f"{len(generic)} key(s) of a complete file had no effect; the only warning names "
            "none of them: " + ", ".join(generic[:6]),
        )
    raise Finding(
        Outcome.REFUSED,
        f"{len(warned)} key(s) of a complete file refused by a warning naming them: "
        + ", ".join(warned[:6]),
    )


def judge_view(
    compat: Any,
    ref: Reference,
    converted: Any,
    denoiser: str,
    passthrough: bool,
    msgs: list[str],
    strict_extra: bool = True,
    scope: Iterable[str] = (),
) -> None:
    """Findings from the detector view: WRONG_RESULT for a wrong delta or a module the file
    does not target, DROPPED_KEYS for a targeted module that never reaches the model
    without a warning naming it (or, with ``scope``, saying generically that no LoRA keys
    reached that component: a real load's words, see test_full_scale)."""
    from harness.drivers.lora_detector import compare_view

    view = compare_view(ref, converted, denoiser, passthrough)
    compat.detail(modules_expected=view.expected, modules_converted=view.converted)
    extra = view.extra if strict_extra else []
    if view.extra:
        compat.detail(extra=[f"{c}.{m}" for c, m in view.extra[:20]])
    if view.wrong or extra:
        compat.detail(wrong=dict(list(view.wrong.items())[:20]))
        parts = [f"wrong delta on {', '.join(list(view.wrong)[:5])}"] if view.wrong else []
        if extra:
            parts.append(
                "converted to modules the file does not target: "
                + ", ".join(f"{c}.{m}" for c, m in extra[:5])
            )
        compat.finding(Outcome.WRONG_RESULT, "; ".join(parts))
    if view.dropped_extra:
        compat.detail(dropped_extra=view.dropped_extra[:20])
        tokens = [t for t in EXTRA_TOKENS if any(t in k for k in view.dropped_extra)]
        if not reported(msgs, view.dropped_extra + tokens):
            compat.finding(
                Outcome.DROPPED_KEYS,
                f"{len(view.dropped_extra)} DoRA magnitude / norm key(s) never reach the "
                "model, no warning: " + ", ".join(view.dropped_extra[:4]),
            )
    if view.missing:
        keys = sorted({k for c, m in view.missing for k in ref.keys_for(c, m)})
        compat.detail(dropped_keys=keys[:40], missing=[f"{c}.{m}" for c, m in view.missing[:20]])
        if not reported(msgs, keys + [m for _, m in view.missing], scope):
            compat.finding(
                Outcome.DROPPED_KEYS,
                f"{len(view.missing)} module(s) never reach the model, no warning: "
                + ", ".join(f"{c}.{m}" for c, m in view.missing[:5]),
            )


#: How a warning may name a whole family of extra keys ("filter out the keys associated to
#: 'dora_scale'"): a message naming the key kind reports every key of that kind.
EXTRA_TOKENS = ("dora_scale", "lora_magnitude_vector", "query_norm", "key_norm", "norm_q", "norm_k")


def judge_dora(
    scene: Scene,
    ref: Reference,
    observed: Mapping[str, Mapping[str, torch.Tensor]],
    messages: list[str],
    compat: Any = None,
) -> str:
    """A DoRA load: OK when every module acts with the DoRA weight. When the modules act
    as the *plain* LoRA instead, the magnitudes had no effect: "OK-reported" if a warning
    said so (diffusers filters ``dora_scale`` keys with one), else SILENT_NOOP. Anything
    else is judged like any load against the DoRA reference."""
    comparisons = scene.compare(observed, ref)
    if all(c.ok for c in comparisons.values()):
        return judge_load(ref, comparisons, messages, [], compat, scene.classes)
    plain = scene.compare(observed, ref.plain())
    if ref.magnitudes and all(c.ok for c in plain.values()):
        keys = sorted(set(ref.magnitude_keys.values()))
        tokens = [t for t in EXTRA_TOKENS[:2] if any(t in k for k in keys)]
        if compat is not None:
            compat.detail(magnitudes_ignored=len(keys), magnitude_keys=keys[:10])
        said = reported(messages, keys + tokens + ["DoRA"])
        if said:
            if compat is not None:
                compat.detail(report=said[0][:300])
            return "OK-reported"
        raise Finding(
            Outcome.SILENT_NOOP,
            f"the {len(keys)} DoRA magnitude(s) had no effect (the plain LoRA was applied), "
            "no warning: " + ", ".join(keys[:4]),
        )
    return judge_load(ref, comparisons, messages, [], compat, scene.classes)


# --------------------------------------------------------------------------- API facts
def has_reset_to_overwritten_params(pipe: Any) -> bool:
    """``unload_lora_weights(reset_to_overwritten_params=...)`` (Flux, with control LoRAs)."""
    return accepts(pipe.unload_lora_weights, "reset_to_overwritten_params")


# --------------------------------------------------------------------------- observing extras
def read_params(pipe: Any, component: str, paths: Iterable[str]) -> dict[str, torch.Tensor | None]:
    """Current values of full parameters (e.g. norm scales) by path; None if absent."""
    module = getattr(pipe, component)
    params = dict(module.named_parameters())
    return {
        p: (params[p].detach().to("cpu", torch.float64) if p in params else None) for p in paths
    }


#: ``load_lora_weights(..., low_cpu_mem_usage=True)`` is read from 0.31 on (release notes
#: of 0.31: "low_cpu_mem_usage for LoRA loading"); before, the keyword is swallowed by
#: ``**kwargs`` and ignored, so the signature cannot tell.
LORA_LOW_CPU_MEM_USAGE = Since("0.31", source="diffusers 0.31.0 release notes")


def save_kwargs(arch: str, pipe: Any, adapter_name: str) -> dict[str, Any]:
    """``save_lora_weights`` keywords (``<component>_lora_layers``) from the loaded adapter."""
    from peft.utils import get_peft_model_state_dict

    out: dict[str, Any] = {}
    for component in ARCH_COMPONENTS[arch]:
        module = getattr(pipe, component, None)
        if module is None or not getattr(module, "peft_config", None):
            continue
        if adapter_name not in module.peft_config:
            continue
        out[f"{component}_lora_layers"] = get_peft_model_state_dict(
            module, adapter_name=adapter_name
        )
    return out


def adapter_list(pipe: Any) -> dict[str, list[str]] | None:
    getter = getattr(pipe, "get_list_adapters", None)
    return getter() if getter is not None else None


def pipe_dtype_of(arch: str, pipe: Any) -> torch.dtype:
    return next(getattr(pipe, ARCH_COMPONENTS[arch][0]).parameters()).dtype


def layout_of_pipe(pipe: Any, arch: str) -> ModelLayout:
    return model_layout(pipe, arch)
