"""Training-layout IP-Adapter checkpoint -> release layout, with a validation report.

A training run saves ``unet.*`` (frozen, dropped here), ``image_proj_model.*``
(-> ``image_proj``) and ``adapter_modules.<i>.*`` (-> ``ip_adapter.<id>.*``). The release
id is the processor's position in ``unet.attn_processors`` order (1, 3, 5, ... for
cross-attention); ``i`` is either that position already (``processor`` numbering: the
ModuleList held every processor, as in IP-Adapter's ``tutorial_train.py`` and FaceID) or
an index over the cross-attention processors only (``cross`` numbering). ``auto`` picks
the numbering under which the trained IP layers land on the template's IP ids.

The report compares the converted checkpoint with a *template* — the expected key ->
shape layout of the target: a real release file (``--template``), or one derived from the
target UNet's config (``--arch sd15|sdxl``, or a live model in the suites) with the free
widths (encoder width, resampler width, LoRA rank) read from the checkpoint itself — and
lists missing keys, unexpected keys and shape mismatches. A checkpoint with any of them
would not load (or load wrong), so ``ok`` is False and the CLI refuses to write it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.inputs.checkpoints.ip_adapter.targets import Target, unet_target_from_config
from harness.inputs.checkpoints.ip_adapter.variants import VARIANTS, Dims, Encoder, release_shapes

#: Training-key prefixes and where they go ("" = dropped).
PREFIXES: dict[str, str] = {
    "unet.": "",
    "image_proj_model.": "image_proj",
    "adapter_modules.": "ip_adapter",
}

#: Variant detection, in diffusers' branch order (base also has ``norm.weight``).
DETECT_ORDER = ("base", "full-face", "faceid-plus", "faceid", "plus")

NUMBERINGS = ("auto", "processor", "cross")

#: Real UNet configs (the parts that fix processor order and widths) for ``--arch``.
REAL_UNETS: dict[str, dict[str, Any]] = {
    "sd15": {
        "block_out_channels": [320, 640, 1280, 1280],
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "layers_per_block": 2,
        "transformer_layers_per_block": 1,
        "cross_attention_dim": 768,
    },
    "sdxl": {
        "block_out_channels": [320, 640, 1280],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "layers_per_block": 2,
        "transformer_layers_per_block": [1, 2, 10],
        "cross_attention_dim": 2048,
    },
}

Manifest = dict[str, dict[str, tuple[int, ...]]]


@dataclass
class Report:
    """What the conversion did and how the result compares with the template."""

    template: str
    variant: str | None = None
    numbering: str = ""
    dropped: int = 0  # unet.* keys left out
    converted: int = 0
    missing: list[str] = field(default_factory=list)  # "ip_adapter.7.to_v_ip.weight"
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )  # (key, found, expected)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # release key -> training key

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def problems(self) -> list[str]:
        """One line per problem, each naming the release key (and its training key)."""
        out = [f"missing: {k}{self._from(k, 'training key')}" for k in self.missing]
        out += [f"unexpected: {k}{self._from(k)}" for k in self.unexpected]
        out += [
            f"shape mismatch: {k}{self._from(k)} is {list(found)}, template wants {list(want)}"
            for k, found, want in self.shape_mismatches
        ]
        return out

    def _from(self, key: str, label: str = "from") -> str:
        src = self.sources.get(key)
        return f" ({label} {src})" if src and src != key else ""

    def render(self) -> str:
        lines = [
            f"template: {self.template}",
            f"variant: {self.variant or 'unknown'}; adapter_modules numbering: {self.numbering}",
            f"converted {self.converted} keys; dropped {self.dropped} unet.* keys",
        ]
        lines += [f"note: {n}" for n in self.notes]
        problems = self.problems()
        lines.append(
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.shape_mismatches)} shape mismatches"
        )
        lines += [f"  {p}" for p in problems]
        lines.append("result: OK, loadable" if self.ok else "result: NOT loadable as is")
        return "\n".join(lines)


# -- detection and inference ---------------------------------------------------------------
def detect_variant(image_proj: Mapping[str, Any]) -> str | None:
    for name in DETECT_ORDER:
        if VARIANTS[name].sentinel in image_proj:
            return name
    return None


_LORA_DOWN = re.compile(r"\.to_q_lora\.down\.weight$")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def infer_widths(
    variant: str, image_proj: Mapping[str, Any], ip: Mapping[str, Any]
) -> tuple[Encoder, Dims, list[str]]:
    """The free widths of a checkpoint (encoder width, resampler width, LoRA rank...), read
    from its own tensors, so the template can demand everything else. Returns notes for
    widths that could not be read (their defaults are used)."""
    notes: list[str] = []
    defaults = Dims()

    def dim(key: str, axis: int, default: int) -> int:
        value = image_proj.get(key)
        if value is None or len(value.shape) <= axis:
            notes.append(f"cannot read a width from image_proj.{key}; assuming {default}")
            return default
        return int(value.shape[axis])

    rank = next((int(v.shape[0]) for k, v in ip.items() if _LORA_DOWN.search(k)), 0)
    depth = len({m.group(1) for k in image_proj if (m := _LAYER.search(k))}) or 4
    kw: dict[str, Any] = {"lora_rank": rank or defaults.lora_rank, "resampler_depth": depth}
    if variant == "base":
        return Encoder("clip", dim("proj.weight", 1, 1024), 0), Dims(**kw), notes
    if variant == "full-face":
        return Encoder("clip", None, dim("proj.0.weight", 1, 1280)), Dims(**kw), notes
    if variant == "plus":
        kw |= {
            "resampler_dim": dim("latents", 2, 768),
            "plus_queries": dim("latents", 1, 16),
            "resampler_heads": max(dim("layers.0.0.to_q.weight", 0, 64) // 64, 1),
        }
        return Encoder("clip", None, dim("proj_in.weight", 1, 1280)), Dims(**kw), notes
    if variant == "faceid":
        id_dim = dim("proj.0.weight", 1, 512)
        kw |= {"id_dim": id_dim, "faceid_mult": max(dim("proj.0.weight", 0, 1024) // id_dim, 1)}
        norm = dim("norm.weight", 0, 768)
        kw["faceid_tokens"] = max(dim("proj.2.weight", 0, 4 * norm) // norm, 1)
        return Encoder("id", None, 0), Dims(**kw), notes
    if variant == "faceid-plus":
        p = "perceiver_resampler."
        kw |= {
            "id_dim": dim("proj.0.weight", 1, 512),
            "resampler_dim": dim(p + "proj_in.weight", 0, 768),
            "resampler_heads": max(dim(p + "layers.0.0.to_q.weight", 0, 768) // 64, 1),
        }
        return Encoder("clip", None, dim(p + "proj_in.weight", 1, 1280)), Dims(**kw), notes
    raise ValueError(f"no width inference for variant {variant!r}")


def template_for(
    target: Target, variant: str, image_proj: Mapping[str, Any], ip: Mapping[str, Any]
) -> tuple[Manifest, list[str]]:
    """Expected layout for ``target`` with widths read from the checkpoint."""
    encoder, dims, notes = infer_widths(variant, image_proj, ip)
    return release_shapes(target, VARIANTS[variant], encoder, dims), notes


def template_from_release(release: Mapping[str, Mapping[str, Any]]) -> Manifest:
    """Key -> shape layout of a real release checkpoint used as ``--template``."""
    return {
        s: {k: tuple(v.shape) for k, v in release.get(s, {}).items()}
        for s in ("image_proj", "ip_adapter")
    }


def arch_target(arch: str) -> Target:
    if arch not in REAL_UNETS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(REAL_UNETS)}")
    return unet_target_from_config(REAL_UNETS[arch])


# -- numbering -----------------------------------------------------------------------------
def release_id(index: int, numbering: str, ip_ids: Sequence[int]) -> int | None:
    """Release id of ``adapter_modules.<index>`` under ``numbering`` (``ip_ids``: the
    template's IP ids in order). ``None`` when the index has no slot."""
    if numbering == "processor":
        return index
    return ip_ids[index] if 0 <= index < len(ip_ids) else None


def _ip_ids(manifest: Manifest) -> list[int]:
    ids = {int(k.split(".", 1)[0]) for k in manifest.get("ip_adapter", {}) if ".to_k_ip." in k}
    return sorted(ids)


def choose_numbering(indices: Sequence[int], lora: bool, ip_ids: Sequence[int]) -> str:
    """The numbering under which more trained IP layers land on template IP ids."""
    if lora:
        return "processor"
    wanted = set(ip_ids)
    score = {
        mode: sum(release_id(i, mode, ip_ids) in wanted for i in indices)
        for mode in ("processor", "cross")
    }
    return "processor" if score["processor"] > score["cross"] else "cross"


# -- conversion ----------------------------------------------------------------------------
def convert(
    state: Mapping[str, Any],
    target: Target | None = None,
    template: Manifest | None = None,
    numbering: str = "auto",
    template_name: str = "",
) -> tuple[dict[str, dict[str, Any]], Report]:
    """Re-key a training checkpoint and validate it. Give a live/derived ``target`` (the
    template is derived from it and the checkpoint's widths) or a ``template`` manifest."""
    if numbering not in NUMBERINGS:
        raise ValueError(f"numbering must be one of {', '.join(NUMBERINGS)}")
    if target is None and template is None:
        raise ValueError("convert needs a target model or a template")
    report = Report(template=template_name or ("file" if template else target.family))
    image_proj: dict[str, Any] = {}
    trained: list[tuple[int, str, Any, str]] = []  # (index, rest, tensor, training key)
    unknown: list[str] = []
    for key, value in state.items():
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
        elif PREFIXES[prefix] == "":
            report.dropped += 1
        elif PREFIXES[prefix] == "image_proj":
            image_proj[key[len(prefix) :]] = value
            report.sources[f"image_proj.{key[len(prefix) :]}"] = key
        else:
            index, _, rest = key[len(prefix) :].partition(".")
            if not index.isdigit() or not rest:
                unknown.append(key)
                continue
            trained.append((int(index), rest, value, key))
    report.variant = detect_variant(image_proj)
    if template is None:
        if report.variant is None:
            report.notes.append("image_proj has no known sentinel key; cannot derive a template")
            template = {"image_proj": {}, "ip_adapter": {}}
        else:
            ip_like = {f"{i}.{rest}": v for i, rest, v, _ in trained}
            template, notes = template_for(target, report.variant, image_proj, ip_like)
            report.notes += notes
    ip_ids = _ip_ids(template)
    lora = any("_lora." in rest for _, rest, _, _ in trained)
    ip_indices = sorted({i for i, rest, _, _ in trained if rest.startswith("to_k_ip.")})
    report.numbering = (
        choose_numbering(ip_indices, lora, ip_ids) if numbering == "auto" else numbering
    )
    ip: dict[str, Any] = {}
    for index, rest, value, key in trained:
        rid = release_id(index, report.numbering, ip_ids)
        if rid is None:
            unknown.append(key)
            continue
        ip[f"{rid}.{rest}"] = value
        report.sources[f"ip_adapter.{rid}.{rest}"] = key
    release = {"image_proj": image_proj, "ip_adapter": dict(sorted(ip.items(), key=_natural))}
    report.converted = len(image_proj) + len(ip)
    validate(release, template, report)
    inverse = {}
    for index in range(max(len(ip_ids), max(ip_ids, default=0) + 1)):
        rid = release_id(index, report.numbering, ip_ids)
        if rid is not None:
            inverse.setdefault(rid, index)
    for key in report.missing:
        section, rid, rest = key.split(".", 2) if key.startswith("ip_adapter.") else ("", "", "")
        if section and rid.isdigit() and int(rid) in inverse:
            report.sources[key] = f"adapter_modules.{inverse[int(rid)]}.{rest}"
        elif key.startswith("image_proj."):
            report.sources[key] = "image_proj_model." + key.removeprefix("image_proj.")
    for key in unknown:
        report.unexpected.append(key)
        report.sources.setdefault(key, key)
    return release, report


def validate(
    release: Mapping[str, Mapping[str, Any]], template: Manifest, report: Report
) -> Report:
    """Fill ``report`` with missing / unexpected / wrong-shape keys of ``release``."""
    for section in ("image_proj", "ip_adapter"):
        have = release.get(section, {})
        want = template.get(section, {})
        for key in want:
            if key not in have:
                report.missing.append(f"{section}.{key}")
        for key, value in have.items():
            if key not in want:
                report.unexpected.append(f"{section}.{key}")
            elif tuple(value.shape) != tuple(want[key]):
                report.shape_mismatches.append(
                    (f"{section}.{key}", tuple(value.shape), tuple(want[key]))
                )
    return report


def _natural(item: tuple[str, Any]) -> tuple[Any, ...]:
    return _natural_key(item[0])


def _natural_key(key: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key "2.x" < "10.x"; numbers and words never compared with each other."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))


# -- files ---------------------------------------------------------------------------------
def read_training(path: str | Path) -> dict[str, Any]:
    """Flat training state dict: safetensors, or a ``.bin`` read with weights_only=True
    (accelerate / trainer wrappers that nest it under ``state_dict`` / ``module`` are
    unwrapped)."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    data = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "module", "model"):
        if isinstance(data, Mapping) and set(data) == {wrapper}:
            data = data[wrapper]
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"{path}: not a flat state dict of tensors")
    return dict(data)
