"""LoRA file formats as data: how each names a group's down / up / alpha tensors.

A format answers three questions, and nothing else:

* which *groups* it can express for an architecture (``expressible``): fused BFL groups for
  the Flux-native formats, one module per group for the others, restricted to the modules
  the format's trainers target (e.g. XLabs only trains double-block attention);
* the *stem* of a group (``stem``): the key prefix before ``.lora_down.weight`` & co;
* the key *grammar* (``pattern``) used to recognise a user's file.

A format's ``complete`` file is what its trainers ship (the layers they train, with or
without alphas); families real files carry only sometimes (``optional``: Flux embedders and
final layer, control-LoRA ``lora_B.bias``, OneTrainer's T5 keys) are written only on request,
so each is its own suite row. Where each layout fact comes from: ``fixtures/lora/README.md``.

The writer (``harness.inputs.checkpoints.lora.build``) and the reference
(``harness.oracles.lora``) both read these tables; neither calls diffusers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from harness.inputs.checkpoints.lora.layouts import (
    ARCH_COMPONENTS,
    ComponentLayout,
    Group,
    Layer,
    ModelLayout,
    flux_groups,
    flux_norms,
    module_groups,
    sgm_unet_map,
    to_sgm,
)


@dataclass(frozen=True)
class Suffixes:
    down: str
    up: str
    alpha: str | None

    def all(self) -> tuple[str, ...]:
        return tuple(s for s in (self.down, self.up, self.alpha) if s)


KOHYA_SUFFIXES = Suffixes(".lora_down.weight", ".lora_up.weight", ".alpha")
PEFT_SUFFIXES = Suffixes(".lora_A.weight", ".lora_B.weight", ".alpha")
XLABS_SUFFIXES = Suffixes(".down.weight", ".up.weight", None)

#: What kohya-style trainers target: attention-block layers of the UNet, CLIP attn/MLP.
_UNET_TARGET = re.compile(
    r"attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2)))$"
)
_TE_TARGET = re.compile(
    r"encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))$"
)
#: Attention layers only (the ``lora_transformer_`` "mixture" converter names nothing else
#: inside a block).
_FLUX_ATTN = re.compile(
    r"attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)$"
)
#: XLabs (x-flux ``src/flux/modules/layers.py``) trains attention through processors:
#: ``DoubleStreamBlockLoraProcessor`` (qkv_lora1/2 on ``img_attn.qkv`` / ``txt_attn.qkv``,
#: proj_lora1/2 on the projections) and, since x-flux's "single_blocks" training option
#: (2024-09), ``SingleStreamBlockLoraProcessor``: ``qkv_lora`` adds to the q/k/v rows of
#: ``linear1`` only (not ``proj_mlp``), ``proj_lora`` (15360 -> 3072) to ``linear2``. Keys:
#: ``<blocks>.N.processor.<name>.down/up.weight``. BFL block kind -> BFL layer -> name.
_XLABS_NAMES: dict[str, dict[str, str]] = {
    "double_blocks": {
        "img_attn.qkv": "qkv_lora1",
        "txt_attn.qkv": "qkv_lora2",
        "img_attn.proj": "proj_lora1",
        "txt_attn.proj": "proj_lora2",
    },
    "single_blocks": {"linear1": "qkv_lora", "linear2": "proj_lora"},
}
#: The rows of a fused BFL layer XLabs' processors do not train (``linear1``'s MLP input).
_XLABS_UNTRAINED = re.compile(r"^single_transformer_blocks\.\d+\.proj_mlp$")


#: Optional families: name -> what it adds. ``group`` families are model layers (selected
#: by :func:`family_of`); ``key`` families are extra keys on the pairs (``biases``) or pairs
#: for a component no diffusers Flux loader targets (``t5``).
FAMILIES: dict[str, str] = {
    "embedders": "group",
    "final-layer": "group",
    "single-blocks": "group",
    "biases": "key",
    "t5": "key",
}
#: BFL names of the Flux layers outside the blocks, by family, and of the single-stream
#: blocks: a family only for formats that list it as optional (XLabs files carry single
#: blocks only when trained with x-flux's ``single_blocks`` option; the XLabs collection's
#: files have double blocks only). Every other format writes them in ``complete``.
_FLUX_FAMILY_NATIVE: dict[str, tuple[str, ...]] = {
    "embedders": ("img_in", "txt_in", "time_in.", "vector_in.", "guidance_in."),
    "final-layer": ("final_layer.",),
    "single-blocks": ("single_blocks.",),
}


#: Group families that are a family only for a format listing them in ``optional``; for
#: every other format (and for callers that name none) they are plain block layers.
_FORMAT_ONLY_FAMILIES = frozenset({"single-blocks"})


def family_of(arch: str, group: Group, fmt: LoraFormat | None = None) -> str | None:
    """The family a (native) group belongs to, ``None`` for block layers; it makes the
    group optional only in formats that list the family in ``optional``. Single blocks
    are a family only for ``fmt`` listing them (XLabs), else block layers."""
    if arch != "flux" or group.component != "transformer":
        return None
    for family, prefixes in _FLUX_FAMILY_NATIVE.items():
        if group.native.startswith(prefixes):
            if family in _FORMAT_ONLY_FAMILIES and (fmt is None or family not in fmt.optional):
                return None
            return family
    return None


#: OneTrainer's T5 key names (``lora_te2_`` + the T5 encoder module path with ``_``): per
#: block, (module path, in width, out width) as attributes of :data:`T5_WIDTHS`.
T5_LAYERS: tuple[tuple[str, str, str], ...] = (
    ("layer_0_SelfAttention_q", "d_model", "inner"),
    ("layer_0_SelfAttention_k", "d_model", "inner"),
    ("layer_0_SelfAttention_v", "d_model", "inner"),
    ("layer_0_SelfAttention_o", "inner", "d_model"),
    ("layer_1_DenseReluDense_wi_0", "d_model", "d_ff"),
    ("layer_1_DenseReluDense_wi_1", "d_model", "d_ff"),
    ("layer_1_DenseReluDense_wo", "d_ff", "d_model"),
)
#: T5-XXL (Flux's ``text_encoder_2``) at real size, and a small stand-in for the tiny rows
#: (no Flux loader reads these keys, so their widths only matter for the manifests).
T5_WIDTHS: dict[str, dict[str, int]] = {
    "full": {"blocks": 24, "d_model": 4096, "inner": 4096, "d_ff": 10240},
    "tiny": {"blocks": 2, "d_model": 8, "inner": 8, "d_ff": 16},
}


def t5_layers(size: str) -> dict[str, Layer]:
    """OneTrainer T5 stems (``lora_te2_encoder_block_N_...``) -> their layer shape."""
    w = T5_WIDTHS[size]
    return {
        f"lora_te2_encoder_block_{i}_{name}": Layer(w[a], w[b])
        for i in range(w["blocks"])
        for name, a, b in T5_LAYERS
    }


def _us(path: str) -> str:
    return path.replace(".", "_")


StemFn = Callable[[str, Group, ModelLayout], "str | None"]


@dataclass(frozen=True)
class LoraFormat:
    """One LoRA key layout. ``native_fused``: groups are stored fused (BFL names); otherwise
    every part of a group gets its own pair. ``alpha``: the format may carry alpha keys."""

    name: str
    arches: tuple[str, ...]
    suffixes: Suffixes
    native_fused: bool
    alpha: bool
    stem: StemFn
    pattern: re.Pattern[str]
    description: str
    part_filter: Callable[[str, str, str], bool] = lambda arch, component, path: True
    #: DoRA: suffix of the magnitude key (``None``: not a DoRA format) and its stored shape:
    #: ``row`` = ``(out,)`` (PEFT), ``column`` = ``(out, 1)`` (LyCORIS ``wd_on_out=True``),
    #: both one magnitude per output row; ``input`` = ``(1, in)`` (OneTrainer, LyCORIS
    #: ``wd_on_out=False``): one magnitude per *input column*, norms taken down each column.
    magnitude: str | None = None
    magnitude_shape: str = "row"
    #: Optional families (names from :data:`FAMILIES`) real files of this format carry
    #: only sometimes: left out of ``complete``, written on request.
    optional: tuple[str, ...] = ()
    #: Suffix of the up matrix's bias (``.lora_B.bias``: peft ``lora_bias``), written with
    #: the ``biases`` family.
    bias: str | None = None
    #: The format this one is a narrower reading of (same key grammar, e.g. kohya keys with
    #: diffusers block names on SDXL): detection prefers it on a tie.
    refines: str | None = None
    #: Layers whose LoRA down matrix is wider than the model's layer, by diffusers path ->
    #: factor (Flux Control: ``x_embedder`` takes the control latents too, 64 -> 128).
    expand_in: tuple[tuple[str, int], ...] = ()
    #: Full (non-LoRA) weights the file carries: file key -> (component, parameter path,
    #: width), e.g. Flux Control's RMSNorm scales.
    norms: Callable[[str, ModelLayout], dict[str, tuple[str, str, int]]] | None = None
    #: Only loadable at the real model size: the library's converter hard-codes Flux-dev's
    #: 19 + 38 blocks and pops every key (tiny models: covered at full scale instead).
    full_only: bool = False

    def supports(self, arch: str) -> bool:
        return arch in self.arches

    @property
    def extension(self) -> bool:
        """A format with more than down/up/alpha (DoRA, control, full-size-only): checked
        by its own modules (test_dora / test_control / full scale), not the generic draws."""
        return bool(self.magnitude or self.norms or self.expand_in or self.full_only)

    def widen(self, path: str) -> int:
        return dict(self.expand_in).get(path, 1)

    def split_key(self, key: str) -> tuple[str, str] | None:
        """``<stem><suffix>`` -> (stem, role) with role down / up / alpha / magnitude /
        bias; ``None`` for a key of no role in this format. The one place that reads keys
        by this format's suffixes (the reference and the stdlib-only detector share it)."""
        for role, suffix in (
            ("down", self.suffixes.down),
            ("up", self.suffixes.up),
            ("alpha", self.suffixes.alpha),
            ("magnitude", self.magnitude),
            ("bias", self.bias),
        ):
            if suffix and key.endswith(suffix):
                return key[: -len(suffix)], role
        return None

    def magnitude_fits(self, shape: tuple[int, ...] | list[int]) -> bool:
        """Whether a stored magnitude of ``shape`` is in this format's convention."""
        shape = tuple(shape)
        if self.magnitude_shape == "row":
            return len(shape) == 1
        if self.magnitude_shape == "column":
            return len(shape) >= 2 and shape[1] == 1 and shape[0] > 1
        return len(shape) >= 2 and shape[0] == 1 and shape[1] > 1


