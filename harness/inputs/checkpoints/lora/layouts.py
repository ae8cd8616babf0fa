"""Model layouts and the naming tables that relate native (BFL / SGM) names to diffusers.

Everything a LoRA format needs to know about a model is here, as data:

* :class:`ComponentLayout` - the LoRA-targetable layers of one pipeline component (module
  path -> in/out features), read from a real module (tiny, or full size on the meta device)
  or from a committed manifest, so writers and the reference never need the model itself;
* :data:`FLUX_DOUBLE` / :data:`FLUX_SINGLE` / :data:`FLUX_GLOBAL` - the BFL <-> diffusers
  map of Flux, including which BFL layers are *fused* (``img_attn.qkv`` = to_q|to_k|to_v,
  ``linear1`` = to_q|to_k|to_v|proj_mlp) and the one row permutation (the final
  ``adaLN_modulation`` stores shift|scale where diffusers stores scale|shift);
* :func:`sgm_unet_map` - kohya's SDXL names (the SGM/LDM UNet: ``input_blocks.4.1``) for a
  diffusers UNet config.

A :class:`Group` is the unit a LoRA file stores one down/up pair for: one module in most
formats, several stacked output row-blocks for the fused BFL layers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Components a LoRA can target, per architecture (pipeline attribute names).
ARCH_COMPONENTS: dict[str, tuple[str, ...]] = {
    "sd15": ("unet", "text_encoder"),
    "sdxl": ("unet", "text_encoder", "text_encoder_2"),
    "sd3": ("transformer", "text_encoder", "text_encoder_2"),
    "flux": ("transformer", "text_encoder"),
}

#: The denoiser component of each architecture.
DENOISER: dict[str, str] = {
    "sd15": "unet",
    "sdxl": "unet",
    "sd3": "transformer",
    "flux": "transformer",
}


@dataclass(frozen=True)
class Layer:
    """A LoRA-targetable layer: Linear, or a Conv2d whose LoRA is a 1x1 / kxk pair."""

    in_features: int
    out_features: int
    kernel: tuple[int, int] = (0, 0)  # (0, 0) for Linear, (kh, kw) for Conv2d

    @property
    def conv(self) -> bool:
        return self.kernel != (0, 0)

    def to_json(self) -> list[Any]:
        return [self.in_features, self.out_features, list(self.kernel)]

    @classmethod
    def from_json(cls, data: list[Any]) -> Layer:
        return cls(int(data[0]), int(data[1]), tuple(data[2]))  # type: ignore[arg-type]


@dataclass
class ComponentLayout:
    """Targetable layers of one component, plus the config facts naming rules need.

    Layer paths are *canonical*: the names LoRA files in the wild use. transformers 5
    dropped CLIP's ``text_model`` wrapper module, so there the canonical path
    ``text_model.encoder.layers.0...`` and the module's real path differ; ``actual`` maps
    canonical -> real path where they do (empty otherwise)."""

    layers: dict[str, Layer]
    config: dict[str, Any] = field(default_factory=dict)
    actual: dict[str, str] = field(default_factory=dict)

    def real_path(self, canonical: str) -> str:
        return self.actual.get(canonical, canonical)

    def __contains__(self, path: str) -> bool:
        return path in self.layers

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "layers": {k: v.to_json() for k, v in self.layers.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ComponentLayout:
        """Committed layouts are canonical; ``actual`` is a property of a live module."""
        return cls({k: Layer.from_json(v) for k, v in data["layers"].items()}, dict(data["config"]))


ModelLayout = dict[str, ComponentLayout]

#: Config keys worth keeping with a layout (naming rules depend on them).
_CONFIG_KEYS = (
    "attention_head_dim",
    "layers_per_block",
    "num_layers",
    "num_single_layers",
    "down_block_types",
    "up_block_types",
)


#: Text-encoder classes whose canonical (file) names sit under ``text_model.``.
_TEXT_MODEL_WRAPPED = ("CLIPTextModel", "CLIPTextModelWithProjection")


def canonical_prefix(module: Any) -> str:
    """``text_model.`` for a CLIP text encoder built without that wrapper (transformers 5)."""
    if type(module).__name__ in _TEXT_MODEL_WRAPPED and not hasattr(module, "text_model"):
        return "text_model."
    return ""


def layout_of(module: Any) -> ComponentLayout:
    """Read the Linear / Conv2d layers of a torch module (works on the meta device)."""
    import torch

    layers: dict[str, Layer] = {}
    actual: dict[str, str] = {}
    prefix = canonical_prefix(module)
    for real, sub in module.named_modules():
        if not real:
            continue
        name = real
        if prefix and not real.startswith(("text_projection",)):
            name = prefix + real
            actual[name] = real
        if type(sub) is torch.nn.Linear:
            layers[name] = Layer(sub.in_features, sub.out_features)
        elif type(sub) is torch.nn.Conv2d and sub.groups == 1:
            layers[name] = Layer(sub.in_channels, sub.out_channels, tuple(sub.kernel_size))
    config = getattr(module, "config", None)
    facts: dict[str, Any] = {}
    if config is not None:
        for key in _CONFIG_KEYS:
            value = getattr(config, key, None) if not isinstance(config, dict) else config.get(key)
            if value is not None:
                facts[key] = list(value) if isinstance(value, (list, tuple)) else value
    if hasattr(module, "down_blocks"):
        facts["unet_blocks"] = _unet_block_facts(module)
    actual = {k: v for k, v in actual.items() if k in layers}
    return ComponentLayout(layers, facts, actual)


def _unet_block_facts(unet: Any) -> dict[str, Any]:
    """Per block: number of resnets, has attentions, has a down/upsampler (SGM numbering)."""

    def describe(block: Any) -> dict[str, Any]:
        return {
            "resnets": len(block.resnets),
            "attentions": len(getattr(block, "attentions", None) or []),
            "sampler": bool(
                getattr(block, "downsamplers", None) or getattr(block, "upsamplers", None)
            ),
        }

    return {
        "down": [describe(b) for b in unet.down_blocks],
        "up": [describe(b) for b in unet.up_blocks],
        "mid_attentions": len(getattr(unet.mid_block, "attentions", None) or []),
    }


def model_layout(pipe: Any, arch: str) -> ModelLayout:
    """Layouts of every LoRA-targetable component of a pipeline that has it."""
    out: ModelLayout = {}
    for name in ARCH_COMPONENTS[arch]:
        component = getattr(pipe, name, None)
        if component is not None:
            out[name] = layout_of(component)
    return out


def dump_layout(layout: ModelLayout) -> str:
    return json.dumps({k: v.to_json() for k, v in layout.items()}, sort_keys=True)


# --------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """One down/up pair in a file: ``parts`` are diffusers module paths (component-relative)
    whose output rows are stacked in the up matrix, in order. ``native`` is the group's name
    in the native naming of its family (a BFL path for Flux, the module path otherwise)."""

    component: str
    native: str
    parts: tuple[str, ...]
    widths: tuple[int, ...]
    in_features: int
    kernel: tuple[int, int] = (0, 0)
    permute: str | None = None  # "swap_halves": native row order is the diffusers halves swapped

    @property
    def fused(self) -> bool:
        return len(self.parts) > 1

    @property
    def out_features(self) -> int:
        return sum(self.widths)

    def row_slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for part, width in zip(self.parts, self.widths, strict=True):
            out[part] = slice(start, start + width)
            start += width
        return out


# BFL (reference implementation) names of Flux layers -> diffusers module suffixes. A tuple
# of several suffixes is a fused layer whose output rows are the parts' rows in that order.
FLUX_DOUBLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
    ("img_attn.proj", ("attn.to_out.0",)),
    ("img_mlp.0", ("ff.net.0.proj",)),
    ("img_mlp.2", ("ff.net.2",)),
    ("img_mod.lin", ("norm1.linear",)),
    ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
    ("txt_attn.proj", ("attn.to_add_out",)),
    ("txt_mlp.0", ("ff_context.net.0.proj",)),
    ("txt_mlp.2", ("ff_context.net.2",)),
    ("txt_mod.lin", ("norm1_context.linear",)),
)
FLUX_SINGLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("linear1", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")),
    ("linear2", ("proj_out",)),
    ("modulation.lin", ("norm.linear",)),
)
#: Layers outside the blocks: (BFL path, diffusers path, row permutation).
FLUX_GLOBAL: tuple[tuple[str, str, str | None], ...] = (
    ("img_in", "x_embedder", None),
    ("txt_in", "context_embedder", None),
    ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1", None),
    ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2", None),
    ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1", None),
    ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2", None),
    ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1", None),
    ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2", None),
    ("final_layer.linear", "proj_out", None),
    ("final_layer.adaLN_modulation.1", "norm_out.linear", "swap_halves"),
)


#: Flux's per-head RMSNorm scales (what Flux Control LoRAs carry in full): (BFL block prefix,
#: diffusers block prefix, ((BFL suffix, diffusers suffix), ...)).
FLUX_NORMS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "double_blocks",
        "transformer_blocks",
        (
            ("img_attn.norm.query_norm.scale", "attn.norm_q.weight"),
            ("img_attn.norm.key_norm.scale", "attn.norm_k.weight"),
            ("txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"),
            ("txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"),
        ),
    ),
    (
        "single_blocks",
        "single_transformer_blocks",
        (
            ("norm.query_norm.scale", "attn.norm_q.weight"),
            ("norm.key_norm.scale", "attn.norm_k.weight"),
        ),
    ),
)


def flux_norms(layout: ComponentLayout) -> list[tuple[str, str, int]]:
    """(BFL key, diffusers parameter path, width) of every q/k RMSNorm scale; the width is
    the head dimension (``attention_head_dim`` in the layout's config)."""
    width = layout.config.get("attention_head_dim")
    if not isinstance(width, int):
        raise ValueError("Flux layout has no attention_head_dim; rebuild it with layout_of()")
    out = []
    for bfl_prefix, diff_prefix, table in FLUX_NORMS:
        for i in range(_block_count(layout, diff_prefix)):
            for bfl, diff in table:
                out.append((f"{bfl_prefix}.{i}.{bfl}", f"{diff_prefix}.{i}.{diff}", width))
    return out


def _block_count(layout: ComponentLayout, prefix: str) -> int:
    ids = {int(p.split(".")[1]) for p in layout.layers if p.startswith(prefix + ".")}
    return max(ids) + 1 if ids else 0


def flux_groups(layout: ComponentLayout) -> list[Group]:
    """The BFL groups of a Flux transformer layout (fused where BFL fuses)."""
    groups: list[Group] = []
    tables = (
        ("double_blocks", "transformer_blocks", FLUX_DOUBLE),
        ("single_blocks", "single_transformer_blocks", FLUX_SINGLE),
    )
    for bfl_prefix, diff_prefix, table in tables:
        for i in range(_block_count(layout, diff_prefix)):
            for bfl, suffixes in table:
                parts = tuple(f"{diff_prefix}.{i}.{s}" for s in suffixes)
                if not all(p in layout for p in parts):
                    continue
                layers = [layout.layers[p] for p in parts]
                groups.append(
                    Group(
                        "transformer",
                        f"{bfl_prefix}.{i}.{bfl}",
                        parts,
                        tuple(x.out_features for x in layers),
                        layers[0].in_features,
                    )
                )
    for bfl, path, permute in FLUX_GLOBAL:
        if path in layout:
            layer = layout.layers[path]
            groups.append(
                Group(
                    "transformer",
                    bfl,
                    (path,),
                    (layer.out_features,),
                    layer.in_features,
                    permute=permute,
                )
            )
    return groups


def module_groups(component: str, layout: ComponentLayout, paths: Iterable[str]) -> list[Group]:
    """One single-part group per module path (every non-fused format)."""
    out = []
    for path in paths:
        layer = layout.layers[path]
        out.append(
            Group(component, path, (path,), (layer.out_features,), layer.in_features, layer.kernel)
        )
    return out


# --------------------------------------------------------------------------- SGM (kohya SDXL)
def sgm_unet_map(layout: ComponentLayout) -> dict[str, str]:
    """diffusers UNet block prefix -> SGM (LDM) prefix, e.g. ``down_blocks.1.attentions.0`` ->
    ``input_blocks.4.1``. kohya's SDXL trainer names LoRA modules after the SGM UNet."""
    facts = layout.config.get("unet_blocks")
    if not facts:
        raise ValueError("layout has no UNet block facts; build it with layout_of(unet)")
    out: dict[str, str] = {"conv_in": "input_blocks.0.0"}
    idx = 1
    for i, block in enumerate(facts["down"]):
        for j in range(block["resnets"]):
            out[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{idx}.0"
            if j < block["attentions"]:
                out[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{idx}.1"
            idx += 1
        if block["sampler"]:
            out[f"down_blocks.{i}.downsamplers.0"] = f"input_blocks.{idx}.0"
            idx += 1
    out["mid_block.resnets.0"] = "middle_block.0"
    if facts["mid_attentions"]:
        out["mid_block.attentions.0"] = "middle_block.1"
        out["mid_block.resnets.1"] = "middle_block.2"
    idx = 0
    for i, block in enumerate(facts["up"]):
        for j in range(block["resnets"]):
            out[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{idx}.0"
            has_attn = j < block["attentions"]
            if has_attn:
                out[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{idx}.1"
            if block["sampler"] and j == block["resnets"] - 1:
                out[f"up_blocks.{i}.upsamplers.0"] = f"output_blocks.{idx}.{2 if has_attn else 1}"
            idx += 1
    return out


def to_sgm(path: str, block_map: Mapping[str, str]) -> str | None:
    """Translate a diffusers UNet module path inside an attention block to its SGM path."""
    parts = path.split(".")
    for n in (4, 3):  # "down_blocks.1.attentions.0" / "mid_block.attentions.0"
        head = ".".join(parts[:n])
        if head in block_map and "attentions" in head:
            return ".".join([block_map[head], *parts[n:]])
    return None
