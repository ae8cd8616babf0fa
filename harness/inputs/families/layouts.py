"""Non-diffusers LoRA layouts of the families' files, as data, and a writer for each.

Users' files for Wan, Qwen-Image, Flux2, Z-Image, HunyuanVideo, Lumina2, HiDream and
LTX-Video mostly come from the original model's module names
(``diffusion_model.blocks.0.self_attn.q``) or from kohya-style trainers that flatten
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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.inputs.checkpoints.lora.build import write_safetensors
from harness.inputs.checkpoints.lora.layouts import Layer
from harness.inputs.families.table import FAMILIES

#: Width of a stray module (it exists in no model, any width will do).
STRAY_WIDTH = 16
#: Most blocks a tiny model has (the block index of a rule is tried from 0 up to this).
MAX_BLOCKS = 64
#: Rule source for layouts whose original names are diffusers' own (the converter only
#: strips a prefix): every block Linear of the family's model, under its own name.
SAME_NAMES = "*"


@dataclass(frozen=True)
class Rule:
    """One module of the original model: its dotted name (``{i}`` = block index) and the
    diffusers module path(s) it acts on; several paths = a fused layer whose up rows stack
    the parts in this order (the down matrix is shared).

    ``widths``: out widths of the leading parts that the converter hard-codes (it splits
    the up rows by these numbers, not by the model's): the rule places modules only in a
    model of those widths (a real-width one), never in a tiny model. ``SAME_NAMES`` as a
    source: every Linear under the family's block prefixes, named as diffusers names it."""

    source: str
    targets: tuple[str, ...]
    widths: tuple[int, ...] = ()
    #: The original layer's up rows as equal blocks, in the order the diffusers module
    #: holds them (empty: as written). MiniMax-H3's ``mlp.fc1`` is ``[gate; value]``,
    #: diffusers' SwiGLU ``ff.net.0.proj`` is ``[value; gate]``: ``(1, 0)``.
    row_order: tuple[int, ...] = ()


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
    #: Named groups of modules outside the blocks that the layout can carry (embedders,
    #: final layer, text refiner): row case ``with-<name>`` = complete + that group.
    extras: tuple[tuple[str, tuple[Rule, ...]], ...] = ()
    #: Denoiser config items (over the family's tiny config) of a real-width model whose
    #: widths every ``Rule.widths`` of the layout matches: built on the meta device for
    #: the ``view`` rows (the converter's output compared without loading). Pairs, not a
    #: dict, so a layout stays hashable.
    real_config: tuple[tuple[str, Any], ...] = ()
    #: Whether the tiny model can take a file of this layout at all (False where the
    #: converter requires a width-pinned module in every block: only ``view`` rows).
    tiny_rows: bool = True
    #: The trainer writes ``<module>.diff_b`` (the full bias difference) next to a pair
    #: (Kijai's / lightx2v's Wan extractions): case ``with-diff_b``.
    diff_b: bool = False
    #: A module the trainer writes as a full ``.diff`` (weight difference) + ``.diff_b``
    #: and no pair (Wan2.2-Distill's ``head.head``): case ``with-<first part>-diff``.
    full_diff: str = ""
    #: A parameter the trainer writes a ``.diff`` for that no converter rule places (a
    #: block's ``modulation`` table, ``(1, 6, dim)``): case ``with-<last part>-diff``,
    #: judged as a stray key.
    unplaced_diff: str = ""

    @property
    def row(self) -> str:
        return f"{self.family}-{self.name}"

    def module_name(self, source: str) -> str:
        """The module as the file spells it, prefix included."""
        return self.prefix + (source.replace(".", "_") if self.flat else source)

    def key(self, source: str, role: str) -> str:
        """``role``: "down", "up" or "alpha"."""
        suffix = {
            "down": f".{self.down}.weight",
            "up": f".{self.up}.weight",
            "alpha": ".alpha",
            "diff": ".diff",
            "diff_b": ".diff_b",
        }
        return self.module_name(source) + suffix[role]

    def partial_case(self) -> str:
        return "partial-no-" + self.partial[0].rsplit(".", 1)[-1]

    def cases(self) -> tuple[str, ...]:
        """The named cases of the tiny-model rows: no-alpha only where alpha is written and
        optional; ``with-<extra>`` per named group outside the blocks (and its no-alpha
        twin where alpha is optional: whether alpha or the group is what a release lacks)."""
        if not self.tiny_rows:
            return ()
        optional_alpha = self.alpha and not self.alpha_always
        out = ["complete", self.partial_case()]
        if optional_alpha:
            out.append("no-alpha")
        out.append("stray-key")
        for name, _ in self.extras:
            out += [f"with-{name}"] + ([f"with-{name}-no-alpha"] if optional_alpha else [])
        return (*out, *self.diff_cases())

    def diff_cases(self) -> tuple[str, ...]:
        """The cases of ``.diff`` / ``.diff_b`` keys this layout's trainers write."""
        out = ["with-diff_b"] if self.diff_b else []
        if self.full_diff:
            out.append(f"with-{self.full_diff.split('.')[0]}-diff")
        if self.unplaced_diff:
            out.append(f"with-{self.unplaced_diff.rsplit('.', 1)[-1]}-diff")
        return tuple(out)

    def view_cases(self) -> tuple[str, ...]:
        """The cases of the real-width ``view`` rows (layouts with width-pinned rules):
        complete, and complete less block 0's first width-pinned fused layer."""
        if not self.real_config:
            return ()
        return ("complete", "partial-no-" + self.pinned_partial().rsplit(".", 1)[-1])

    def pinned_partial(self) -> str:
        """Block 0's module of the first width-pinned rule (what a view partial omits)."""
        return next(r.source.format(i=0) for r in self.rules if r.widths)

    def extra_rules(self, names: Iterable[str]) -> tuple[Rule, ...]:
        groups = dict(self.extras)
        return tuple(rule for name in names for rule in groups[name])


def expand(
    layout: Layout, layers: Mapping[str, Layer], extras: Iterable[str] | None = ()
) -> dict[str, tuple[str, ...]]:
    """Concrete source module -> diffusers paths, for every rule whose targets all exist in
    the model with the widths the rule pins (``{i}`` tried from block 0 up to the first
    block the model lacks). ``extras``: the named groups outside the blocks to include
    (None: all of them, as the reference reads a file)."""
    names = [n for n, _ in layout.extras] if extras is None else list(extras)
    out: dict[str, tuple[str, ...]] = {}
    for rule in (*layout.rules, *layout.extra_rules(names)):
        if rule.source == SAME_NAMES:
            blocks = FAMILIES[layout.family].blocks
            linears = [p for p, layer in layers.items() if not layer.conv]
            out.update({p: (p,) for p in linears if p.startswith(blocks)})
            continue
        indices = range(MAX_BLOCKS) if "{i}" in rule.source else (0,)
        for i in indices:
            targets = tuple(t.format(i=i) for t in rule.targets)
            if not all(t in layers for t in targets):
                break
            widths = tuple(layers[t].out_features for t in targets[: len(rule.widths)])
            if widths != rule.widths:
                break
            out[rule.source.format(i=i)] = targets
    return out


def row_order(layout: Layout, source: str) -> tuple[int, ...]:
    """``Rule.row_order`` of the rule that names the concrete module ``source``."""
    for rule in (*layout.rules, *(r for _, rules in layout.extras for r in rules)):
        pattern = re.escape(rule.source).replace(re.escape("{i}"), r"\d+")
        if rule.row_order and re.fullmatch(pattern, source):
            return rule.row_order
    return ()


@dataclass
class LayoutLora:
    """One written non-diffusers file and what is in it."""

    layout: Layout
    state_dict: dict[str, torch.Tensor]
    modules: list[str]  # source modules written (stray ones excluded)
    stray_keys: list[str] = field(default_factory=list)

    def names(self, sources: Iterable[str]) -> list[str]:
        """How a message may name these modules' keys: in full, without the layout's
        prefix (the converters strip it before they complain), and the module's original
        dotted name (what a converter that un-flattens kohya names complains with)."""
        out: list[str] = []
        for source in sources:
            module = self.layout.module_name(source)
            keys = [k for k in self.state_dict if k.startswith(module + ".")]
            keys = keys or [self.layout.key(source, r) for r in ("down", "up")]
            out += [module, *keys]
            out += [n.removeprefix(self.layout.prefix) for n in (module, *keys)]
            out.append(source)
        return out

    def save(self, folder: Path, name: str = "layout_lora.safetensors") -> Path:
        path = folder / name
        write_safetensors(path, self.state_dict)
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
    extras: Iterable[str] = (),
    diffs: Iterable[str] = (),
) -> LayoutLora:
    """A file on every module the layout names in this model (less ``omit``; the named
    groups outside the blocks only when listed in ``extras``), ``.alpha`` where the layout
    carries it and ``alpha`` is given, plus a stray module if asked. ``diffs``: the
    difference keys to add, ``"diff_b"`` (a bias difference next to every pair),
    ``"full"`` (``layout.full_diff`` as ``.diff`` + ``.diff_b``, no pair), ``"unplaced"``
    (``layout.unplaced_diff``'s ``.diff``, a stray key)."""
    skip = set(omit)
    table = expand(layout, layers, extras)
    kinds = set(diffs)
    full = layout.full_diff if "full" in kinds else ""
    modules = [s for s in table if s not in skip and s != full]
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
        if "diff_b" in kinds and source != layout.stray:
            state[layout.key(source, "diff_b")] = _small(gen, (n_out,), dtype)
    if full:
        (target,) = expand(layout, layers, extras=None)[full]
        shape = (layers[target].out_features, layers[target].in_features)
        state[layout.key(full, "diff")] = _small(gen, shape, dtype)
        state[layout.key(full, "diff_b")] = _small(gen, shape[:1], dtype)
        modules.append(full)
    stray_module = layout.module_name(layout.stray) + "."
    stray_keys = [k for k in state if stray and k.startswith(stray_module)]
    if "unplaced" in kinds:
        first = next(iter(expand(layout, layers).values()))[0]
        key = layout.key(layout.unplaced_diff, "diff")
        state[key] = _small(gen, (1, 6, layers[first].out_features), dtype)
        stray_keys.append(key)
    return LayoutLora(layout, state, modules, stray_keys)