# --------------------------------------------------------------------------- stems
def _peft_stem(prefix: str = "", with_component: bool = True) -> StemFn:
    def stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
        path = group.parts[0]
        if with_component:
            return f"{prefix}{group.component}.{path}"
        return f"{prefix}{path}" if group.component == _denoiser(arch) else None

    return stem


def _denoiser(arch: str) -> str:
    return ARCH_COMPONENTS[arch][0]


_TE_KOHYA = {"text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}
_TE_KOHYA_XL = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}


def _kohya_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    if group.component in ("text_encoder", "text_encoder_2"):
        table = _TE_KOHYA if arch == "sd15" else _TE_KOHYA_XL
        return table[group.component] + _us(group.parts[0])
    if arch == "flux":
        return "lora_unet_" + _us(group.native)
    if arch == "sdxl":
        sgm = to_sgm(group.parts[0], sgm_unet_map(layout["unet"]))
        return None if sgm is None else "lora_unet_" + _us(sgm)
    return "lora_unet_" + _us(group.parts[0])


def _comfy_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    if group.component == "text_encoder":
        return "text_encoders.clip_l.transformer." + group.parts[0]
    if group.component == "transformer":
        return "diffusion_model." + group.native
    return None


def _mixture_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    if group.component == "text_encoder":
        return "lora_te1_" + _us(group.parts[0])
    return "lora_transformer_" + _us(group.parts[0])


