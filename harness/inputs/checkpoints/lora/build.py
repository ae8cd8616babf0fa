"""Write synthetic LoRA checkpoints in any format of :mod:`.formats`.

A :class:`Pick` says what one group of the file holds: which parts of a (possibly fused)
group are present, the rank, the alpha (``None``: no alpha key) and, for fused formats, how
partial groups are laid out:

* ``dense`` - one shared down matrix; the up rows of absent parts are zero (what a trainer
  that always trains the fused layer, then prunes, writes);
* ``stacked`` - the parts' own downs stacked, the up block-diagonal (what converting a
  per-module LoRA into fused BFL names writes; absent parts have no rows in the down and
  zero rows in the up).

Key families (``families=``, names from ``formats.FAMILIES``): ``biases`` adds the format's
up bias (``.lora_B.bias``) to every pair; ``t5`` adds OneTrainer's ``lora_te2_`` T5 pairs,
which no diffusers Flux loader targets, so they are returned as ``stray_keys`` (keys the
loader must report, like a pair for a module the model lacks).

The tensors are random (seeded) and *then* cast to the file dtype, so the reference, which
reads the file, sees exactly what the library sees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.inputs.checkpoints.lora.formats import (
    FAMILIES,
    LoraFormat,
    get_format,
    split_group,
    t5_layers,
)
from harness.inputs.checkpoints.lora.layouts import Group, Layer, ModelLayout

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

#: Set by ``build(meta=True)``: tensors are shapes only (manifests of full-size files).
_META = {"on": False}


@dataclass(frozen=True)
class Pick:
    group: Group
    present: tuple[str, ...]
    rank: int = 4
    alpha: float | None = None
    layout: str = "dense"  # fused formats only: dense | stacked

    def describe(self) -> str:
        parts = ",".join(p.rsplit(".", 1)[-1] for p in self.present)
        alpha = "-" if self.alpha is None else f"{self.alpha:g}"
        return f"{self.group.native}[{parts}] r={self.rank} a={alpha} {self.layout}"


@dataclass
class Built:
    """A synthetic LoRA: the state dict plus what went into it (for messages and tests)."""

    state_dict: dict[str, torch.Tensor]
    format: str
    arch: str
    picks: list[Pick]
    stray_keys: list[str] = field(default_factory=list)

    def stems(self) -> list[str]:
        return sorted({k.rsplit(".", 2)[0] for k in self.state_dict})


def _down(gen: torch.Generator, rank: int, group: Group, widen: int = 1) -> torch.Tensor:
    width = group.in_features * widen
    shape = (rank, width, *group.kernel) if group.kernel != (0, 0) else (rank, width)
    fan_in = width * (group.kernel[0] * group.kernel[1] if group.kernel != (0, 0) else 1)
    return torch.randn(shape, generator=gen) / fan_in**0.5


def _up(gen: torch.Generator, rows: int, rank: int, group: Group, scale: float) -> torch.Tensor:
    shape = (rows, rank, 1, 1) if group.kernel != (0, 0) else (rows, rank)
    if _META["on"]:
        return torch.empty(shape, device="meta")
    return torch.randn(shape, generator=gen) * scale


def build(
    fmt: LoraFormat | str,
    arch: str,
    layout: ModelLayout,
    picks: Sequence[Pick],
    *,
    seed: int = 0,
    dtype: torch.dtype | str = torch.float32,
    up_scale: float = 0.5,
    stray: int = 0,
    order: Sequence[int] | None = None,
    meta: bool = False,
    families: Iterable[str] = (),
) -> Built:
    """Build the state dict of ``picks`` in ``fmt``. ``stray``: how many well-formed pairs for
    modules the model does not have to add; ``order``: a permutation of the key order;
    ``meta``: shape-only tensors on the meta device (manifests at full size);
    ``families``: key families to add (the group families are chosen through the picks)."""
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    families = tuple(f for f in families if FAMILIES.get(f) == "key")
    unknown = [f for f in families if f not in fmt.optional]
    if unknown:
        raise ValueError(f"{fmt.name} has no optional famil(ies) {unknown}")
    _META["on"] = meta
    try:
        return _build(fmt, arch, layout, picks, seed, dtype, up_scale, stray, order, families)
    finally:
        _META["on"] = False


def _magnitude(gen: torch.Generator, rows: int, fmt: LoraFormat) -> torch.Tensor:
    """A DoRA magnitude: positive, in the format's stored shape (``rows``: output rows, or
    input columns for the ``input`` convention)."""
    shape = {"row": (rows,), "column": (rows, 1), "input": (1, rows)}[fmt.magnitude_shape]
    if _META["on"]:
        return torch.empty(shape, device="meta")
    return 0.5 + torch.rand(shape, generator=gen)


def _norm_scales(
    fmt: LoraFormat, arch: str, layout: ModelLayout, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Full RMSNorm scales (Flux Control): around 1, as trained ones are."""
    if fmt.norms is None:
        return {}
    out = {}
    for key, (_, _, width) in fmt.norms(arch, layout).items():
        out[key] = (
            torch.empty(width, device="meta")
            if _META["on"]
            else 1.0 + 0.2 * torch.randn(width, generator=gen)
        )
    return out


