"""LoKr files of the families as users have them: spellings and tensor forms as data, a writer.

LoKr (LyCORIS's Kronecker adapter) stores, per module, two factors whose Kronecker product
is the weight delta: ``lokr_w1`` (small, ``out_l x in_m``) and ``lokr_w2`` (large,
``out_k x in_n``), either stored whole or as a low-rank product (``lokr_w1_a @ lokr_w1_b``,
``lokr_w2_a @ lokr_w2_b``), plus the module's ``.alpha``. Which factor is split, and how a
width is cut into two factors, follows LyCORIS (``lycoris/modules/lokr.py``; peft's LoKr
tuner repeats the rules, its ``factorization`` being a copy of an older LyCORIS that does
not reorder a dividing factor above the square root): a width splits as ``factor`` x rest where ``factor`` divides
it, else into the most square pair; ``w2`` is low-rank where the rank is under half its
larger side, ``w1`` only with ``decompose_both`` and the same test; when both factors are
whole LyCORIS forces alpha = rank (that is the ``.alpha`` it saves) and the scale is 1.

A spelling (:class:`LokrLayout`) is the file's prefix and flattening and a table from the
file's module names to the diffusers module paths (Flux2's BFL names for ai-toolkit, with
the fused ``img_attn.qkv``; diffusers' own names for LyCORIS, bare dotted and peft files).
Facts about the trainers and diffusers 0.42.1's ``Flux2LoraLoaderMixin`` /
``ZImageLoraLoaderMixin`` routes; nothing here calls diffusers. The reference effect of a
written file comes from :mod:`harness.oracles.lokr`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.inputs.checkpoints.lora.build import write_safetensors
from harness.inputs.checkpoints.lora.layouts import Layer
from harness.inputs.families.layouts import FLUX2_BLOCK_RULES, FLUX2_PARTIAL, MAX_BLOCKS, Rule

#: Tensor names of a LoKr module (the factors, whole or as low-rank pairs).
FACTOR_KEYS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")
#: LyCORIS's "full matrix" dimension: SimpleTuner's documented LoKr config sets
#: ``linear_dim: 10000``, so both factors are whole and the saved alpha is this number
#: (forced, and ignored).
FULL_MATRIX_DIM = 10000
#: Rank and alpha of the low-rank forms: alpha != rank, so a lost or misread alpha shows.
LOW_RANK, LOW_RANK_ALPHA = 2, 1.0
#: Width of a stray module (it exists in no model).
STRAY_WIDTH = 16


@dataclass(frozen=True)
class LokrForm:
    """How a trainer stores the factors: LyCORIS's ``lora_dim`` and ``decompose_both``."""

    name: str
    dim: int
    decompose_both: bool
    notes: str


FORMS: dict[str, LokrForm] = {
    form.name: form
    for form in (
        LokrForm("full", FULL_MATRIX_DIM, False, "lokr_w1 + lokr_w2 whole (full-matrix mode)"),
        LokrForm("lowrank", LOW_RANK, False, "lokr_w1 whole, lokr_w2_a @ lokr_w2_b (default)"),
        LokrForm(
            "both-lowrank",
            LOW_RANK,
            True,
            "decompose_both: lokr_w1_a @ lokr_w1_b where w1 is wide enough, w2 as lowrank",
        ),
    )
}