def _xlabs_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    if group.component != "transformer" or group.native.count(".") < 2:
        return None
    kind, idx, rest = group.native.split(".", 2)
    name = _XLABS_NAMES.get(kind, {}).get(rest)
    return None if name is None else f"{kind}.{idx}.processor.{name}"


def _xlabs_filter(arch: str, component: str, path: str) -> bool:
    """The rows XLabs' processors train: every part but ``linear1``'s MLP input."""
    return not _XLABS_UNTRAINED.search(path)


def _kohya_diffusers_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    """kohya keys with diffusers block names on SDXL (OneTrainer, newer sd-scripts)."""
    if group.component in ("text_encoder", "text_encoder_2"):
        return _TE_KOHYA_XL[group.component] + _us(group.parts[0])
    return "lora_unet_" + _us(group.parts[0])


def _ai_toolkit_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    return "diffusion_model." + group.native if group.component == "transformer" else None


def _control_bfl_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    return group.native if group.component == "transformer" else None


def _fal_kontext_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    if group.component != "transformer" or not group.native.startswith(_FAL_KONTEXT_NATIVE):
        return None
    return "base_model.model." + group.native


def _denoiser_stem(arch: str, group: Group, layout: ModelLayout) -> str | None:
    """``transformer.<module>``: the diffusers layout of a denoiser-only adapter."""
    return f"transformer.{group.parts[0]}" if group.component == "transformer" else None


