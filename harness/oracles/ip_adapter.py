"""Independent oracles for IP-Adapter loading: what the model must hold after a load,
computed from the checkpoint and the target model alone (never from diffusers' converters).

* Attention processors: the IP layers of processor ``slot`` hold the release tensors
  stored under ``slot.ip_id`` (numbering rules in ``checkpoints.ip_adapter.targets``).
* image_proj: each checkpoint key maps to a named parameter of the loaded projection
  (``checkpoints.ip_adapter.proj_names``: renames, a fused ``to_kv`` split in halves; the
  scheme is the one whose names the loaded module carries, as diffusers renamed blocks
  between versions). Each tensor must sit *at its mapped name*: a search by value would
  pass two same-shape tensors exchanged. Missing names, wrong values and loaded parameters
  no key maps to are reported separately.
* The projection's forward and one processor's image branch, recomputed in plain torch,
  live in ``ip_projection`` and ``ip_attention``.
* Per-block scales: the documented ``{"down": {"block_2": [0.0, 1.0]}, ...}`` semantics
  expanded to processor names by our own rule.
* FaceID LoRA: each targeted linear must compute ``x @ (W + up @ down).T + b``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.inputs.checkpoints.ip_adapter.proj_names import NameScheme, schemes_for
from harness.inputs.checkpoints.ip_adapter.targets import Slot, Target
from harness.inputs.checkpoints.ip_adapter.variants import LORA_PARTS
from harness.oracles.compare import tolerance

Release = Mapping[str, Mapping[str, torch.Tensor]]

#: Per family: release parameter suffixes of one IP slot -> (processor attribute, indexed
#: per adapter?, parameter). UNet / Flux keep one ``nn.Linear`` per adapter in a ModuleList;
#: SD3 supports a single adapter with plain modules.
PROCESSOR_PARAMS: dict[str, dict[str, tuple[str, bool, str]]] = {
    "unet": {
        "to_k_ip.weight": ("to_k_ip", True, "weight"),
        "to_v_ip.weight": ("to_v_ip", True, "weight"),
    },
    "flux": {
        "to_k_ip.weight": ("to_k_ip", True, "weight"),
        "to_v_ip.weight": ("to_v_ip", True, "weight"),
        "to_k_ip.bias": ("to_k_ip", True, "bias"),
        "to_v_ip.bias": ("to_v_ip", True, "bias"),
    },
    "sd3": {
        "norm_ip.linear.weight": ("norm_ip.linear", False, "weight"),
        "norm_ip.linear.bias": ("norm_ip.linear", False, "bias"),
        "to_k_ip.weight": ("to_k_ip", False, "weight"),
        "to_v_ip.weight": ("to_v_ip", False, "weight"),
        "norm_q.weight": ("norm_q", False, "weight"),
        "norm_k.weight": ("norm_k", False, "weight"),
        "norm_ip_k.weight": ("norm_ip_k", False, "weight"),
    },
}


def _same(actual: torch.Tensor, expected: torch.Tensor, exact: bool) -> bool:
    a = actual.detach().to("cpu")
    e = expected.detach().to("cpu", a.dtype)
    if a.shape != e.shape:
        return False
    if exact:
        return bool(torch.equal(a, e))
    rtol, atol = tolerance(a.dtype)
    return bool(torch.allclose(a.float(), e.float(), rtol=rtol, atol=atol))


def _resolve(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def processor_mismatches(
    denoiser: Any, target: Target, releases: Sequence[Release], exact: bool = True
) -> list[str]:
    """Where the IP layers of ``denoiser``'s processors differ from the releases (adapter
    ``i`` of a multi-adapter load is ``releases[i]``); empty when all match."""
    processors = denoiser.attn_processors
    table = PROCESSOR_PARAMS[target.family]
    problems: list[str] = []
    for slot in target.ip_slots:
        proc = processors.get(slot.name)
        if proc is None:
            problems.append(f"{slot.name}: no such attention processor")
            continue
        for i, release in enumerate(releases):
            for suffix, (attr, per_adapter, param) in table.items():
                key = f"{slot.ip_id}.{suffix}"
                expected = release["ip_adapter"].get(key)
                if expected is None:
                    continue
                try:
                    module = _resolve(proc, attr)
                    if per_adapter:
                        module = module[i]
                    elif i:
                        problems.append(f"{slot.name}: {type(proc).__name__} holds one adapter")
                        break
                    actual = getattr(module, param)
                except (AttributeError, IndexError, TypeError):
                    problems.append(
                        f"{slot.name}: {type(proc).__name__} has no {attr}[{i}].{param} "
                        f"for ip_adapter.{key}"
                    )
                    continue
                if not _same(actual, expected, exact):
                    problems.append(f"{slot.name}.{attr}[{i}].{param} != ip_adapter.{key}")
    return problems


def non_ip_slots_with_ip_layers(denoiser: Any, target: Target) -> list[str]:
    """Processors that carry IP layers although the numbering gives them none."""
    processors = denoiser.attn_processors
    return [
        s.name
        for s in target.slots
        if s.ip_id is None and hasattr(processors.get(s.name), "to_k_ip")
    ]


@dataclass
class ProjMatch:
    """How the loaded image projection relates to the checkpoint's ``image_proj``, under
    the name scheme (``proj_names.SCHEMES``) whose names the loaded module carries."""

    scheme: str = ""
    missing: list[str] = field(default_factory=list)  # "key -> param" absent from the module
    wrong: list[str] = field(default_factory=list)  # "key -> param: why" (shape or value)
    unaccounted: list[str] = field(default_factory=list)  # loaded params no key maps to
    mapping: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong or self.unaccounted)

    def summary(self, limit: int = 6) -> str:
        parts = []
        for label, keys in (
            ("missing", self.missing),
            ("wrong", self.wrong),
            ("unaccounted", self.unaccounted),
        ):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:limit])}")
        verdict = "; ".join(parts) or "every image_proj tensor at its mapped name"
        return f"[{self.scheme}] {verdict}"


def _parts(key: str, tensor: torch.Tensor, params: Sequence[str]) -> list[torch.Tensor]:
    """The tensor, or its equal dim-0 parts when the rule splits it (a fused ``to_kv``)."""
    if len(params) == 1:
        return [tensor]
    if tensor.shape[0] % len(params):
        raise ValueError(f"image_proj.{key} cannot be split into {len(params)} equal parts")
    return list(tensor.chunk(len(params), dim=0))


def _images(scheme: NameScheme, keys: Sequence[str], variant: str) -> dict[str, tuple[str, ...]]:
    out = {}
    for key in keys:
        params = scheme.map(key)
        if params is None:  # our table is incomplete: a harness bug, not a finding
            raise ValueError(f"name scheme {variant}/{scheme.name} has no rule for {key!r}")
        out[key] = params
    return out


def _pick_scheme(
    variant: str, keys: Sequence[str], loaded: Mapping[str, torch.Tensor]
) -> tuple[NameScheme, dict[str, tuple[str, ...]]]:
    """The scheme whose names the loaded module carries: an exact name match first, else
    the largest overlap (table order breaks ties), so a wrong load still gets judged
    against the closest documented layout."""
    best: tuple[tuple[bool, int], NameScheme, dict[str, tuple[str, ...]]] | None = None
    for scheme in schemes_for(variant):
        images = _images(scheme, keys, variant)
        names = {p for params in images.values() for p in params}
        rank = (names == set(loaded), len(names & set(loaded)))
        if best is None or rank > best[0]:
            best = (rank, scheme, images)
    if best is None:
        raise ValueError(f"no name scheme for image_proj variant {variant!r}")
    return best[1], best[2]


def image_proj_match(
    module: Any, image_proj: Mapping[str, torch.Tensor], variant: str
) -> ProjMatch:
    """Every checkpoint tensor must sit at the parameter its key maps to (module
    docstring); ``module`` is the loaded projection (or its state dict)."""
    state = module if isinstance(module, Mapping) else module.state_dict()
    loaded = {k: v.detach().to("cpu") for k, v in state.items()}
    scheme, images = _pick_scheme(variant, list(image_proj), loaded)
    result = ProjMatch(scheme=scheme.name)
    expected: dict[str, tuple[str, torch.Tensor]] = {}  # param -> (key, tensor)
    for key, params in images.items():
        tensor = image_proj[key].detach().to("cpu")
        result.mapping[key] = list(params)
        for param, part in zip(params, _parts(key, tensor, params), strict=True):
            expected[param] = (key, part)
    for param, (key, part) in expected.items():
        actual = loaded.get(param)
        if actual is None:
            result.missing.append(f"{key} -> {param}")
        elif actual.shape != part.shape:
            result.wrong.append(
                f"{key} -> {param}: shape {tuple(actual.shape)} != {tuple(part.shape)}"
            )
        elif not torch.equal(actual, part.to(actual.dtype)):
            holder = _whose(actual, expected)
            why = f"holds {holder}" if holder else "other values"
            result.wrong.append(f"{key} -> {param}: {why}")
    result.unaccounted = sorted(set(loaded) - set(expected))
    return result


def _whose(actual: torch.Tensor, expected: Mapping[str, tuple[str, torch.Tensor]]) -> str:
    """For the record only: which checkpoint tensor a wrong parameter holds instead."""
    for param, (key, part) in expected.items():
        if part.shape == actual.shape and torch.equal(actual, part.to(actual.dtype)):
            return f"{key} (meant for {param})"
    return ""


def image_projection_modules(denoiser: Any) -> list[Any]:
    """The loaded image projection(s): UNet / Flux ``encoder_hid_proj`` layers, SD3
    ``image_proj``."""
    hid = getattr(denoiser, "encoder_hid_proj", None)
    if hid is not None and hasattr(hid, "image_projection_layers"):
        return list(hid.image_projection_layers)
    proj = getattr(denoiser, "image_proj", None)
    return [proj] if proj is not None else []


# -- per-block scales ----------------------------------------------------------------------
_UNET_ATTN = re.compile(r"^(down|up)_blocks\.(\d+)\.attentions\.(\d+)\.")


def expand_block_scales(slots: Sequence[Slot], config: Mapping[str, Any]) -> dict[str, float]:
    """Scale each IP processor gets from a per-block config (diffusers' documented
    semantics): parts / blocks not named get 0.0; ``"block_i"`` is a number for the whole
    block or a list with one entry per transformer model (``attentions.j``) in it; ``"mid"``
    is a number."""
    out: dict[str, float] = {}
    for slot in slots:
        if slot.ip_id is None:
            continue
        name = slot.name
        if name.startswith("mid_block"):
            out[name] = float(config.get("mid", 0.0))
            continue
        match = _UNET_ATTN.match(name)
        if match is None:
            raise ValueError(f"cannot place {name!r} in a down/up block")
        part, block, attn = match.group(1), int(match.group(2)), int(match.group(3))
        value: Any = config.get(part, 0.0)
        if isinstance(value, Mapping):
            value = value.get(f"block_{block}", 0.0)
        if isinstance(value, (list, tuple)):
            value = value[attn]
        out[name] = float(value)
    return out


# -- FaceID LoRA ---------------------------------------------------------------------------
#: LoRA part -> attribute path of the linear it adapts inside ``Attention``.
LORA_TARGETS = {
    "to_q_lora": "to_q",
    "to_k_lora": "to_k",
    "to_v_lora": "to_v",
    "to_out_lora": "to_out.0",
}


def lora_mismatches(
    denoiser: Any,
    pristine: Mapping[str, torch.Tensor],
    target: Target,
    release: Release,
    scale: float = 1.0,
    probe_seed: int = 0,
) -> list[str]:
    """Targeted linears whose output differs from ``x @ (W + scale * up @ down).T + b``.

    ``pristine``: a snapshot of the denoiser's state dict before the load (the base W, b).
    Probing the module's forward keeps the oracle independent of how the library stores
    the LoRA (PEFT layers, fused weights, ...)."""
    sd = release["ip_adapter"]
    problems: list[str] = []
    gen = torch.Generator().manual_seed(probe_seed)
    for slot in target.slots:
        attn_path = slot.name.removesuffix(".processor")
        for part in LORA_PARTS:
            down = sd.get(f"{slot.position}.{part}.down.weight")
            up = sd.get(f"{slot.position}.{part}.up.weight")
            if down is None or up is None:
                continue
            path = f"{attn_path}.{LORA_TARGETS[part]}"
            try:
                module = _resolve(denoiser, path)
            except AttributeError:
                problems.append(f"{path}: no such module")
                continue
            weight = pristine.get(f"{path}.weight")
            bias = pristine.get(f"{path}.bias")
            if weight is None:
                problems.append(f"{path}: not in the pristine snapshot")
                continue
            param = next(module.parameters())
            x = torch.randn(3, weight.shape[1], generator=gen)
            effective = weight.float() + scale * (up.float() @ down.float())
            expected = x @ effective.T + (bias.float() if bias is not None else 0.0)
            with torch.no_grad():
                actual = module(x.to(param.device, param.dtype)).float().cpu()
            rtol, atol = tolerance(param.dtype)
            if not torch.allclose(actual, expected, rtol=max(rtol, 1e-4), atol=max(atol, 1e-4)):
                delta = float((actual - expected).abs().max())
                problems.append(f"{path} (max diff {delta:.3g})")
    return problems


# -- pipeline components -------------------------------------------------------------------
def component_view(pipe: Any) -> dict[str, tuple[str, int | None]]:
    """``pipe.components`` as name -> (type, identity): unload must hand back the very same
    objects (or None) that were there before the adapter came."""
    out = {}
    for name, value in pipe.components.items():
        out[name] = ("None", None) if value is None else (type(value).__name__, id(value))
    return out


def component_config_view(pipe: Any, names: Sequence[str]) -> dict[str, Any]:
    """What ``pipe.config`` records for ``names`` (it is what ``save_pretrained`` writes)."""
    config = dict(pipe.config)
    return {n: _norm_entry(config.get(n)) for n in names}


def _norm_entry(value: Any) -> Any:
    """``(None, None)`` and ``None`` both mean "no component" (versions write either)."""
    if isinstance(value, (list, tuple)):
        value = tuple(value)
        return None if all(v is None for v in value) else value
    return value


def diff_views(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(before) | set(after)):
        if before.get(key, "<absent>") != after.get(key, "<absent>"):
            out.append(f"{key}: {before.get(key, '<absent>')} -> {after.get(key, '<absent>')}")
    return out


def processor_view(denoiser: Any) -> dict[str, str]:
    """Attention processors as name -> class name (types and count)."""
    return {name: type(proc).__name__ for name, proc in denoiser.attn_processors.items()}