def _small(gen: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A difference tensor of the size trained deltas have (well inside the base's scale)."""
    return (0.1 * torch.randn(shape, generator=gen)).to(dtype)


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
#: Flux2's modules outside the blocks, BFL names (the shared modulations included).
FLUX2_OUTER = (
    Rule("img_in", ("x_embedder",)),
    Rule("txt_in", ("context_embedder",)),
    Rule("time_in.in_layer", ("time_guidance_embed.timestep_embedder.linear_1",)),
    Rule("time_in.out_layer", ("time_guidance_embed.timestep_embedder.linear_2",)),
    Rule("final_layer.linear", ("proj_out",)),
    Rule("double_stream_modulation_img.lin", ("double_stream_modulation_img.linear",)),
    Rule("double_stream_modulation_txt.lin", ("double_stream_modulation_txt.linear",)),
    Rule("single_stream_modulation.lin", ("single_stream_modulation.linear",)),
)
#: The final layer's modulation: BFL computes ``shift, scale``, diffusers' ``norm_out``
#: ``scale, shift`` (diffusers' own single-file Flux2 conversion swaps the halves).
FLUX2_FINAL_NORM = (Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), row_order=(1, 0)),)

#: Wan I2V's image embedder (``img_emb.proj`` = LayerNorm, Linear, GELU, Linear, LayerNorm;
#: diffusers' ``condition_embedder.image_embedder.ff``).
WAN_I2V_IMAGE = (
    Rule("img_emb.proj.1", ("condition_embedder.image_embedder.ff.net.0.proj",)),
    Rule("img_emb.proj.3", ("condition_embedder.image_embedder.ff.net.2",)),
)
#: The I2V partial: block 0's cross-attention less its image key projection.
WAN_I2V_PARTIAL = (
    "blocks.0.cross_attn.k_img",
    tuple(f"blocks.0.cross_attn.{o}" for o in ("q", "k", "v", "o", "k_img", "v_img")),
)