#: What the fal-kontext converter reads: the blocks and ``final_layer.linear`` (nothing
#: else outside the blocks).
_FAL_KONTEXT_NATIVE = ("double_blocks.", "single_blocks.", "final_layer.linear")

#: Flux Control LoRAs widen the image input (control latents concatenated): 64 -> 128.
_CONTROL_EXPAND = (("x_embedder", 2),)


def _control_norms(arch: str, layout: ModelLayout) -> dict[str, tuple[str, str, int]]:
    """diffusers layout: ``transformer.<block>.attn.norm_q.weight`` & co."""
    return {
        f"transformer.{path}": ("transformer", path, width)
        for _, path, width in flux_norms(layout["transformer"])
    }


def _control_bfl_norms(arch: str, layout: ModelLayout) -> dict[str, tuple[str, str, int]]:
    """BFL layout: ``double_blocks.N.img_attn.norm.query_norm.scale`` & co."""
    return {
        bfl: ("transformer", path, width) for bfl, path, width in flux_norms(layout["transformer"])
    }


def _sd_part_filter(arch: str, component: str, path: str) -> bool:
    if component.startswith("text_encoder"):
        return bool(_TE_TARGET.search(path))
    if component == "unet":
        return bool(_UNET_TARGET.search(path))
    return True


def _flux_part_filter(arch: str, component: str, path: str) -> bool:
    if component == "text_encoder":
        return bool(_TE_TARGET.search(path))
    return True


#: SD3 transformer layers no LoRA file targets: the 2x2 patchify convolution (trainers
#: wrap Linear layers only; diffusers' SD3 scripts name attention / feed-forward / norms).
_SD3_UNTARGETED = re.compile(r"^pos_embed\.")


def _sd3_part_filter(arch: str, component: str, path: str) -> bool:
    if component.startswith("text_encoder"):
        return bool(_TE_TARGET.search(path))
    return not _SD3_UNTARGETED.search(path)


#: Which layers each architecture's files carry (kohya-style targets for SD1.5 / SDXL).
_ARCH_FILTER: dict[str, Callable[[str, str, str], bool]] = {
    "flux": _flux_part_filter,
    "sd3": _sd3_part_filter,
}


def _default_filter(arch: str, component: str, path: str) -> bool:
    return _ARCH_FILTER.get(arch, _sd_part_filter)(arch, component, path)


def _denoiser_filter(arch: str, component: str, path: str) -> bool:
    return component == _denoiser(arch) and _default_filter(arch, component, path)


def _mixture_filter(arch: str, component: str, path: str) -> bool:
    if component == "text_encoder":
        return bool(_TE_TARGET.search(path))
    if "blocks." in path:
        return bool(_FLUX_ATTN.search(path))
    return True