def kron_split(dim: int, factor: int) -> tuple[int, int]:
    """LyCORIS's cut of a width into two Kronecker sides ``(m, n)``, ``m <= n``, ``m * n =
    dim``: ``factor`` and the rest where ``factor`` divides ``dim``, else the most square
    pair whose small side is at most ``factor`` (``-1``: no bound)."""
    if factor > 0 and dim % factor == 0:
        small, large = sorted((factor, dim // factor))
        return small, large
    bound = dim if factor <= 0 else factor
    small = max(d for d in range(1, math.isqrt(dim) + 1) if dim % d == 0 and d <= bound)
    return small, dim // small


def factor_shapes(n_out: int, n_in: int, form: LokrForm, factor: int) -> dict[str, tuple[int, int]]:
    """The tensors LyCORIS writes for one Linear (``n_out x n_in``) and their shapes."""
    out_l, out_k = kron_split(n_out, factor)
    in_m, in_n = kron_split(n_in, factor)
    dim = form.dim
    shapes: dict[str, tuple[int, int]] = {}
    if form.decompose_both and dim < max(out_l, in_m) / 2:
        shapes |= {"lokr_w1_a": (out_l, dim), "lokr_w1_b": (dim, in_m)}
    else:
        shapes["lokr_w1"] = (out_l, in_m)
    if dim < max(out_k, in_n) / 2:
        shapes |= {"lokr_w2_a": (out_k, dim), "lokr_w2_b": (dim, in_n)}
    else:
        shapes["lokr_w2"] = (out_k, in_n)
    return shapes


@dataclass(frozen=True)
class LokrLayout:
    """One way LoKr files of a family are spelled, and what diffusers 0.42.1 reads it with."""

    family: str
    name: str  # row id part, e.g. "lycoris"
    trainer: str  # who writes files like this (documentation)
    prefix: str  # "lycoris_" / "diffusion_model." / "" / "transformer."
    flat: bool  # the module path's dots written as underscores (LyCORIS)
    alpha: bool  # the file carries ``<module>.alpha``
    alpha_always: bool  # ... always (LyCORIS saves its alpha buffer): no no-alpha case
    forms: tuple[str, ...]  # tensor forms the trainers write (keys of FORMS)
    factor: int  # LyCORIS ``factor`` the trainer's default config uses (-1: most square)
    rules: tuple[Rule, ...]
    #: (module left out by the partial case, the modules of its group), block 0.
    partial: tuple[str, tuple[str, ...]]
    stray: str  # a module block 0 lacks, in the file's own naming
    #: The function of ``diffusers.loaders.lora_conversion_utils`` 0.42.1 routes the file
    #: to ("" = none: the keys are peft's already). Named in docs and records, never called.
    converter: str
    notes: str = ""

    @property
    def row(self) -> str:
        return f"{self.family}-lokr-{self.name}"

    def module_name(self, source: str) -> str:
        """The module as the file spells it, prefix included."""
        return self.prefix + (source.replace(".", "_") if self.flat else source)

    def key(self, source: str, tensor: str) -> str:
        """``tensor``: one of FACTOR_KEYS or "alpha"."""
        return f"{self.module_name(source)}.{tensor}"

    def partial_case(self) -> str:
        return "partial-no-" + self.partial[0].rsplit(".", 1)[-1]

    def cases(self) -> tuple[str, ...]:
        """``complete-<form>`` per tensor form, ``no-alpha`` where alpha is optional, the
        partial group and the stray key (both in the low-rank form, alpha where carried)."""
        out = [f"complete-{form}" for form in self.forms]
        if self.alpha and not self.alpha_always:
            out.append("no-alpha")
        return (*out, self.partial_case(), "stray-key")


def lokr_modules(layout: LokrLayout, layers: Mapping[str, Layer]) -> dict[str, tuple[str, ...]]:
    """Concrete file module -> diffusers paths, for every rule whose targets all exist in
    the model (``{i}`` tried from block 0 up to the first block the model lacks)."""
    out: dict[str, tuple[str, ...]] = {}
    for rule in layout.rules:
        for i in range(MAX_BLOCKS) if "{i}" in rule.source else (0,):
            targets = tuple(t.format(i=i) for t in rule.targets)
            if not all(t in layers for t in targets):
                break
            out[rule.source.format(i=i)] = targets
    return out


@dataclass
class LokrFile:
    """One written LoKr file and what is in it."""

    layout: LokrLayout
    form: LokrForm
    state_dict: dict[str, torch.Tensor]
    modules: list[str]  # file modules written (stray ones excluded)
    stray_keys: list[str] = field(default_factory=list)

    def names(self, sources: Iterable[str]) -> list[str]:
        """How a message may name these modules' keys: in full, and without the layout's
        prefix (converters strip it before they complain)."""
        out: list[str] = []
        for source in sources:
            module = self.layout.module_name(source)
            keys = [k for k in self.state_dict if k.startswith(module + ".")]
            keys = keys or [self.layout.key(source, t) for t in ("lokr_w1", "lokr_w2")]
            out += [module, *keys]
            out += [n.removeprefix(self.layout.prefix) for n in (module, *keys)]
        return out

    def save(self, folder: Path, name: str = "lokr.safetensors") -> Path:
        path = folder / name
        write_safetensors(path, self.state_dict)
        return path


def write_lokr(
    layout: LokrLayout,
    layers: Mapping[str, Layer],
    form: str = "lowrank",
    alpha: float | None = LOW_RANK_ALPHA,
    seed: int = 0,
    omit: Iterable[str] = (),
    stray: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LokrFile:
    """A file on every module the layout names in this model (less ``omit``), the factors
    shaped as LyCORIS shapes them for ``form``, ``.alpha`` where the layout carries it and
    ``alpha`` is given (LyCORIS's forced alpha = rank where both factors are whole), plus a
    stray module if asked. A fused file module (Flux2 ``img_attn.qkv``) is one Linear of
    the parts' summed width."""
    chosen = FORMS[form]
    skip = set(omit)
    table = lokr_modules(layout, layers)
    modules = [s for s in table if s not in skip]
    gen = torch.Generator().manual_seed(seed)
    widths = [
        (s, layers[table[s][0]].in_features, sum(layers[t].out_features for t in table[s]))
        for s in modules
    ]
    if stray:
        widths.append((layout.stray, STRAY_WIDTH, STRAY_WIDTH))
    state: dict[str, torch.Tensor] = {}
    for source, n_in, n_out in widths:
        shapes = factor_shapes(n_out, n_in, chosen, layout.factor)
        for tensor, (rows, cols) in shapes.items():
            state[layout.key(source, tensor)] = (
                torch.randn(rows, cols, generator=gen) / cols**0.5
            ).to(dtype)
        if layout.alpha and alpha is not None:
            whole = "lokr_w1" in shapes and "lokr_w2" in shapes
            value = float(chosen.dim) if whole else float(alpha)
            state[layout.key(source, "alpha")] = torch.tensor(value, dtype=dtype)
    stray_module = layout.module_name(layout.stray) + "."
    stray_keys = [k for k in state if stray and k.startswith(stray_module)]
    return LokrFile(layout, chosen, state, modules, stray_keys)


def _same_names(paths: Iterable[str], block: str) -> tuple[Rule, ...]:
    """Rules for files that use diffusers' own module names under ``block.{i}``."""
    return tuple(Rule(f"{block}.{{i}}.{p}", (f"{block}.{{i}}.{p}",)) for p in paths)


#: Flux2's block Linears under diffusers' names (``Flux2TransformerBlock``,
#: ``Flux2SingleTransformerBlock``); the modulation Linears live outside the blocks.
FLUX2_DIFFUSERS_RULES = (
    *_same_names(
        (
            "attn.to_q",
            "attn.to_k",
            "attn.to_v",
            "attn.to_out.0",
            "attn.add_q_proj",
            "attn.add_k_proj",
            "attn.add_v_proj",
            "attn.to_add_out",
            "ff.linear_in",
            "ff.linear_out",
            "ff_context.linear_in",
            "ff_context.linear_out",
        ),
        "transformer_blocks",
    ),
    *_same_names(("attn.to_qkv_mlp_proj", "attn.to_out"), "single_transformer_blocks"),
)
FLUX2_DIFFUSERS_PARTIAL = (
    "transformer_blocks.0.attn.to_k",
    tuple(f"transformer_blocks.0.attn.{p}" for p in ("to_q", "to_k", "to_v")),
)

#: Z-Image's ``ZImageTransformerBlock`` Linears (ai-toolkit trains the diffusers model, so
#: its names are diffusers'): attention q/k/v/out, SwiGLU w1/w2/w3, the adaLN modulation.
ZIMAGE_RULES = _same_names(
    (
        "attention.to_q",
        "attention.to_k",
        "attention.to_v",
        "attention.to_out.0",
        "feed_forward.w1",
        "feed_forward.w2",
        "feed_forward.w3",
        "adaLN_modulation.0",
    ),
    "layers",
)
ZIMAGE_PARTIAL = (
    "layers.0.attention.to_k",
    tuple(f"layers.0.attention.{p}" for p in ("to_q", "to_k", "to_v")),
)

LOKR_LAYOUT_LIST: tuple[LokrLayout, ...] = (
    LokrLayout(
        "flux2",
        "lycoris",
        "LyCORIS network on the diffusers model (SimpleTuner lora_type=lycoris): "
        "lycoris_ + diffusers path with underscores",
        "lycoris_",
        True,
        True,
        True,
        ("full", "lowrank", "both-lowrank"),
        -1,
        FLUX2_DIFFUSERS_RULES,
        FLUX2_DIFFUSERS_PARTIAL,
        "transformer_blocks.0.bogus0",
        "_convert_lycoris_flux2_lokr_to_diffusers",
        notes="LyCORIS registers alpha as a buffer of every module, so it is always saved",
    ),
    LokrLayout(
        "flux2",
        "aitoolkit",
        "ai-toolkit: diffusion_model. + BFL names (fused img_attn.qkv / txt_attn.qkv)",
        "diffusion_model.",
        False,
        True,
        True,
        ("full", "lowrank"),
        -1,
        FLUX2_BLOCK_RULES,
        FLUX2_PARTIAL,
        "double_blocks.0.bogus0",
        "_convert_non_diffusers_flux2_lokr_to_diffusers",
        notes="a fused qkv's delta is one Kronecker product over the fused width",
    ),
    LokrLayout(
        "flux2",
        "dotted",
        "bare dotted diffusers module paths (LyCORIS exports keyed by module path), alpha optional",
        "",
        False,
        True,
        False,
        ("full", "lowrank"),
        -1,
        FLUX2_DIFFUSERS_RULES,
        FLUX2_DIFFUSERS_PARTIAL,
        "transformer_blocks.0.bogus0",
        "_convert_non_diffusers_lokr_to_diffusers",
    ),
    LokrLayout(
        "flux2",
        "peft",
        "peft's own LoKr naming under transformer. (a peft LoKr adapter saved by diffusers)",
        "transformer.",
        False,
        False,
        False,
        ("full", "lowrank"),
        -1,
        FLUX2_DIFFUSERS_RULES,
        FLUX2_DIFFUSERS_PARTIAL,
        "transformer_blocks.0.bogus0",
        "",
        notes="peft keeps alpha in its config, not in the weights: without metadata scale 1",
    ),
    LokrLayout(
        "zimage",
        "aitoolkit",
        "ai-toolkit: diffusion_model. + diffusers names + alpha",
        "diffusion_model.",
        False,
        True,
        True,
        ("full", "lowrank"),
        -1,
        ZIMAGE_RULES,
        ZIMAGE_PARTIAL,
        "layers.0.bogus0",
        "_convert_non_diffusers_lokr_to_diffusers",
    ),
)

LOKR_LAYOUTS: dict[str, LokrLayout] = {layout.row: layout for layout in LOKR_LAYOUT_LIST}
