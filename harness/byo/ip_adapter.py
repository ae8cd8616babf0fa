"""Bring-your-own IP-Adapter files for ``adapter-compat check``.

Two layers, so the outer tool works without torch and the cells do the rest:

* ``detect_file`` / ``describe_file`` (stdlib only, on the safetensors header the outer
  tool read): is it an IP-Adapter release file, which image_proj variant, which denoiser
  it targets (from the ``to_k_ip`` widths: 768 -> SD1.5, 2048 -> SDXL, biases -> Flux,
  ``norm_ip`` -> SD3) and how wide an image encoder it needs;
* in a cell (``suites/ip_adapter/test_byo.py``): ``validate`` — the converter's template
  report (missing / unexpected / wrong-shape keys against the real SD1.5 / SDXL UNet
  layout) — and ``load_check`` — the installed diffusers loads the file into a denoiser of
  the real architecture built on the meta device (no GBs of weights), through the
  ``_load_ip_adapter_weights`` step every ``load_ip_adapter`` ends in, with
  ``low_cpu_mem_usage`` off and on. The loader's strict ``load_state_dict`` calls make
  every missing or unexpected key an error there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: image_proj sentinel keys in diffusers' branch order (``base`` also has norm.weight);
#: kept equal to harness.convert.ip_adapter.DETECT_ORDER by a self-test.
SENTINELS: tuple[tuple[str, str], ...] = (
    ("base", "proj.weight"),
    ("full-face", "proj.3.weight"),
    ("faceid-plus", "perceiver_resampler.proj_in.weight"),
    ("faceid", "norm.weight"),
    ("plus", "latents"),
)

#: Cross-attention width of the UNet ``to_k_ip`` layers -> architecture.
UNET_BY_CROSS_DIM = {768: "sd15", 2048: "sdxl"}

#: Variant -> (image_proj key, axis) holding the image encoder width it reads.
ENCODER_WIDTH_KEYS = {
    "base": ("proj.weight", 1),
    "flux": ("proj.weight", 1),
    "plus": ("proj_in.weight", 1),
    "sd3": ("proj_in.weight", 1),
    "full-face": ("proj.0.weight", 1),
    "faceid-plus": ("perceiver_resampler.proj_in.weight", 1),
}

#: Flux files from XLabs use other prefixes (diffusers' Flux loader accepts both).
PREFIXES = {
    "image_proj.": "image_proj",
    "ip_adapter.": "ip_adapter",
    "ip_adapter_proj_model.": "image_proj",
    "double_blocks.": "ip_adapter",
}

#: Real denoiser configs (meta-device load checks) beyond the UNets in the converter.
REAL_FLUX = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": [16, 56, 56],
}


@dataclass
class Description:
    """What an IP-Adapter file is, read from its keys and shapes."""

    variant: str | None
    arch: str | None  # sd15 | sdxl | flux | sd3 | None
    encoder_width: int | None
    ip_ids: list[int] = field(default_factory=list)
    n_keys: int = 0

    def line(self) -> str:
        ids = self.ip_ids
        shown = ", ".join(map(str, ids[:4])) + (", ..." if len(ids) > 4 else "")
        return (
            f"IP-Adapter ({self.variant or 'unknown'} image_proj) for {self.arch or 'an unknown denoiser'}, "
            f"image encoder width {self.encoder_width or '?'}, {len(ids)} attention slots ({shown}), "
            f"{self.n_keys} tensors"
        )


def split_keys(keys: Sequence[str]) -> dict[str, list[str]]:
    """Flat file keys -> {"image_proj": [...], "ip_adapter": [...]} (prefix removed)."""
    out: dict[str, list[str]] = {"image_proj": [], "ip_adapter": []}
    for key in keys:
        for prefix, section in PREFIXES.items():
            if key.startswith(prefix):
                out[section].append(key[len(prefix) :])
                break
    return out


def describe_shapes(
    image_proj: Mapping[str, Sequence[int]], ip: Mapping[str, Sequence[int]]
) -> Description:
    """Describe a release checkpoint from key -> shape maps of its two sections."""
    variant = next((name for name, key in SENTINELS if key in image_proj), None)
    arch = None
    if any(".norm_ip." in k for k in ip):
        arch, variant = "sd3", "sd3"
    elif any(k.endswith("to_k_ip.bias") or "ip_adapter_double_stream" in k for k in ip):
        arch, variant = "flux", "flux"
    else:
        key = next((k for k in ip if k.endswith("to_k_ip.weight")), None)
        if key is not None and len(ip[key]) == 2:
            arch = UNET_BY_CROSS_DIM.get(int(ip[key][1]))
    width = None
    if variant in ENCODER_WIDTH_KEYS:
        key, axis = ENCODER_WIDTH_KEYS[variant]
        if key in image_proj and len(image_proj[key]) > axis:
            width = int(image_proj[key][axis])
    ids = sorted({int(k.split(".", 1)[0]) for k in ip if k.split(".", 1)[0].isdigit()})
    return Description(variant, arch, width, ids, len(image_proj) + len(ip))


def detect_file(user_file: Any) -> bool:
    """An IP-Adapter release file has ``image_proj.*`` and ``ip_adapter.*`` keys (or the
    XLabs Flux prefixes); stdlib only."""
    sections = split_keys(list(user_file.keys))
    return bool(sections["image_proj"]) and bool(sections["ip_adapter"])


def describe_file(user_file: Any) -> str:
    """One line for the terminal; stdlib only."""
    shapes = dict(user_file.shapes)
    nested: dict[str, dict[str, Sequence[int]]] = {"image_proj": {}, "ip_adapter": {}}
    for key in shapes:
        for prefix, section in PREFIXES.items():
            if key.startswith(prefix):
                nested[section][key[len(prefix) :]] = shapes[key]
                break
    return describe_shapes(nested["image_proj"], nested["ip_adapter"]).line()


# -- in a cell (torch, safetensors, diffusers) -----------------------------------------------
def describe(path: str | Path) -> Description:
    from harness.inputs.checkpoints.ip_adapter.files import load_release

    release = load_release(path)
    return describe_shapes(
        {k: tuple(v.shape) for k, v in release["image_proj"].items()},
        {k: tuple(v.shape) for k, v in release["ip_adapter"].items()},
    )


def validate(path: str | Path, arch: str | None = None) -> Any:
    """The converter's template report for a release file (SD1.5 / SDXL UNets)."""
    from harness.convert import ip_adapter as conv
    from harness.inputs.checkpoints.ip_adapter.files import load_release

    info = describe(path)
    arch = arch or info.arch
    if arch not in conv.REAL_UNETS:
        raise ValueError(f"no template for {arch!r}; known: {', '.join(conv.REAL_UNETS)}")
    release = load_release(path)
    report = conv.Report(template=f"{arch} UNet", variant=info.variant, numbering="release")
    if info.variant is None:
        report.notes.append("image_proj has no known sentinel key")
        return report
    template, notes = conv.template_for(
        conv.arch_target(arch), info.variant, release["image_proj"], release["ip_adapter"]
    )
    report.notes += notes
    report.converted = info.n_keys
    return conv.validate(release, template, report)