# --------------------------------------------------------------------------- the table
FORMATS: dict[str, LoraFormat] = {
    f.name: f
    for f in (
        LoraFormat(
            "peft",
            ("sd15", "sdxl", "sd3", "flux"),
            PEFT_SUFFIXES,
            native_fused=False,
            alpha=False,
            stem=_peft_stem(),
            pattern=re.compile(
                r"^(unet|transformer|text_encoder|text_encoder_2)\..+\.lora_[AB]\.weight$"
            ),
            description="diffusers/PEFT: `<component>.<module>.lora_A/B.weight`",
            part_filter=_default_filter,
        ),
        LoraFormat(
            "peft_alpha",
            ("flux",),
            PEFT_SUFFIXES,
            native_fused=False,
            alpha=True,
            stem=_peft_stem(),
            pattern=re.compile(r"^(transformer|text_encoder)\..+\.(lora_[AB]\.weight|alpha)$"),
            description="diffusers/PEFT names plus `<module>.alpha` scalars (e.g. TheLastBen Flux LoRAs)",
            part_filter=_default_filter,
        ),
        LoraFormat(
            "peft_bare",
            ("sd15", "sdxl", "sd3", "flux"),
            PEFT_SUFFIXES,
            native_fused=False,
            alpha=False,
            stem=_peft_stem(with_component=False),
            pattern=re.compile(
                r"^(?!unet\.|transformer\.|text_encoder|base_model\.)[a-z_]+\.\d.*\.lora_[AB]\.weight$"
            ),
            description="PEFT names without a component prefix (a denoiser-only adapter)",
            part_filter=_default_filter,
        ),
        LoraFormat(
            "peft_base_model",
            ("sd15", "sdxl", "sd3", "flux"),
            PEFT_SUFFIXES,
            native_fused=False,
            alpha=False,
            stem=_peft_stem("base_model.model.", with_component=False),
            pattern=re.compile(
                r"^base_model\.model\.(?!double_blocks|single_blocks).+\.lora_[AB]\.weight$"
            ),
            description="peft `PeftModel.save_pretrained` layout: `base_model.model.<module>`",
            part_filter=_default_filter,
        ),
        LoraFormat(
            "kohya",
            ("sd15", "sdxl", "flux"),
            KOHYA_SUFFIXES,
            native_fused=True,
            alpha=True,
            stem=_kohya_stem,
            pattern=re.compile(
                r"^lora_(unet|te|te1|te2)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$"
            ),
            description="kohya sd-scripts: `lora_unet_*` (SDXL: SGM block names; Flux: BFL names, fused qkv/linear1), `lora_te*_`",
            part_filter=_default_filter,
            optional=("embedders", "final-layer"),
        ),
        LoraFormat(
            "kohya_diffusers",
            ("sdxl",),
            KOHYA_SUFFIXES,
            native_fused=False,
            alpha=True,
            stem=_kohya_diffusers_stem,
            pattern=re.compile(
                r"^lora_(unet_(down_blocks|mid_block|up_blocks)|te1|te2)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$"
            ),
            description="kohya keys with diffusers block names on SDXL "
            "(`lora_unet_down_blocks_1_attentions_0_...`: OneTrainer, sd-scripts SDXL files)",
            part_filter=_default_filter,
            refines="kohya",
        ),
        LoraFormat(
            "comfy",
            ("flux",),
            KOHYA_SUFFIXES,
            native_fused=True,
            alpha=True,
            stem=_comfy_stem,
            pattern=re.compile(
                r"^(diffusion_model|text_encoders\.clip_l\.transformer)\..+\.(lora_down\.weight|lora_up\.weight|alpha)$"
            ),
            description="ComfyUI: `diffusion_model.<BFL name>.lora_down/up.weight`, `.alpha`",
            part_filter=_flux_part_filter,
            optional=("embedders", "final-layer"),
        ),
        LoraFormat(
            "ai_toolkit",
            ("flux",),
            PEFT_SUFFIXES,
            native_fused=True,
            alpha=False,
            stem=_ai_toolkit_stem,
            pattern=re.compile(
                r"^diffusion_model\.(double_blocks|single_blocks|img_in|txt_in|time_in|vector_in|guidance_in|final_layer)[.].*lora_[AB]\.weight$"
            ),
            description="ai-toolkit: `diffusion_model.<BFL name>.lora_A/B.weight`, no alpha",
            part_filter=_denoiser_filter,
            optional=("embedders", "final-layer"),
        ),
        LoraFormat(
            "mixture",
            ("flux",),
            KOHYA_SUFFIXES,
            native_fused=False,
            alpha=True,
            stem=_mixture_stem,
            pattern=re.compile(
                r"^lora_(transformer|te1|te2)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$"
            ),
            description="OneTrainer Flux: `lora_transformer_<diffusers module with _>`, "
            "`lora_te1_` CLIP, optional `lora_te2_` T5 keys",
            part_filter=_mixture_filter,
            optional=("embedders", "final-layer", "t5"),
        ),
        LoraFormat(
            "xlabs",
            ("flux",),
            XLABS_SUFFIXES,
            native_fused=True,
            alpha=False,
            stem=_xlabs_stem,
            pattern=re.compile(
                r"^(diffusion_model\.)?(double_blocks\.\d+\.processor\.(qkv|proj)_lora[12]"
                r"|single_blocks\.\d+\.processor\.(qkv|proj)_lora)\.(down|up)\.weight$"
            ),
            description="XLabs: `double_blocks.N.processor.qkv_lora1.down.weight` (no alpha); "
            "optional `single_blocks.N.processor.qkv_lora` / `proj_lora`",
            part_filter=_xlabs_filter,
            optional=("single-blocks",),
        ),
        # ------------------------------------------------------------- extensions
        LoraFormat(
            "peft_dora",
            ("sd15", "sdxl", "sd3", "flux"),
            PEFT_SUFFIXES,
            native_fused=False,
            alpha=False,
            stem=_peft_stem(),
            pattern=re.compile(
                r"^(unet|transformer|text_encoder|text_encoder_2)\..+\.(lora_[AB]\.weight|lora_magnitude_vector)$"
            ),
            description="diffusers/PEFT DoRA: PEFT names plus `<module>.lora_magnitude_vector` (out,)",
            part_filter=_default_filter,
            magnitude=".lora_magnitude_vector",
        ),
        LoraFormat(
            "kohya_dora",
            ("sd15", "sdxl", "flux"),
            KOHYA_SUFFIXES,
            native_fused=True,
            alpha=True,
            stem=_kohya_stem,
            pattern=re.compile(
                r"^lora_(unet|te|te1|te2)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha|dora_scale)$"
            ),
            description="kohya / LyCORIS DoRA: kohya names plus `<stem>.dora_scale` (out, 1)",
            part_filter=_default_filter,
            magnitude=".dora_scale",
            magnitude_shape="column",
            optional=("embedders", "final-layer"),
        ),
        LoraFormat(
            "kohya_dora_in",
            ("sd15", "sdxl"),
            KOHYA_SUFFIXES,
            native_fused=True,
            alpha=True,
            stem=_kohya_stem,
            pattern=re.compile(
                r"^lora_(unet|te|te1|te2)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha|dora_scale)$"
            ),
            description="OneTrainer / LyCORIS (`wd_on_out=False`) DoRA: kohya names plus "
            "`<stem>.dora_scale` (1, in), one magnitude per input column",
            part_filter=_default_filter,
            magnitude=".dora_scale",
            magnitude_shape="input",
        ),
        LoraFormat(
            "mixture_dora",
            ("flux",),
            KOHYA_SUFFIXES,
            native_fused=False,
            alpha=True,
            stem=_mixture_stem,
            pattern=re.compile(
                r"^lora_(transformer|te1|te2)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha|dora_scale)$"
            ),
            description="OneTrainer Flux DoRA: `lora_transformer_*` plus `dora_scale` (1, in) "
            "on every module",
            part_filter=_mixture_filter,
            magnitude=".dora_scale",
            magnitude_shape="input",
            optional=("embedders", "final-layer"),
        ),
        LoraFormat(
            "control",
            ("flux",),
            PEFT_SUFFIXES,
            native_fused=False,
            alpha=False,
            stem=_denoiser_stem,
            pattern=re.compile(
                r"^transformer\..+\.(lora_[AB]\.weight|lora_B\.bias|norm_(added_)?[qk]\.weight)$"
            ),
            description="Flux Control LoRA, diffusers layout (`train_control_lora_flux.py`): "
            "`transformer.<module>.lora_A/B`, `x_embedder` down 2x wide, `attn.norm_q/k.weight`",
            part_filter=_denoiser_filter,
            expand_in=_CONTROL_EXPAND,
            norms=_control_norms,
            optional=("biases",),
            bias=".lora_B.bias",
        ),
        LoraFormat(
            "control_bfl",
            ("flux",),
            PEFT_SUFFIXES,
            native_fused=True,
            alpha=False,
            stem=_control_bfl_stem,
            pattern=re.compile(
                r"^(double_blocks|single_blocks|img_in|txt_in|time_in|vector_in|guidance_in|final_layer)\.(.+\.)?(lora_[AB]\.weight|lora_B\.bias|(query|key)_norm\.scale)$"
            ),
            description="BFL Flux Control LoRA (Canny/Depth): BFL names with `lora_A/B`, "
            "`img_in` down 2x wide, `*.norm.query_norm/key_norm.scale`",
            part_filter=_denoiser_filter,
            expand_in=_CONTROL_EXPAND,
            norms=_control_bfl_norms,
            full_only=True,
            optional=("biases",),
            bias=".lora_B.bias",
        ),
        LoraFormat(
            "fal_kontext",
            ("flux",),
            PEFT_SUFFIXES,
            native_fused=True,
            alpha=False,
            stem=_fal_kontext_stem,
            pattern=re.compile(
                r"^base_model\.model\.(double_blocks|single_blocks|final_layer)\..+\.lora_[AB]\.weight$"
            ),
            description="fal Kontext trainer: `base_model.model.<BFL name>.lora_A/B.weight`",
            part_filter=_denoiser_filter,
            full_only=True,
        ),
    )
}