#: Wan's modules outside the blocks (``WanModel``: ``head.head``, ``text_embedding`` and
#: ``time_embedding`` = Linear, act, Linear, ``time_projection`` = act, Linear). The I2V
#: ``img_emb.proj`` is :data:`WAN_I2V_IMAGE` (the ``wan-i2v`` row's model has it).
WAN_OUTER = (
    Rule("head.head", ("proj_out",)),
    Rule("text_embedding.0", ("condition_embedder.text_embedder.linear_1",)),
    Rule("text_embedding.2", ("condition_embedder.text_embedder.linear_2",)),
    Rule("time_embedding.0", ("condition_embedder.time_embedder.linear_1",)),
    Rule("time_embedding.2", ("condition_embedder.time_embedder.linear_2",)),
    Rule("time_projection.1", ("condition_embedder.time_proj",)),
)

#: Z-Image in diffusers' names: main ``layers``, ``noise_refiner`` (modulated) and
#: ``context_refiner`` (no adaLN) blocks, each attention q/k/v/out + SwiGLU w1/w2/w3.
_ZIMAGE_BLOCK = [
    "attention.to_q",
    "attention.to_k",
    "attention.to_v",
    "attention.to_out.0",
    "feed_forward.w1",
    "feed_forward.w2",
    "feed_forward.w3",
    "adaLN_modulation.0",
]
ZIMAGE_RULES = tuple(
    rule
    for blocks in ("layers", "noise_refiner", "context_refiner")
    for rule in _block_rules([(p, p) for p in _ZIMAGE_BLOCK], blocks, blocks)
)
#: Z-Image's original module tree (Tongyi-MAI's ``Attention``: fused ``qkv``, ``out``).
ZIMAGE_FUSED_RULES = tuple(
    rule
    for blocks in ("layers", "noise_refiner", "context_refiner")
    for rule in _block_rules(
        [
            ("attention.qkv", ("attention.to_q", "attention.to_k", "attention.to_v")),
            ("attention.out", "attention.to_out.0"),
            *[(p, p) for p in _ZIMAGE_BLOCK[4:]],
        ],
        blocks,
        blocks,
    )
)
#: Z-Image's modules outside the blocks (same names in diffusers and the original).
ZIMAGE_OUTER = tuple(
    Rule(p, (p,))
    for p in (
        "t_embedder.mlp.0",
        "t_embedder.mlp.2",
        "cap_embedder.1",
        "all_x_embedder.2-1",
        "all_final_layer.2-1.linear",
        "all_final_layer.2-1.adaLN_modulation.1",
    )
)
ZIMAGE_PARTIAL = (
    "layers.0.attention.to_k",
    tuple(f"layers.0.attention.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")),
)
ZIMAGE_FUSED_PARTIAL = (
    "layers.0.attention.qkv",
    ("layers.0.attention.qkv", "layers.0.attention.out"),
)