def _build(
    fmt: LoraFormat | str,
    arch: str,
    layout: ModelLayout,
    picks: Sequence[Pick],
    seed: int,
    dtype: torch.dtype | str,
    up_scale: float,
    stray: int,
    order: Sequence[int] | None,
    families: tuple[str, ...] = (),
) -> Built:
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    biases = "biases" in families
    for pick in picks:
        sd.update(_emit(fmt, arch, layout, pick, gen, up_scale, biases))
    sd.update(_norm_scales(fmt, arch, layout, gen))
    strays: list[str] = []
    if "t5" in families:
        t5 = _t5_pairs(fmt, picks, gen, up_scale)
        strays += list(t5)
        sd.update(t5)
    for n in range(stray):
        stray_sd = _stray(fmt, arch, layout, picks, n, gen, up_scale)
        strays += list(stray_sd)
        sd.update(stray_sd)
    sd = {k: v.to(dtype).contiguous() for k, v in sd.items()}
    if order is not None:
        keys = list(sd)
        sd = {keys[i]: sd[keys[i]] for i in order}
    return Built(sd, fmt.name, arch, list(picks), strays)


def _alpha_tensor(value: float) -> torch.Tensor:
    return torch.tensor(float(value), device="meta" if _META["on"] else "cpu")


def _bias(gen: torch.Generator, rows: int, scale: float) -> torch.Tensor:
    """An up-matrix bias (peft ``lora_bias``): one value per output row."""
    if _META["on"]:
        return torch.empty(rows, device="meta")
    return torch.randn(rows, generator=gen) * scale


def _t5_pairs(
    fmt: LoraFormat, picks: Sequence[Pick], gen: torch.Generator, up_scale: float
) -> dict[str, torch.Tensor]:
    """OneTrainer's T5 pairs (real T5-XXL widths in shape-only manifests, small otherwise),
    with the rank / alpha of the first pick."""
    rank = picks[0].rank if picks else 4
    alpha = picks[0].alpha if picks else None
    out: dict[str, torch.Tensor] = {}
    for stem, layer in t5_layers("full" if _META["on"] else "tiny").items():
        group = _layer_group(stem, layer)
        out[stem + fmt.suffixes.down] = _down(gen, rank, group)
        out[stem + fmt.suffixes.up] = _up(gen, layer.out_features, rank, group, up_scale)
        if alpha is not None and fmt.suffixes.alpha and fmt.alpha:
            out[stem + fmt.suffixes.alpha] = _alpha_tensor(alpha)
    return out


def _layer_group(name: str, layer: Layer) -> Group:
    return Group("text_encoder_2", name, (name,), (layer.out_features,), layer.in_features)