def get_format(name: str) -> LoraFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown LoRA format {name!r}; known: {', '.join(FORMATS)}") from None


# --------------------------------------------------------------------------- groups
def native_groups(arch: str, layout: ModelLayout) -> list[Group]:
    """All groups of a model in its family's native grouping (BFL fused for Flux)."""
    groups: list[Group] = []
    for component, comp_layout in layout.items():
        if arch == "flux" and component == "transformer":
            groups += flux_groups(comp_layout)
        else:
            groups += module_groups(component, comp_layout, comp_layout.layers)
    return groups


def split_group(group: Group, parts: tuple[str, ...] | None = None) -> list[Group]:
    """One single-part group per (selected) part of a fused group."""
    out = []
    for part, width in zip(group.parts, group.widths, strict=True):
        if parts is not None and part not in parts:
            continue
        out.append(Group(group.component, part, (part,), (width,), group.in_features, group.kernel))
    return out


def rows_of(group: Group, parts: tuple[str, ...]) -> Group:
    """The rows of ``parts`` of a fused group, as the group a fused format stores when its
    trainer trains only those rows of the layer (XLabs' single-block ``qkv_lora``: the
    q/k/v rows of ``linear1``, an up matrix 3 x width high). Same native name."""
    widths = dict(zip(group.parts, group.widths, strict=True))
    return Group(
        group.component,
        group.native,
        parts,
        tuple(widths[p] for p in parts),
        group.in_features,
        group.kernel,
        group.permute,
    )