#: HunyuanVideo's original names (Tencent ``MMDoubleStreamBlock`` / ``MMSingleStreamBlock``):
#: fused ``img_attn_qkv`` / ``txt_attn_qkv``; a single block's ``linear1`` is q, k, v and
#: the MLP in, which the converter splits at 3072 rows each (HunyuanVideo's width).
HUNYUAN_BLOCK_RULES = (
    *_block_rules(
        [
            ("img_attn_qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
            ("img_attn_proj", "attn.to_out.0"),
            ("img_mlp.fc1", "ff.net.0.proj"),
            ("img_mlp.fc2", "ff.net.2"),
            ("img_mod.linear", "norm1.linear"),
            ("txt_attn_qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
            ("txt_attn_proj", "attn.to_add_out"),
            ("txt_mlp.fc1", "ff_context.net.0.proj"),
            ("txt_mlp.fc2", "ff_context.net.2"),
            ("txt_mod.linear", "norm1_context.linear"),
        ],
        "double_blocks",
        "transformer_blocks",
    ),
    Rule(
        "single_blocks.{i}.linear1",
        tuple(
            f"single_transformer_blocks.{{i}}.{p}"
            for p in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
        ),
        widths=(3072, 3072, 3072),
    ),
    *_block_rules(
        [("linear2", "proj_out"), ("modulation.linear", "norm.linear")],
        "single_blocks",
        "single_transformer_blocks",
    ),
)
#: The text-token refiner's own timestep / pooled-text embedding (diffusers' path).
_TOKEN_EMBED = "context_embedder.time_text_embed"
HUNYUAN_EMBEDDERS = (
    Rule("time_in.mlp.0", ("time_text_embed.timestep_embedder.linear_1",)),
    Rule("time_in.mlp.2", ("time_text_embed.timestep_embedder.linear_2",)),
    Rule("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",)),
    Rule("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",)),
    Rule("guidance_in.mlp.0", ("time_text_embed.guidance_embedder.linear_1",)),
    Rule("guidance_in.mlp.2", ("time_text_embed.guidance_embedder.linear_2",)),
    Rule("txt_in.input_embedder", ("context_embedder.proj_in",)),
    Rule("txt_in.t_embedder.mlp.0", (f"{_TOKEN_EMBED}.timestep_embedder.linear_1",)),
    Rule("txt_in.t_embedder.mlp.2", (f"{_TOKEN_EMBED}.timestep_embedder.linear_2",)),
    Rule("txt_in.c_embedder.linear_1", (f"{_TOKEN_EMBED}.text_embedder.linear_1",)),
    Rule("txt_in.c_embedder.linear_2", (f"{_TOKEN_EMBED}.text_embedder.linear_2",)),
    Rule("final_layer.linear", ("proj_out",)),
)
#: The text-token refiner (``txt_in.individual_token_refiner.blocks.N``): fused
#: ``self_attn_qkv``, ``self_attn_proj``, ``mlp.fc1/fc2``, ``adaLN_modulation.1``.
HUNYUAN_REFINER = _block_rules(
    [
        ("self_attn_qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
        ("self_attn_proj", "attn.to_out.0"),
        ("mlp.fc1", "ff.net.0.proj"),
        ("mlp.fc2", "ff.net.2"),
        ("adaLN_modulation.1", "norm_out.linear"),
    ],
    "txt_in.individual_token_refiner.blocks",
    "context_embedder.token_refiner.refiner_blocks",
)
#: The final layer's modulation: the original computes ``shift, scale``, diffusers'
#: ``norm_out.linear`` ``scale, shift`` (the up rows' halves swap).
HUNYUAN_FINAL_NORM = (
    Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), row_order=(1, 0)),
)
HUNYUAN_PARTIAL = (
    "double_blocks.0.img_attn_qkv",
    ("double_blocks.0.img_attn_qkv", "double_blocks.0.img_attn_proj"),
)
#: HunyuanVideo's published transformer config (hunyuanvideo-community/HunyuanVideo): the
#: widths ``linear1``'s split assumes; one block of each kind is enough for the view.
HUNYUAN_REAL = {
    "in_channels": 16,
    "out_channels": 16,
    "num_attention_heads": 24,
    "attention_head_dim": 128,
    "text_embed_dim": 4096,
    "pooled_projection_dim": 768,
    "rope_axes_dim": (16, 56, 56),
    "patch_size": 2,
}

#: Lumina-Image 2.0's original names (Alpha-VLLM ``JointTransformerBlock``): fused
#: ``attention.qkv`` (the converter splits it at 2304 / 768 / 768 rows: 24 query and 8
#: key/value heads of 96), ``attention.out``, SwiGLU ``w1/w2/w3``, ``adaLN_modulation.1``.
LUMINA2_RULES = tuple(
    rule
    for blocks in ("layers", "noise_refiner", "context_refiner")
    for rule in (
        Rule(
            f"{blocks}.{{i}}.attention.qkv",
            tuple(f"{blocks}.{{i}}.attn.{p}" for p in ("to_q", "to_k", "to_v")),
            widths=(2304, 768, 768),
        ),
        *_block_rules(
            [
                ("attention.out", "attn.to_out.0"),
                ("feed_forward.w1", "feed_forward.linear_1"),
                ("feed_forward.w2", "feed_forward.linear_2"),
                ("feed_forward.w3", "feed_forward.linear_3"),
                ("adaLN_modulation.1", "norm1.linear"),
            ],
            blocks,
            blocks,
        ),
    )
)
LUMINA2_PARTIAL = (
    "layers.0.attention.out",
    ("layers.0.attention.qkv", "layers.0.attention.out"),
)
#: Lumina-Image 2.0's published transformer widths (Alpha-VLLM/Lumina-Image-2.0).
LUMINA2_REAL = {
    "hidden_size": 2304,
    "num_attention_heads": 24,
    "num_kv_heads": 8,
    "multiple_of": 256,
    "cap_feat_dim": 2304,
    "axes_dim_rope": (32, 32, 32),
    "num_layers": 1,
    "num_refiner_layers": 1,
}

HIDREAM_PARTIAL = (
    "double_stream_blocks.0.block.attn1.to_k",
    tuple(f"double_stream_blocks.0.block.attn1.{p}" for p in ("to_q", "to_k", "to_v", "to_out")),
)
LTX_PARTIAL = (
    "transformer_blocks.0.attn1.to_k",
    tuple(f"transformer_blocks.0.attn1.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")),
)

# --- Batch B (issue #20): Ideogram4, MiniMax-H3, ACE-Step, Anima, Flux3 -------------------

#: Ideogram4's original block (``layers.N``): fused ``attention.qkv`` and ``attention.o``,
#: SwiGLU ``feed_forward.w1`` / ``w2`` / ``w3``, one ``adaln_modulation`` (diffusers keeps
#: every name but the attention's).
IDEOGRAM4_BLOCK_RULES = _block_rules(
    [
        ("attention.qkv", ("attention.to_q", "attention.to_k", "attention.to_v")),
        ("attention.o", "attention.to_out.0"),
        ("feed_forward.w1", "feed_forward.w1"),
        ("feed_forward.w2", "feed_forward.w2"),
        ("feed_forward.w3", "feed_forward.w3"),
        ("adaln_modulation", "adaln_modulation"),
    ],
    "layers",
    "layers",
)
IDEOGRAM4_PARTIAL = ("layers.0.attention.qkv", ("layers.0.attention.qkv", "layers.0.attention.o"))