def meta_denoiser(arch: str) -> Any:
    """A denoiser of the real architecture on the meta device (no weights allocated)."""
    import diffusers
    import torch

    from harness.cell.classify import Unsupported
    from harness.convert.ip_adapter import REAL_UNETS

    with torch.device("meta"):
        if arch in REAL_UNETS:
            return diffusers.UNet2DConditionModel(**REAL_UNETS[arch])
        if arch == "flux":
            if not hasattr(diffusers, "FluxTransformer2DModel"):
                raise Unsupported("FluxTransformer2DModel does not exist in this version")
            return diffusers.FluxTransformer2DModel(**REAL_FLUX)
    raise Unsupported(f"no meta-device load check for {arch!r} adapters yet")


def load_check(path: str | Path, arch: str | None = None, low_cpu_mem_usage: bool = False) -> None:
    """Load the file with the installed diffusers into ``meta_denoiser(arch)`` (raises
    whatever the library raises; call inside ``compat.library_call``)."""
    from harness.cell.classify import Unsupported
    from harness.inputs.checkpoints.ip_adapter.files import load_release

    arch = arch or describe(path).arch
    if arch is None:
        raise Unsupported("cannot tell which denoiser this IP-Adapter is for")
    model = meta_denoiser(arch)
    if not hasattr(model, "_load_ip_adapter_weights"):
        raise Unsupported(f"{type(model).__name__} has no IP-Adapter loader in this version")
    release = dict(load_release(path))
    kwargs = {"low_cpu_mem_usage": True} if low_cpu_mem_usage else {}
    model._load_ip_adapter_weights([release], **kwargs)