def expressible(
    fmt: LoraFormat, arch: str, layout: ModelLayout, families: Iterable[str] = ()
) -> list[tuple[Group, tuple[str, ...]]]:
    """(native group, parts this format can carry) for every group the format can express;
    groups of the format's optional families only when ``families`` asks for them."""
    out = []
    wanted = set(families)
    for group in native_groups(arch, layout):
        if fmt.magnitude and group.kernel != (0, 0):
            continue  # DoRA: Linear layers only (see LoraFormat.magnitude)
        family = family_of(arch, group, fmt)
        if family in fmt.optional and family not in wanted:
            continue
        parts = tuple(p for p in group.parts if fmt.part_filter(arch, group.component, p))
        if not parts:
            continue
        if fmt.native_fused:
            if fmt.stem(arch, group, layout) is None:
                continue
            if parts != group.parts:
                group = rows_of(group, parts)
        else:
            parts = tuple(
                p.parts[0]
                for p in split_group(group, parts)
                if fmt.stem(arch, p, layout) is not None
            )
            if not parts:
                continue
        out.append((group, parts))
    return out


def stems_of(fmt: LoraFormat, arch: str, layout: ModelLayout) -> dict[str, Group]:
    """Stem -> the group a pair under that stem stores (the inverse of the writer's naming)."""
    table: dict[str, Group] = {}
    for group, parts in expressible(fmt, arch, layout, fmt.optional):
        if fmt.native_fused:
            stem = fmt.stem(arch, group, layout)
            if stem is not None:
                table[stem] = group
        else:
            for single in split_group(group, parts):
                stem = fmt.stem(arch, single, layout)
                if stem is not None:
                    table[stem] = single
    return table


def layout_for(layout: ModelLayout, component: str) -> ComponentLayout:
    return layout[component]