def _emit(
    fmt: LoraFormat,
    arch: str,
    layout: ModelLayout,
    pick: Pick,
    gen: torch.Generator,
    up_scale: float,
    biases: bool = False,
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    sfx = fmt.suffixes
    group = pick.group
    if fmt.native_fused and group.fused:
        stem = fmt.stem(arch, group, layout)
        if stem is None:
            raise ValueError(f"{fmt.name} cannot express {group.native}")
        slices = group.row_slices()
        if pick.layout == "stacked":
            k = len(pick.present)
            down = torch.cat([_down(gen, pick.rank, group) for _ in range(k)])
            up = torch.zeros(
                group.out_features, k * pick.rank, *((1, 1) if group.kernel != (0, 0) else ())
            )
            for j, part in enumerate(p for p in group.parts if p in pick.present):
                rows = slices[part]
                block = _up(gen, rows.stop - rows.start, pick.rank, group, up_scale)
                up[rows, j * pick.rank : (j + 1) * pick.rank] = block
        else:
            down = _down(gen, pick.rank, group)
            up = _up(gen, group.out_features, pick.rank, group, up_scale)
            for part in group.parts:
                if part not in pick.present:
                    up[slices[part]] = 0
        out[stem + sfx.down] = down
        out[stem + sfx.up] = up
        if pick.alpha is not None and sfx.alpha and fmt.alpha:
            out[stem + sfx.alpha] = _alpha_tensor(pick.alpha)
        if fmt.magnitude:
            out[stem + fmt.magnitude] = _magnitude(gen, _magnitude_rows(fmt, group), fmt)
        if biases and fmt.bias:
            out[stem + fmt.bias] = _bias(gen, group.out_features, up_scale)
        return out
    singles = split_group(group, pick.present) if group.fused else [group]
    for single in singles:
        stem = fmt.stem(arch, single, layout)
        if stem is None:
            raise ValueError(f"{fmt.name} cannot express {single.native}")
        out[stem + sfx.down] = _down(gen, pick.rank, single, fmt.widen(single.parts[0]))
        out[stem + sfx.up] = _up(gen, single.out_features, pick.rank, single, up_scale)
        if pick.alpha is not None and sfx.alpha and fmt.alpha:
            out[stem + sfx.alpha] = _alpha_tensor(pick.alpha)
        if fmt.magnitude:
            out[stem + fmt.magnitude] = _magnitude(gen, _magnitude_rows(fmt, single), fmt)
        if biases and fmt.bias:
            out[stem + fmt.bias] = _bias(gen, single.out_features, up_scale)
    return out


def _magnitude_rows(fmt: LoraFormat, group: Group) -> int:
    """Length of a DoRA magnitude: output rows, or input columns (``input`` convention)."""
    if fmt.magnitude_shape == "input":
        if group.fused:
            raise ValueError(f"{fmt.name}: a per-input-column magnitude of a fused layer")
        return group.in_features
    return group.out_features


def stray_group(group: Group, n: int = 0) -> Group:
    """A group shaped like ``group`` for a module that does not exist (``...bogus<n>``)."""
    native = group.native.rsplit(".", 1)[0] + f".bogus{n}"
    part = group.parts[0].rsplit(".", 1)[0] + f".bogus{n}"
    return Group(
        group.component, native, (part,), (group.widths[0],), group.in_features, group.kernel
    )


def _stray(
    fmt: LoraFormat,
    arch: str,
    layout: ModelLayout,
    picks: Sequence[Pick],
    n: int,
    gen: torch.Generator,
    up_scale: float,
) -> dict[str, torch.Tensor]:
    """A sibling of a real stem whose last name component is ``bogus<n>``: well-formed in
    the format, naming a module the model does not have."""
    base = picks[n % len(picks)].group
    real = next(iter(_emit(fmt, arch, layout, Pick(base, base.parts, 1), gen, up_scale)))
    stem = (
        real[: -len(fmt.suffixes.down)]
        if real.endswith(fmt.suffixes.down)
        else real.rsplit(".", 2)[0]
    )
    sep = "." if "." in stem else "_"
    stem = stem.rsplit(sep, 1)[0] + f"{sep}bogus{n}"
    fake = stray_group(split_group(base)[0] if base.fused else base, n)
    return {
        stem + fmt.suffixes.down: _down(gen, 2, fake),
        stem + fmt.suffixes.up: _up(gen, fake.out_features, 2, fake, up_scale),
    }


# --------------------------------------------------------------------------- files
def write_safetensors(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write a LoRA file; metadata values that are not strings are JSON-encoded (as
    kohya's ``ss_*`` fields and diffusers' ``lora_adapter_metadata`` are)."""
    from safetensors.torch import save_file

    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata=meta or None)


def kohya_metadata(picks: Iterable[Pick]) -> dict[str, str]:
    """The metadata sd-scripts writes that loaders sometimes read (rank / alpha)."""
    picks = list(picks)
    rank = picks[0].rank if picks else 4
    alpha = picks[0].alpha if picks and picks[0].alpha is not None else rank
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
    }
