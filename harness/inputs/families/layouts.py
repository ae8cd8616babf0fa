"""Non-diffusers LoRA layouts of the families' files, as data, and a writer for each.

Users' files for Wan, Qwen-Image and Flux2 mostly come from the original model's module
names (``diffusion_model.blocks.0.self_attn.q``) or from kohya-style trainers that flatten
those names (``lora_unet_blocks_0_self_attn_q``, musubi-tuner / sd-scripts). A layout here
is the file's naming (prefix, flattening, down / up tensor names, whether the trainer writes
``.alpha``) plus a table from the original module names to the diffusers module paths of
the family's model. A fused original layer (Flux2's ``img_attn.qkv``) maps to several
diffusers modules: its up rows stack them in the listed order.

The tables are facts about the models (the original repositories' module names, the
trainers' key conventions; cross-read with diffusers' ``lora_conversion_utils.py`` of
0.42.1). Nothing here calls diffusers: the reference effect of a written file is read back
from the same tables by :mod:`harness.oracles.lora_layouts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.inputs.checkpoints.lora.layouts import Layer

#: Width of a stray module (it exists in no model, any width will do).
STRAY_WIDTH = 16
#: Most blocks a tiny model has (the block index of a rule is tried from 0 up to this).
MAX_BLOCKS = 64


@dataclass(frozen=True)
class Rule:
    """One module of the original model: its dotted name (``{i}`` = block index) and the
    diffusers module path(s) it acts on; several paths = a fused layer whose up rows stack
    the parts in this order (the down matrix is shared)."""

    source: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """A family's file naming that is not diffusers/PEFT's."""

    family: str
    name: str  # row id part, e.g. "musubi"
    trainer: str  # who writes files like this (documentation)
    prefix: str  # "diffusion_model." / "lora_unet_"
    flat: bool  # kohya style: the module path's dots written as underscores
    down: str  # "lora_down" / "lora_A"
    up: str  # "lora_up" / "lora_B"
    alpha: bool  # the trainer writes ``<module>.alpha`` (else scale 1: alpha = rank)
    rules: tuple[Rule, ...]
    #: (module left out by the partial case, the modules of its group), block 0.
    partial: tuple[str, tuple[str, ...]]
    #: Original-name module a stray key is written for (the model has no such module).
    stray: str
    #: The diffusers function that reads this layout (the docs and records name it; it is
    #: never called here).
    converter: str
    #: The trainer always writes alpha: a file without it is not a file users have.
    alpha_always: bool = False
    notes: str = ""

    @property
    def row(self) -> str:
        return f"{self.family}-{self.name}"

    def module_name(self, source: str) -> str:
        """The module as the file spells it, prefix included."""
        return self.prefix + (source.replace(".", "_") if self.flat else source)

    def key(self, source: str, role: str) -> str:
        """``role``: "down", "up" or "alpha"."""
        suffix = {"down": f".{self.down}.weight", "up": f".{self.up}.weight", "alpha": ".alpha"}
        return self.module_name(source) + suffix[role]

    def partial_case(self) -> str:
        return "partial-no-" + self.partial[0].rsplit(".", 1)[-1]

    def cases(self) -> tuple[str, ...]:
        """The named cases that apply: no-alpha only where alpha is written and optional."""
        out = ["complete", self.partial_case()]
        if self.alpha and not self.alpha_always:
            out.append("no-alpha")
        out.append("stray-key")
        return tuple(out)


def expand(layout: Layout, layers: Mapping[str, Layer]) -> dict[str, tuple[str, ...]]:
    """Concrete source module -> diffusers paths, for every rule whose targets all exist in
    the model (``{i}`` tried from block 0 up to the first block the model lacks)."""
    out: dict[str, tuple[str, ...]] = {}
    for rule in layout.rules:
        indices = range(MAX_BLOCKS) if "{i}" in rule.source else (0,)
        for i in indices:
            targets = tuple(t.format(i=i) for t in rule.targets)
            if not all(t in layers for t in targets):
                break
            out[rule.source.format(i=i)] = targets
    return out


@dataclass
class LayoutLora:
    """One written non-diffusers file and what is in it."""

    layout: Layout
    state_dict: dict[str, torch.Tensor]
    modules: list[str]  # source modules written (stray ones excluded)
    stray_keys: list[str] = field(default_factory=list)

    def names(self, sources: Iterable[str]) -> list[str]:
        """How a message may name these modules' keys: in full, and without the layout's
        prefix (the converters strip it before they complain)."""
        out: list[str] = []
        for source in sources:
            module = self.layout.module_name(source)
            keys = [k for k in self.state_dict if k.startswith(module + ".")]
            keys = keys or [self.layout.key(source, r) for r in ("down", "up")]
            out += [module, *keys]
            out += [n.removeprefix(self.layout.prefix) for n in (module, *keys)]
        return out

    def save(self, folder: Path, name: str = "layout_lora.safetensors") -> Path:
        from safetensors.torch import save_file

        path = folder / name
        save_file({k: v.contiguous() for k, v in self.state_dict.items()}, str(path))
        return path


def write_layout_lora(
    layout: Layout,
    layers: Mapping[str, Layer],
    rank: int = 4,
    alpha: float | None = 2.0,
    seed: int = 0,
    omit: Iterable[str] = (),
    stray: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LayoutLora:
    """A file on every module the layout names in this model (less ``omit``), ``.alpha``
    where the layout carries it and ``alpha`` is given, plus a stray module if asked."""
    skip = set(omit)
    table = expand(layout, layers)
    modules = [s for s in table if s not in skip]
    gen = torch.Generator().manual_seed(seed)
    shapes = [
        (s, layers[table[s][0]].in_features, sum(layers[t].out_features for t in table[s]))
        for s in modules
    ]
    if stray:
        shapes.append((layout.stray, STRAY_WIDTH, STRAY_WIDTH))
    state: dict[str, torch.Tensor] = {}
    for source, n_in, n_out in shapes:
        down = torch.randn(rank, n_in, generator=gen) / n_in**0.5
        up = torch.randn(n_out, rank, generator=gen) / rank**0.5
        state[layout.key(source, "down")] = down.to(dtype)
        state[layout.key(source, "up")] = up.to(dtype)
        if layout.alpha and alpha is not None:
            state[layout.key(source, "alpha")] = torch.tensor(float(alpha), dtype=dtype)
    stray_module = layout.module_name(layout.stray) + "."
    stray_keys = [k for k in state if stray and k.startswith(stray_module)]
    return LayoutLora(layout, state, modules, stray_keys)


def _block_rules(
    pairs: Iterable[tuple[str, str | tuple[str, ...]]], src: str, dst: str
) -> tuple[Rule, ...]:
    """Rules for one block type: ``(source tail, diffusers tail(s))`` under the two prefixes."""
    rules = []
    for tail, targets in pairs:
        parts = (targets,) if isinstance(targets, str) else targets
        rules.append(Rule(f"{src}.{{i}}.{tail}", tuple(f"{dst}.{{i}}.{p}" for p in parts)))
    return tuple(rules)


#: Wan 2.1's ``WanAttentionBlock`` (Wan-Video/Wan2.1 ``wan/modules/model.py``): self_attn and
#: cross_attn with q/k/v/o (+ k_img/v_img in the I2V model), ffn = Linear, GELU, Linear.
WAN_BLOCK_RULES = _block_rules(
    [
        ("self_attn.q", "attn1.to_q"),
        ("self_attn.k", "attn1.to_k"),
        ("self_attn.v", "attn1.to_v"),
        ("self_attn.o", "attn1.to_out.0"),
        ("cross_attn.q", "attn2.to_q"),
        ("cross_attn.k", "attn2.to_k"),
        ("cross_attn.v", "attn2.to_v"),
        ("cross_attn.o", "attn2.to_out.0"),
        ("cross_attn.k_img", "attn2.add_k_proj"),
        ("cross_attn.v_img", "attn2.add_v_proj"),
        ("ffn.0", "ffn.net.0.proj"),
        ("ffn.2", "ffn.net.2"),
    ],
    "blocks",
    "blocks",
)
WAN_PARTIAL = (
    "blocks.0.self_attn.k",
    tuple(f"blocks.0.self_attn.{o}" for o in "qkvo"),
)

#: Qwen-Image's released transformer uses diffusers' own module names (the original and
#: the diffusers naming coincide); kohya-style trainers flatten them.
QWEN_BLOCK_RULES = _block_rules(
    [
        (p, p)
        for p in (
            "img_mod.1",
            "attn.to_q",
            "attn.to_k",
            "attn.to_v",
            "attn.add_q_proj",
            "attn.add_k_proj",
            "attn.add_v_proj",
            "attn.to_out.0",
            "attn.to_add_out",
            "img_mlp.net.0.proj",
            "img_mlp.net.2",
            "txt_mod.1",
            "txt_mlp.net.0.proj",
            "txt_mlp.net.2",
        )
    ],
    "transformer_blocks",
    "transformer_blocks",
)
QWEN_PARTIAL = (
    "transformer_blocks.0.attn.to_k",
    tuple(f"transformer_blocks.0.attn.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")),
)

#: Flux2's original (BFL) names: double blocks with fused img/txt qkv, single blocks with
#: linear1 (fused qkv + mlp in, one diffusers module too) and linear2.
FLUX2_BLOCK_RULES = (
    *_block_rules(
        [
            ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
            ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
            ("img_attn.proj", "attn.to_out.0"),
            ("txt_attn.proj", "attn.to_add_out"),
            ("img_mlp.0", "ff.linear_in"),
            ("img_mlp.2", "ff.linear_out"),
            ("txt_mlp.0", "ff_context.linear_in"),
            ("txt_mlp.2", "ff_context.linear_out"),
        ],
        "double_blocks",
        "transformer_blocks",
    ),
    *_block_rules(
        [("linear1", "attn.to_qkv_mlp_proj"), ("linear2", "attn.to_out")],
        "single_blocks",
        "single_transformer_blocks",
    ),
)
FLUX2_PARTIAL = (
    "double_blocks.0.img_attn.qkv",
    ("double_blocks.0.img_attn.qkv", "double_blocks.0.img_attn.proj"),
)

LAYOUT_LIST: tuple[Layout, ...] = (
    Layout(
        "wan",
        "original-ab",
        "original Wan names, PEFT tensor names (diffusion-pipe / ComfyUI exports)",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        True,
        WAN_BLOCK_RULES,
        WAN_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_wan_lora_to_diffusers",
    ),
    Layout(
        "wan",
        "original-downup",
        "original Wan names, kohya tensor names (musubi-tuner's ComfyUI conversion)",
        "diffusion_model.",
        False,
        "lora_down",
        "lora_up",
        True,
        WAN_BLOCK_RULES,
        WAN_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_wan_lora_to_diffusers",
    ),
    Layout(
        "wan",
        "musubi",
        "musubi-tuner (kohya-ss) native: lora_unet_ + flattened original names",
        "lora_unet_",
        True,
        "lora_down",
        "lora_up",
        True,
        WAN_BLOCK_RULES,
        WAN_PARTIAL,
        "blocks.0.bogus0",
        "_convert_musubi_wan_lora_to_diffusers",
        alpha_always=True,
        notes="musubi-tuner's LoRA network registers alpha for every module and saves it",
    ),
    Layout(
        "qwenimage",
        "original-downup",
        "diffusion_model. + kohya tensor names (ComfyUI-style exports)",
        "diffusion_model.",
        False,
        "lora_down",
        "lora_up",
        True,
        QWEN_BLOCK_RULES,
        QWEN_PARTIAL,
        "transformer_blocks.0.bogus0",
        "_convert_non_diffusers_qwen_lora_to_diffusers",
    ),
    Layout(
        "qwenimage",
        "original-ab",
        "diffusion_model. + PEFT tensor names + alpha (DiffSynth-style exports)",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        True,
        QWEN_BLOCK_RULES,
        QWEN_PARTIAL,
        "transformer_blocks.0.bogus0",
        "_convert_non_diffusers_qwen_lora_to_diffusers",
    ),
    Layout(
        "qwenimage",
        "kohya",
        "musubi-tuner / sd-scripts: lora_unet_ + flattened names",
        "lora_unet_",
        True,
        "lora_down",
        "lora_up",
        True,
        QWEN_BLOCK_RULES,
        QWEN_PARTIAL,
        "transformer_blocks.0.bogus0",
        "_convert_non_diffusers_qwen_lora_to_diffusers",
        alpha_always=True,
        notes="kohya-style networks save alpha for every module",
    ),
    Layout(
        "flux2",
        "aitoolkit",
        "ai-toolkit: diffusion_model. + BFL names, PEFT tensor names, no alpha (scale 1)",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        FLUX2_BLOCK_RULES,
        FLUX2_PARTIAL,
        "double_blocks.0.bogus0",
        "_convert_non_diffusers_flux2_lora_to_diffusers",
    ),
    Layout(
        "flux2",
        "kohya",
        "sd-scripts / musubi-tuner: lora_unet_ + flattened BFL names + alpha",
        "lora_unet_",
        True,
        "lora_down",
        "lora_up",
        True,
        FLUX2_BLOCK_RULES,
        FLUX2_PARTIAL,
        "double_blocks.0.bogus0",
        "_convert_kohya_flux2_lora_to_diffusers",
        alpha_always=True,
        notes="kohya-style networks save alpha for every module",
    ),
)

LAYOUTS: dict[str, Layout] = {layout.row: layout for layout in LAYOUT_LIST}