def _minimax_h3_rules(src: str, dst: str, adaln: bool) -> tuple[Rule, ...]:
    """One MiniMax-H3 block type: fused ``attn.qkv_proj``, ``attn.out_proj``, the SwiGLU
    ``mlp.fc1`` (``[gate; value]``; diffusers' ``ff.net.0.proj`` holds ``[value; gate]``)
    and ``mlp.fc2``; main blocks also ``adaln_proj.linear`` (refiner blocks have none)."""
    pairs: list[tuple[str, str | tuple[str, ...]]] = [
        ("attn.qkv_proj", ("attn.to_q", "attn.to_k", "attn.to_v")),
        ("attn.out_proj", "attn.to_out.0"),
        ("mlp.fc2", "ff.net.2"),
    ]
    if adaln:
        pairs.append(("adaln_proj.linear", "adaln_proj.linear"))
    swapped = Rule(f"{src}.{{i}}.mlp.fc1", (f"{dst}.{{i}}.ff.net.0.proj",), row_order=(1, 0))
    return (*_block_rules(pairs, src, dst), swapped)


#: MiniMax-H3's original names (its reference ``generate.py`` / ComfyUI checkpoints): the
#: main ``blocks.N`` and the text ``token_refiner.blocks.N``.
MINIMAX_H3_BLOCK_RULES = (
    *_minimax_h3_rules("blocks", "transformer_blocks", adaln=True),
    *_minimax_h3_rules("token_refiner.blocks", "token_refiner.refiner_blocks", adaln=False),
)
MINIMAX_H3_PARTIAL = (
    "blocks.0.attn.qkv_proj",
    ("blocks.0.attn.qkv_proj", "blocks.0.attn.out_proj"),
)

#: ACE-Step 1.5's DiT decoder (``layers.N``): Qwen-style ``q_proj`` / ``k_proj`` / ``v_proj``
#: / ``o_proj`` in self- and cross-attention, ``mlp.gate_proj`` / ``up_proj`` / ``down_proj``.
ACE_STEP_BLOCK_RULES = _block_rules(
    [
        *(
            (f"{attn}.{o}_proj", f"{attn}.{d}")
            for attn in ("self_attn", "cross_attn")
            for o, d in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))
        ),
        ("mlp.gate_proj", "mlp.gate_proj"),
        ("mlp.up_proj", "mlp.up_proj"),
        ("mlp.down_proj", "mlp.down_proj"),
    ],
    "layers",
    "layers",
)
ACE_STEP_PARTIAL = (
    "layers.0.self_attn.k_proj",
    tuple(f"layers.0.self_attn.{o}_proj" for o in "qkvo"),
)

#: Anima's DiT (Cosmos-Predict2 names): ``self_attn`` / ``cross_attn`` with q/k/v and
#: ``output_proj``, three AdaLN-LoRA modulations (``.1`` down, ``.2`` up), ``mlp.layer1/2``.
ANIMA_BLOCK_RULES = _block_rules(
    [
        *(
            (f"{attn}.{o}", f"{d}.{t}")
            for attn, d in (("self_attn", "attn1"), ("cross_attn", "attn2"))
            for o, t in (
                ("q_proj", "to_q"),
                ("k_proj", "to_k"),
                ("v_proj", "to_v"),
                ("output_proj", "to_out.0"),
            )
        ),
        *(
            (f"adaln_modulation_{part}.{j}", f"{norm}.linear_{j}")
            for part, norm in (("self_attn", "norm1"), ("cross_attn", "norm2"), ("mlp", "norm3"))
            for j in (1, 2)
        ),
        ("mlp.layer1", "ff.net.0.proj"),
        ("mlp.layer2", "ff.net.2"),
    ],
    "blocks",
    "transformer_blocks",
)
ANIMA_PARTIAL = (
    "blocks.0.self_attn.k_proj",
    tuple(f"blocks.0.self_attn.{o}" for o in ("q_proj", "k_proj", "v_proj", "output_proj")),
)

#: Anima's LLM adapter (``llm_adapter.`` in original files, diffusers' ``text_conditioner``):
#: the same module names on both sides.
ANIMA_ADAPTER_RULES = _block_rules(
    [
        (p, p)
        for p in (
            *(f"{attn}.{o}_proj" for attn in ("self_attn", "cross_attn") for o in "qkvo"),
            "mlp.0",
            "mlp.2",
        )
    ],
    "blocks",
    "blocks",
)
ANIMA_ADAPTER_PARTIAL = (
    "blocks.0.self_attn.k_proj",
    tuple(f"blocks.0.self_attn.{o}_proj" for o in "qkvo"),
)


def _flux3_block(src: str, dst: str) -> tuple[Rule, ...]:
    """One Flux3 block type: flat ``q_proj`` / ``k_proj`` / ``v_proj`` / ``attn_out`` and
    ``mlp_in`` / ``mlp_out`` on the original side."""
    pairs = [
        ("q_proj", "attn.to_q"),
        ("k_proj", "attn.to_k"),
        ("v_proj", "attn.to_v"),
        ("attn_out", "attn.to_out.0"),
        ("mlp_in", "ff.linear_in"),
        ("mlp_out", "ff.linear_out"),
    ]
    return _block_rules(pairs, src, dst)


