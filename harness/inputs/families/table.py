"""The family axis as data: what each LoRA-loading model family is made of.

One row per family, in the order users load them (issue #20). Each names the public
classes a release must have for the family to exist there (``mixin``, ``pipeline``,
``denoiser``), the pipeline attribute that holds the denoiser (the mixin's
``transformer_name``), a tiny denoiser config and which module paths are its transformer
blocks. The config is the *newest* superset of constructor keywords; an older release
drops the ones it lacks (:func:`harness.inputs.models.build.filter_kwargs`). Widths follow
diffusers' own tiny test configs (``tests/lora/test_lora_layers_<family>.py``), cut to
one or two blocks: the LoRA mixins only need ``pipe.<transformer_name>``.

A family whose classes are absent in a release is UNSUPPORTED there (grey), so it enters
the grid in the release that adds it without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    """One model family: the classes it needs and its tiny denoiser."""

    name: str  # row id, lowercase
    mixin: str  # ``diffusers.loaders`` class
    pipeline: str  # ``diffusers`` pipeline class that inherits ``mixin``
    denoiser: str  # ``diffusers`` model class
    config: dict[str, Any] = field(default_factory=dict)
    #: Module-path prefixes of the transformer blocks (LoRA targets: every Linear below).
    blocks: tuple[str, ...] = ("transformer_blocks.",)
    #: Pipeline attribute of the denoiser (the mixin's ``transformer_name``).
    attr: str = "transformer"
    #: Smallest real components for releases whose pipeline constructor cannot take
    #: ``None`` for them: attribute -> (diffusers class, config). Built only then.
    fallback: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


FAMILY_LIST: tuple[Family, ...] = (
    Family(
        "qwenimage",
        "QwenImageLoraLoaderMixin",
        "QwenImagePipeline",
        "QwenImageTransformer2DModel",
        {
            "patch_size": 2,
            "in_channels": 16,
            "out_channels": 4,
            "num_layers": 2,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 16,
            "guidance_embeds": False,
            "axes_dims_rope": (8, 4, 4),
        },
    ),
    Family(
        "wan",
        "WanLoraLoaderMixin",
        "WanPipeline",
        "WanTransformer3DModel",
        {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 2,
            "attention_head_dim": 12,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 32,
            "freq_dim": 32,
            "ffn_dim": 32,
            "num_layers": 2,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "rope_max_seq_len": 32,
        },
        blocks=("blocks.",),
    ),
    Family(
        "flux2",
        "Flux2LoraLoaderMixin",
        "Flux2Pipeline",
        "Flux2Transformer2DModel",
        {
            "patch_size": 1,
            "in_channels": 16,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 32,
            "timestep_guidance_channels": 32,
            "mlp_ratio": 2.0,
            "axes_dims_rope": (4, 4, 4, 4),
        },
        blocks=("transformer_blocks.", "single_transformer_blocks."),
    ),
    Family(
        "hunyuanvideo",
        "HunyuanVideoLoraLoaderMixin",
        "HunyuanVideoPipeline",
        "HunyuanVideoTransformer3DModel",
        {
            "in_channels": 4,
            "out_channels": 4,
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "num_layers": 1,
            "num_single_layers": 1,
            "num_refiner_layers": 1,
            "patch_size": 1,
            "patch_size_t": 1,
            "guidance_embeds": True,
            "text_embed_dim": 16,
            "pooled_projection_dim": 16,
            "rope_axes_dim": (4, 6, 6),
        },
        blocks=("transformer_blocks.", "single_transformer_blocks."),
    ),
    Family(
        "ltxvideo",
        "LTXVideoLoraLoaderMixin",
        "LTXPipeline",
        "LTXVideoTransformer3DModel",
        {
            "in_channels": 8,
            "out_channels": 8,
            "patch_size": 1,
            "patch_size_t": 1,
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "cross_attention_dim": 32,
            "num_layers": 1,
            "caption_channels": 32,
        },
        # 0.32's LTXPipeline reads ``self.vae.spatial_compression_ratio`` in __init__.
        fallback={
            "vae": (
                "AutoencoderKLLTXVideo",
                {
                    "in_channels": 3,
                    "out_channels": 3,
                    "latent_channels": 8,
                    "block_out_channels": (8, 8, 8, 8),
                    "decoder_block_out_channels": (8, 8, 8, 8),
                    "layers_per_block": (1, 1, 1, 1, 1),
                    "decoder_layers_per_block": (1, 1, 1, 1, 1),
                    "spatio_temporal_scaling": (True, True, False, False),
                    "decoder_spatio_temporal_scaling": (True, True, False, False),
                    "decoder_inject_noise": (False, False, False, False, False),
                    "upsample_residual": (False, False, False, False),
                    "upsample_factor": (1, 1, 1, 1),
                    "timestep_conditioning": False,
                    "patch_size": 1,
                    "patch_size_t": 1,
                    "encoder_causal": True,
                    "decoder_causal": False,
                },
            )
        },
    ),
    Family(
        "zimage",
        "ZImageLoraLoaderMixin",
        "ZImagePipeline",
        "ZImageTransformer2DModel",
        {
            "all_patch_size": (2,),
            "all_f_patch_size": (1,),
            "in_channels": 16,
            "dim": 32,
            "n_layers": 2,
            "n_refiner_layers": 1,
            "n_heads": 2,
            "n_kv_heads": 2,
            "qk_norm": True,
            "cap_feat_dim": 16,
            "axes_dims": [8, 4, 4],
            "axes_lens": [256, 32, 32],
        },
        blocks=("layers.",),
    ),
    Family(
        "sana",
        "SanaLoraLoaderMixin",
        "SanaPipeline",
        "SanaTransformer2DModel",
        {
            "patch_size": 1,
            "in_channels": 4,
            "out_channels": 4,
            "num_layers": 1,
            "num_attention_heads": 2,
            "attention_head_dim": 8,
            "num_cross_attention_heads": 2,
            "cross_attention_head_dim": 8,
            "cross_attention_dim": 16,
            "caption_channels": 16,
            "sample_size": 32,
        },
    ),
    Family(
        "cogvideox",
        "CogVideoXLoraLoaderMixin",
        "CogVideoXPipeline",
        "CogVideoXTransformer3DModel",
        {
            "num_attention_heads": 2,
            "attention_head_dim": 8,
            "in_channels": 4,
            "out_channels": 4,
            "time_embed_dim": 16,
            "text_embed_dim": 32,
            "num_layers": 1,
            "sample_width": 16,
            "sample_height": 16,
            "sample_frames": 9,
            "patch_size": 2,
            "temporal_compression_ratio": 4,
            "max_text_seq_length": 16,
        },
    ),
    Family(
        "lumina2",
        "Lumina2LoraLoaderMixin",
        "Lumina2Pipeline",
        "Lumina2Transformer2DModel",
        {
            "sample_size": 4,
            "patch_size": 2,
            "in_channels": 4,
            "hidden_size": 16,
            "num_layers": 2,
            "num_refiner_layers": 1,
            "num_attention_heads": 2,
            "num_kv_heads": 1,
            "multiple_of": 16,
            "axes_dim_rope": (4, 2, 2),
            "cap_feat_dim": 16,
        },
        blocks=("layers.",),
    ),
    Family(
        "hidream",
        "HiDreamImageLoraLoaderMixin",
        "HiDreamImagePipeline",
        "HiDreamImageTransformer2DModel",
        {
            "patch_size": 2,
            "in_channels": 4,
            "out_channels": 4,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "caption_channels": [32, 16],
            "text_emb_dim": 16,
            "num_routed_experts": 2,
            "num_activated_experts": 1,
            "axes_dims_rope": (4, 2, 2),
            "max_resolution": (32, 32),
            "llama_layers": (0, 1),
        },
        blocks=("double_stream_blocks.", "single_stream_blocks."),
    ),
    Family(
        "mochi",
        "Mochi1LoraLoaderMixin",
        "MochiPipeline",
        "MochiTransformer3DModel",
        {
            "patch_size": 2,
            "num_attention_heads": 2,
            "attention_head_dim": 8,
            "num_layers": 1,
            "pooled_projection_dim": 16,
            "in_channels": 12,
            "qk_norm": "rms_norm",
            "text_embed_dim": 32,
            "time_embed_dim": 4,
            "activation_fn": "swiglu",
            "max_sequence_length": 16,
        },
    ),
    Family(
        "auraflow",
        "AuraFlowLoraLoaderMixin",
        "AuraFlowPipeline",
        "AuraFlowTransformer2DModel",
        {
            "sample_size": 16,
            "patch_size": 2,
            "in_channels": 4,
            "num_mmdit_layers": 1,
            "num_single_dit_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "joint_attention_dim": 32,
            "caption_projection_dim": 16,
            "out_channels": 4,
            "pos_embed_max_size": 64,
        },
        blocks=("joint_transformer_blocks.", "single_transformer_blocks."),
    ),
    Family(
        "cogview4",
        "CogView4LoraLoaderMixin",
        "CogView4Pipeline",
        "CogView4Transformer2DModel",
        {
            "patch_size": 2,
            "in_channels": 4,
            "num_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "out_channels": 4,
            "text_embed_dim": 32,
            "time_embed_dim": 8,
            "condition_dim": 4,
        },
    ),
    Family(
        "skyreels-v2",
        "SkyReelsV2LoraLoaderMixin",
        "SkyReelsV2Pipeline",
        "SkyReelsV2Transformer3DModel",
        {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 2,
            "attention_head_dim": 12,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 32,
            "freq_dim": 32,
            "ffn_dim": 32,
            "num_layers": 2,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "rope_max_seq_len": 32,
        },
        blocks=("blocks.",),
    ),
)

FAMILIES: dict[str, Family] = {f.name: f for f in FAMILY_LIST}

#: Mixins of the four families the LoRA suites drive (``suites/lora``, ``suites/ip_adapter``)
#: and those of the families here: the probe reports any other mixin as unknown.
ZOO_MIXINS: tuple[str, ...] = (
    "LoraLoaderMixin",  # SD1.5's mixin before 0.28 (a deprecated alias after)
    "StableDiffusionLoraLoaderMixin",
    "StableDiffusionXLLoraLoaderMixin",
    "SD3LoraLoaderMixin",
    "FluxLoraLoaderMixin",
)


def known_mixins() -> frozenset[str]:
    return frozenset(ZOO_MIXINS) | {f.mixin for f in FAMILY_LIST}
