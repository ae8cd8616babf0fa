"""Bad IP-Adapter state dicts in the UNet release layout, and what a loader owes for each.

:data:`IP_CASES` holds the dicts (missing or flattened sections, wrong shapes, slots the
UNet does not number); :func:`ip_expectation` is their reference: valid only when a dict
is exactly the release layout of the target, otherwise it must be rejected clearly (or,
for a loadable oddity such as NaN or fp16, land where the release numbering puts it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

# package-internal helpers shared with the LoRA cases (seeded generator, float view, poison)
from harness.inputs.malformed.lora import _as_float, _generator, _poison


# -- IP-Adapter (UNet release layout) -----------------------------------------------------------
@dataclass(frozen=True)
class IpSlot:
    """A cross-attention processor: its release id (position in ``attn_processors``), the
    attention's query width and the text width it attends to."""

    ip_id: int
    hidden: int
    cross_dim: int


@dataclass(frozen=True)
class IpTarget:
    slots: tuple[IpSlot, ...]
    cross_dim: int  # UNet cross_attention_dim (image tokens are projected to it)
    embed_dim: int  # image encoder projection width
    tokens: int = 4


#: Release-layout keys of the base ("proj.weight" sentinel) image projection.
IP_PROJ_KEYS = ("proj.weight", "proj.bias", "norm.weight", "norm.bias")


def build_ip_adapter(target: IpTarget, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """A valid base IP-Adapter in the nested release layout."""
    g = _generator(seed)
    width = target.tokens * target.cross_dim
    image_proj = {
        "proj.weight": torch.randn(width, target.embed_dim, generator=g) * 0.05,
        "proj.bias": torch.randn(width, generator=g) * 0.05,
        "norm.weight": 1 + torch.randn(target.cross_dim, generator=g) * 0.05,
        "norm.bias": torch.randn(target.cross_dim, generator=g) * 0.05,
    }
    ip_adapter: dict[str, torch.Tensor] = {}
    for slot in target.slots:
        for kind in ("k", "v"):
            ip_adapter[f"{slot.ip_id}.to_{kind}_ip.weight"] = (
                torch.randn(slot.hidden, target.cross_dim, generator=g) * 0.1
            )
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def flatten_ip(release: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s in ("image_proj", "ip_adapter") for k, v in release[s].items()}


@dataclass
class IpExpectation:
    """Where each usable tensor must land, and what must be reported."""

    slots: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)  # (id, k|v)
    image_proj: dict[str, torch.Tensor] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    fully_valid: bool = True
    #: Integer / bool tensors: loadable by an exact cast, or refused clearly (either is OK).
    may_refuse: bool = False


_IP_KEY = re.compile(r"(\d+)\.to_([kv])_ip\.weight")


def ip_expectation(state_dict: Any, target: IpTarget) -> IpExpectation:
    """Reference for a nested IP-Adapter dict: valid only when it is exactly the release
    layout of ``target`` (both sections, the base projection's keys and shapes, one k and v
    per cross-attention slot, float tensors); anything else must be rejected clearly."""
    exp = IpExpectation()
    good = build_ip_adapter(target)
    if not isinstance(state_dict, Mapping) or set(state_dict) != {"image_proj", "ip_adapter"}:
        keys = list(state_dict) if isinstance(state_dict, Mapping) else []
        exp.fully_valid = False
        exp.names = ["image_proj", "ip_adapter", *map(str, keys)]
        return exp
    for section in ("image_proj", "ip_adapter"):
        part = state_dict[section]
        if not isinstance(part, Mapping):
            exp.fully_valid = False
            exp.names.append(section)
            continue
        for key in sorted(set(part) | set(good[section]), key=str):
            value = part.get(key)
            ref = good[section].get(key)
            tensor = _as_float(value)
            if ref is None or tensor is None or tuple(tensor.shape) != tuple(ref.shape):
                exp.fully_valid = False
                exp.names.append(str(key))
                continue
            if not (value.is_floating_point() or value.is_complex()):
                exp.may_refuse = True
            if section == "image_proj":
                exp.image_proj[key] = tensor
            else:
                match = _IP_KEY.fullmatch(key)
                assert match is not None
                exp.slots[(int(match.group(1)), match.group(2))] = tensor
    return exp