#: Flux3's original (BFL) names: per-mode ``content_mode_blocks.<mode>.N`` (image and
#: image_cond), ``txt_mode_blocks.N``, joint ``single_blocks.N``.
FLUX3_BLOCK_RULES = (
    *_flux3_block("content_mode_blocks.image", "mode_blocks.image"),
    *_flux3_block("content_mode_blocks.image_cond", "mode_blocks.image_cond"),
    *_flux3_block("txt_mode_blocks", "txt_mode_blocks"),
    *_flux3_block("single_blocks", "single_transformer_blocks"),
)
FLUX3_PARTIAL = (
    "content_mode_blocks.image.0.k_proj",
    tuple(f"content_mode_blocks.image.0.{o}" for o in ("q_proj", "k_proj", "v_proj", "attn_out")),
)

# --- Batch A (issue #20): LTX2 (transformer + text connectors), Krea2 -----------------------

#: LTX-2's own module names outside the blocks (Lightricks/LTX-2; its blocks carry
#: diffusers' names already): the patchify projections, the AdaLN-single timestep
#: modulators (video, audio, and the four audio-video cross-attention ones), the caption
#: projections and the output projections.
_LTX2_ADALN = (
    ("adaln_single", "time_embed"),
    ("audio_adaln_single", "audio_time_embed"),
    ("av_ca_video_scale_shift_adaln_single", "av_cross_attn_video_scale_shift"),
    ("av_ca_audio_scale_shift_adaln_single", "av_cross_attn_audio_scale_shift"),
    ("av_ca_a2v_gate_adaln_single", "av_cross_attn_video_a2v_gate"),
    ("av_ca_v2a_gate_adaln_single", "av_cross_attn_audio_v2a_gate"),
)
LTX2_OUTER = (
    Rule("patchify_proj", ("proj_in",)),
    Rule("audio_patchify_proj", ("audio_proj_in",)),
    *(
        Rule(f"{original}.{tail}", (f"{ours}.{tail}",))
        for original, ours in _LTX2_ADALN
        for tail in ("linear", "emb.timestep_embedder.linear_1", "emb.timestep_embedder.linear_2")
    ),
    *(
        Rule(f"{p}.{tail}", (f"{p}.{tail}",))
        for p in ("caption_projection", "audio_caption_projection")
        for tail in ("linear_1", "linear_2")
    ),
    Rule("proj_out", ("proj_out",)),
    Rule("audio_proj_out", ("audio_proj_out",)),
)
#: LTX-2's text-embedding projection (``text_embedding_projection.aggregate_embed``, the
#: one connector module the converter renames); the connector blocks below it are written
#: with diffusers' names, which the converter passes through under ``connectors.``.
LTX2_CONNECTOR_RULES = (
    Rule("aggregate_embed", ("text_proj_in",)),
    *(
        rule
        for stream in ("video_connector", "audio_connector")
        for rule in _block_rules(
            [
                (p, p)
                for p in ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")
                + ("ff.net.0.proj", "ff.net.2")
            ],
            f"{stream}.transformer_blocks",
            f"{stream}.transformer_blocks",
        )
    ),
)
LTX2_CONNECTOR_PARTIAL = (
    "video_connector.transformer_blocks.0.attn1.to_k",
    tuple(
        f"video_connector.transformer_blocks.0.attn1.{p}"
        for p in ("to_q", "to_k", "to_v", "to_out.0")
    ),
)

#: Krea 2's original names (krea-ai/krea-2): ``blocks.N.attn.wq/wk/wv/wo/gate`` and
#: ``mlp.gate/up/down``, the same in the text-fusion layerwise / refiner blocks.
_KREA2_ATTN = (
    ("wq", "to_q"),
    ("wk", "to_k"),
    ("wv", "to_v"),
    ("wo", "to_out.0"),
    ("gate", "to_gate"),
)
_KREA2_MLP = (("gate", "ff.gate"), ("up", "ff.up"), ("down", "ff.down"))
KREA2_BLOCK_RULES = tuple(
    rule
    for src, dst in (
        ("blocks", "transformer_blocks"),
        ("txtfusion.layerwise_blocks", "text_fusion.layerwise_blocks"),
        ("txtfusion.refiner_blocks", "text_fusion.refiner_blocks"),
    )
    for rule in _block_rules(
        [(f"attn.{a}", f"attn.{b}") for a, b in _KREA2_ATTN]
        + [(f"mlp.{a}", b) for a, b in _KREA2_MLP],
        src,
        dst,
    )
)
#: Krea 2's modules outside the blocks (AI-Toolkit spells them as ``nn.Sequential`` slots).
KREA2_OUTER = (
    Rule("first", ("img_in",)),
    Rule("last.linear", ("final_layer.linear",)),
    Rule("tmlp.0", ("time_embed.linear_1",)),
    Rule("tmlp.2", ("time_embed.linear_2",)),
    Rule("tproj.1", ("time_mod_proj",)),
    Rule("txtmlp.1", ("txt_in.linear_1",)),
    Rule("txtmlp.3", ("txt_in.linear_2",)),
    Rule("txtfusion.projector", ("text_fusion.projector",)),
)
KREA2_PARTIAL = ("blocks.0.attn.wk", tuple(f"blocks.0.attn.{a}" for a in ("wq", "wk", "wv", "wo")))

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
        extras=(("outer", WAN_OUTER),),
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
        extras=(("outer", WAN_OUTER),),
        diff_b=True,
        full_diff="head.head",
        unplaced_diff="blocks.0.modulation",
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
        "wan-i2v",
        "original-downup",
        "original Wan I2V names, kohya tensor names, diff_b biases (Kijai / lightx2v exports)",
        "diffusion_model.",
        False,
        "lora_down",
        "lora_up",
        True,
        WAN_BLOCK_RULES,
        WAN_I2V_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_wan_lora_to_diffusers",
        extras=(("image", WAN_I2V_IMAGE),),
        diff_b=True,
    ),
    Layout(
        "wan-i2v",
        "musubi",
        "musubi-tuner (kohya-ss) native for Wan I2V: lora_unet_ + flattened original names",
        "lora_unet_",
        True,
        "lora_down",
        "lora_up",
        True,
        WAN_BLOCK_RULES,
        WAN_I2V_PARTIAL,
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
        extras=(("outer", FLUX2_OUTER), ("final-norm", FLUX2_FINAL_NORM)),
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
    Layout(
        "zimage",
        "aitoolkit",
        "diffusion_model. + diffusers module names, PEFT tensor names, alpha where written",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        True,
        ZIMAGE_RULES,
        ZIMAGE_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_z_image_lora_to_diffusers",
        extras=(("outer", ZIMAGE_OUTER),),
    ),
    Layout(
        "zimage",
        "original-downup",
        "diffusion_model. + kohya tensor names + alpha (ComfyUI-style exports)",
        "diffusion_model.",
        False,
        "lora_down",
        "lora_up",
        True,
        ZIMAGE_RULES,
        ZIMAGE_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_z_image_lora_to_diffusers",
    ),
    Layout(
        "zimage",
        "kohya",
        "sd-scripts / musubi-tuner: lora_unet_ + flattened diffusers names",
        "lora_unet_",
        True,
        "lora_down",
        "lora_up",
        True,
        ZIMAGE_RULES,
        ZIMAGE_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_z_image_lora_to_diffusers",
        alpha_always=True,
        notes="kohya-style networks save alpha for every module",
        extras=(("outer", ZIMAGE_OUTER),),
    ),
    Layout(
        "zimage",
        "kohya-fused",
        "kohya-style trainers on Z-Image's original tree: lora_unet_ + attention_qkv / _out",
        "lora_unet_",
        True,
        "lora_down",
        "lora_up",
        True,
        ZIMAGE_FUSED_RULES,
        ZIMAGE_FUSED_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_z_image_lora_to_diffusers",
        alpha_always=True,
        notes="kohya-style networks save alpha for every module",
    ),
    Layout(
        "zimage",
        "peft-default",
        "a peft model's own state dict: diffusers names, lora_A.default / lora_B.default",
        "",
        False,
        "lora_A.default",
        "lora_B.default",
        False,
        ZIMAGE_RULES,
        ZIMAGE_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_z_image_lora_to_diffusers",
    ),
    Layout(
        "hunyuanvideo",
        "original",
        "diffusion_model. + original names, PEFT tensor names, no alpha (diffusion-pipe)",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        HUNYUAN_BLOCK_RULES,
        HUNYUAN_PARTIAL,
        "double_blocks.0.bogus0",
        "_convert_hunyuan_video_lora_to_diffusers",
        extras=(
            ("embedders", HUNYUAN_EMBEDDERS),
            ("refiner", HUNYUAN_REFINER),
            ("final-norm", HUNYUAN_FINAL_NORM),
        ),
        real_config=tuple(HUNYUAN_REAL.items()),
    ),
    Layout(
        "hunyuanvideo",
        "transformer-prefix",
        "original names under a transformer. prefix (files made 'diffusers-like' by hand)",
        "transformer.",
        False,
        "lora_A",
        "lora_B",
        False,
        HUNYUAN_BLOCK_RULES,
        HUNYUAN_PARTIAL,
        "double_blocks.0.bogus0",
        "_convert_hunyuan_video_lora_to_diffusers",
    ),
    Layout(
        "lumina2",
        "original",
        "diffusion_model. + Lumina-Image 2.0 names, PEFT tensor names, no alpha",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        LUMINA2_RULES,
        LUMINA2_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_lumina2_lora_to_diffusers",
        real_config=tuple(LUMINA2_REAL.items()),
        tiny_rows=False,
        notes="every block needs attention.qkv, split at hard-coded real widths",
    ),
    Layout(
        "hidream",
        "original",
        "diffusion_model. + HiDream-I1's names (diffusers kept them), PEFT tensor names",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        (Rule(SAME_NAMES, (SAME_NAMES,)),),
        HIDREAM_PARTIAL,
        "double_stream_blocks.0.bogus0",
        "_convert_non_diffusers_hidream_lora_to_diffusers",
    ),
    Layout(
        "ltxvideo",
        "original",
        "diffusion_model. + LTX-Video's names (diffusers kept them), PEFT tensor names",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        (Rule(SAME_NAMES, (SAME_NAMES,)),),
        LTX_PARTIAL,
        "transformer_blocks.0.bogus0",
        "_convert_non_diffusers_ltxv_lora_to_diffusers",
    ),
    Layout(
        "flux2",
        "original-downup",
        "diffusion_model. + BFL names, kohya tensor names, no alpha (ComfyUI-style exports)",
        "diffusion_model.",
        False,
        "lora_down",
        "lora_up",
        False,
        FLUX2_BLOCK_RULES,
        FLUX2_PARTIAL,
        "double_blocks.0.bogus0",
        "_convert_non_diffusers_flux2_lora_to_diffusers",
    ),
    Layout(
        "qwenimage",
        "peft-default",
        "a peft model's own state dict: diffusers names, lora_A.default / lora_B.default",
        "",
        False,
        "lora_A.default",
        "lora_B.default",
        False,
        QWEN_BLOCK_RULES,
        QWEN_PARTIAL,
        "transformer_blocks.0.bogus0",
        "_convert_non_diffusers_qwen_lora_to_diffusers",
    ),
    # Batch B (issue #20).
    Layout(
        "ideogram4",
        "aitoolkit",
        "ai-toolkit (ostris): diffusion_model. + original names, fused qkv, PEFT tensor names",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        IDEOGRAM4_BLOCK_RULES,
        IDEOGRAM4_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_ideogram4_lora_to_diffusers",
    ),
    Layout(
        "ideogram4",
        "original-downup",
        "diffusion_model. + original names, kohya tensor names + alpha (ComfyUI-style exports)",
        "diffusion_model.",
        False,
        "lora_down",
        "lora_up",
        True,
        IDEOGRAM4_BLOCK_RULES,
        IDEOGRAM4_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_ideogram4_lora_to_diffusers",
    ),
    Layout(
        "ideogram4",
        "conditional",
        "the original checkpoint's own root (conditional_transformer.), PEFT tensor names",
        "conditional_transformer.",
        False,
        "lora_A",
        "lora_B",
        False,
        IDEOGRAM4_BLOCK_RULES,
        IDEOGRAM4_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_ideogram4_lora_to_diffusers",
    ),
    Layout(
        "minimax-h3",
        "aitoolkit",
        "ai-toolkit: diffusion_model. + original names, PEFT tensor names, no alpha",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        MINIMAX_H3_BLOCK_RULES,
        MINIMAX_H3_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_minimax_h3_lora_to_diffusers",
    ),
    Layout(
        "minimax-h3",
        "original-downup",
        "no prefix (reference generate.py / ComfyUI), kohya tensor names + alpha",
        "",
        False,
        "lora_down",
        "lora_up",
        True,
        MINIMAX_H3_BLOCK_RULES,
        MINIMAX_H3_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_minimax_h3_lora_to_diffusers",
    ),
    Layout(
        "minimax-h3",
        "musubi",
        "musubi-tuner: lora_unet_ + flattened original names + alpha",
        "lora_unet_",
        True,
        "lora_down",
        "lora_up",
        True,
        MINIMAX_H3_BLOCK_RULES,
        MINIMAX_H3_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_minimax_h3_lora_to_diffusers",
        alpha_always=True,
        notes="kohya-style networks save alpha for every module",
    ),
    Layout(
        "acestep",
        "peft",
        "ACE-Step 1.5's own trainer: peft's base_model.model. + the DiT's q_proj / k_proj names",
        "base_model.model.",
        False,
        "lora_A",
        "lora_B",
        False,
        ACE_STEP_BLOCK_RULES,
        ACE_STEP_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_ace_step_lora_to_diffusers",
        notes="peft keeps alpha in adapter_config.json, not in the tensors",
    ),
    Layout(
        "anima",
        "original",
        "diffusion-pipe / ComfyUI: diffusion_model. + Cosmos-Predict2 names, PEFT tensor names",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        ANIMA_BLOCK_RULES,
        ANIMA_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_anima_lora_to_diffusers",
    ),
    Layout(
        "anima-text-conditioner",
        "original",
        "the same files' LLM-adapter part: diffusion_model.llm_adapter. + its own names",
        "diffusion_model.llm_adapter.",
        False,
        "lora_A",
        "lora_B",
        False,
        ANIMA_ADAPTER_RULES,
        ANIMA_ADAPTER_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_anima_lora_to_diffusers",
    ),
    Layout(
        "flux3",
        "original",
        "diffusion_model. + BFL names (content_mode_blocks / single_blocks), PEFT tensor names",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        FLUX3_BLOCK_RULES,
        FLUX3_PARTIAL,
        "txt_mode_blocks.0.bogus0",  # a name the converter keeps: a message can name it
        "_convert_non_diffusers_flux3_lora_to_diffusers",
    ),
    # Batch A (issue #20).
    Layout(
        "ltx2",
        "original",
        "LTX-2 trainer / ComfyUI: diffusion_model. + LTX-2's names, PEFT tensor names, no alpha",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        (Rule(SAME_NAMES, (SAME_NAMES,)),),
        LTX_PARTIAL,
        "transformer_blocks.0.bogus0",
        "_convert_non_diffusers_ltx2_lora_to_diffusers",
        extras=(("outer", LTX2_OUTER),),
    ),
    Layout(
        "ltx2-connectors",
        "original",
        "the same files' text-connector part: text_embedding_projection. + aggregate_embed",
        "text_embedding_projection.",
        False,
        "lora_A",
        "lora_B",
        False,
        LTX2_CONNECTOR_RULES,
        LTX2_CONNECTOR_PARTIAL,
        "video_connector.transformer_blocks.0.bogus0",
        "_convert_non_diffusers_ltx2_lora_to_diffusers",
        notes="the converter's second call (prefix text_embedding_projection -> connectors.)",
    ),
    Layout(
        "krea2",
        "original",
        "Krea 2 reference trainer / ComfyUI: diffusion_model. + krea-2 names, PEFT tensors",
        "diffusion_model.",
        False,
        "lora_A",
        "lora_B",
        False,
        KREA2_BLOCK_RULES,
        KREA2_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_krea2_lora_to_diffusers",
        extras=(("outer", KREA2_OUTER),),
    ),
    Layout(
        "krea2",
        "aitoolkit",
        "ai-toolkit (ostris): base_model.model. + krea-2 names, PEFT tensor names, no alpha",
        "base_model.model.",
        False,
        "lora_A",
        "lora_B",
        False,
        KREA2_BLOCK_RULES,
        KREA2_PARTIAL,
        "blocks.0.bogus0",
        "_convert_non_diffusers_krea2_lora_to_diffusers",
        extras=(("outer", KREA2_OUTER),),
    ),
)

LAYOUTS: dict[str, Layout] = {layout.row: layout for layout in LAYOUT_LIST}