def _ip_edit(change: Callable[[dict[str, dict[str, Any]]], Any]) -> Callable[[IpTarget], Any]:
    def build(target: IpTarget) -> Any:
        release: dict[str, dict[str, Any]] = {
            s: dict(v) for s, v in build_ip_adapter(target).items()
        }
        result = change(release)
        return release if result is None else result

    return build


def _first_slot_key(release: Mapping[str, Mapping[str, Any]], kind: str = "k") -> str:
    return next(k for k in release["ip_adapter"] if k.endswith(f"to_{kind}_ip.weight"))


def _ip_replace(kind: str, make: Callable[[torch.Tensor], Any]) -> Callable[[IpTarget], Any]:
    def change(r: dict[str, dict[str, Any]]) -> None:
        key = _first_slot_key(r, kind)
        r["ip_adapter"][key] = make(r["ip_adapter"][key])

    return _ip_edit(change)


def _ip_extra_slot(r: dict[str, dict[str, Any]]) -> None:
    key = _first_slot_key(r)
    r["ip_adapter"]["999.to_k_ip.weight"] = r["ip_adapter"][key].clone()
    r["ip_adapter"]["999.to_v_ip.weight"] = r["ip_adapter"][key].clone()


def _ip_drop_slot(r: dict[str, dict[str, Any]]) -> None:
    del r["ip_adapter"][_first_slot_key(r, "v")]


def _ip_unknown_projection(r: dict[str, dict[str, Any]]) -> None:
    r["image_proj"] = {k.replace("proj.", "projection."): v for k, v in r["image_proj"].items()}


def _ip_too_deep(r: dict[str, dict[str, Any]]) -> dict[str, Any]:
    deep: dict[str, Any] = {}
    for key, value in r["image_proj"].items():
        module, _, leaf = key.rpartition(".")
        deep.setdefault(module, {})[leaf] = value
    return {"image_proj": deep, "ip_adapter": r["ip_adapter"]}


@dataclass(frozen=True)
class IpCase:
    id: str
    build: Callable[[IpTarget], Any]
    note: str


IP_CASES: tuple[IpCase, ...] = (
    IpCase("control", _ip_edit(lambda r: None), "valid base IP-Adapter (positive control)"),
    IpCase("empty", lambda t: {}, "an empty dict"),
    IpCase("empty-sections", lambda t: {"image_proj": {}, "ip_adapter": {}}, "both sections empty"),
    IpCase("flat-where-nested", _ip_edit(lambda r: flatten_ip(r)), "flat 'image_proj.*' keys"),
    IpCase("nested-too-deep", _ip_edit(_ip_too_deep), "image_proj as {'proj': {'weight': ...}}"),
    IpCase("missing-section", _ip_edit(lambda r: {"image_proj": r["image_proj"]}), "no ip_adapter"),
    IpCase(
        "wrong-shape",
        _ip_replace("k", lambda t: torch.zeros(t.shape[0] + 3, t.shape[1])),
        "to_k_ip 3 rows too tall",
    ),
    IpCase("wrong-rank", _ip_replace("k", lambda t: t.reshape(-1)), "to_k_ip flattened to 1-D"),
    IpCase("non-tensor", _ip_replace("k", lambda t: t.tolist()), "to_k_ip as Python lists"),
    IpCase("nan", _ip_replace("k", _poison(float("nan"))), "one NaN in to_k_ip (loadable)"),
    IpCase(
        "dtype-float16",
        _ip_edit(lambda r: {s: {k: v.half() for k, v in d.items()} for s, d in r.items()}),
        "every tensor float16 (loadable)",
    ),
    IpCase("extra-slot", _ip_edit(_ip_extra_slot), "weights for processor 999 (none exists)"),
    IpCase("missing-slot-key", _ip_edit(_ip_drop_slot), "one slot lacks to_v_ip"),
    IpCase(
        "unknown-projection",
        _ip_edit(_ip_unknown_projection),
        "image_proj keys of no known layout (proj.* renamed)",
    ),
)

IP_CASE_IDS = tuple(c.id for c in IP_CASES)


def ip_case(case_id: str) -> IpCase:
    for case in IP_CASES:
        if case.id == case_id:
            return case
    raise KeyError(case_id)
