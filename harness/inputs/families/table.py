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
    #: ``pipeline`` is a ``ModularPipeline`` subclass (some mixins have no other host):
    #: built as users assemble one offline, from its default blocks (pruned to
    #: ``workflow`` where given), the tiny component set with ``update_components``.
    modular: bool = False
    workflow: str | None = None
    #: Module that exports ``denoiser`` (LTX2's text connectors are not a top-level class).
    library: str = "diffusers"
    #: Other rows of this table whose component the pipeline always carries, because the
    #: mixin calls into it on every load (LTX2 loads ``transformer`` and ``connectors``).
    companions: tuple[str, ...] = ()


#: MiniMax-H3's tiny DiT, shared by its two partitions (``transformer`` / ``transformer_ref``).
MINIMAX_H3_CONFIG: dict[str, Any] = {
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "hidden_size": 16,
    "num_layers": 2,
    "num_refiner_layers": 1,
    "ffn_dim": 32,
    "in_channels": 4,
    "audio_in_channels": 4,
    "patch_size": (1, 2, 2),
    "text_dim": 16,
    "freq_dim": 16,
    "time_embed_hidden_dim": 16,
    "time_embed_dim": 8,
    # Its rotary embedding turns 2 x 3 x rope_freq_dim channels of a head: 6 fit in
    # attention_head_dim 8 (4 would need 24, so no forward pass could run).
    "rope_freq_dim": 1,
}

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
        # Wan 2.1 I2V: the T2V model plus an image embedder (``image_dim``) and the
        # image branch of every cross-attention (``attn2.add_k_proj`` / ``add_v_proj``,
        # originally ``cross_attn.k_img`` / ``v_img``, width ``added_kv_proj_dim`` = the
        # model's inner width, as in Wan2.1-I2V).
        "wan-i2v",
        "WanLoraLoaderMixin",
        "WanImageToVideoPipeline",
        "WanTransformer3DModel",
        {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 2,
            "attention_head_dim": 12,
            "in_channels": 36,
            "out_channels": 16,
            "text_dim": 32,
            "freq_dim": 32,
            "ffn_dim": 32,
            "num_layers": 2,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "rope_max_seq_len": 32,
            "image_dim": 16,
            "added_kv_proj_dim": 24,
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
    # Batch B (issue #20): 0.39 - 0.42 families, three of them hosted by modular pipelines only.
    Family(
        "ideogram4",
        "Ideogram4LoraLoaderMixin",
        "Ideogram4Pipeline",
        "Ideogram4Transformer2DModel",
        {
            "in_channels": 8,
            "num_layers": 2,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "adaln_dim": 16,
            "llm_features_dim": 16,
            "mrope_section": (2, 1, 1),
        },
        blocks=("layers.",),
    ),
    Family(
        "acestep",
        "AceStepLoraLoaderMixin",
        "AceStepPipeline",
        "AceStepTransformer1DModel",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,  # k / v narrower than q, as in the released model
            "head_dim": 8,
            "in_channels": 8,
            "audio_acoustic_hidden_dim": 4,
            "patch_size": 2,
            "sliding_window": 8,
        },
        blocks=("layers.",),
    ),
    Family(
        "rfd4proteina",
        "RFD4ProteinaLoraLoaderMixin",
        "RFD4ProteinaPipeline",
        "RFD4ProteinaTransformer",
        {
            "nlayers": 2,
            "token_dim": 16,
            "nheads": 2,
            "dim_cond": 16,
            "pair_repr_dim": 8,
            "latent_dim": 4,
            "token_type_emb_dim": 4,
            "cath_emb_dim": 4,
            "t_emb_dim": 8,
            "seq_sep_dim": 4,
            "xt_pair_dist_dim": 4,
            "tri_mult_c": 8,
        },
        blocks=("transformer_layers.",),
        # The constructor compares ``transformer.config.latent_dim`` with the VAE's. The
        # decoder indexes ``atom37_mask`` by residue class (147 rows), ``allowed_residue_types``
        # by token type (7 rows of 147).
        fallback={
            "vae": (
                "RFD4ProteinaAutoencoder",
                {
                    "atom37_mask": ((True,) * 37,) * 147,
                    "allowed_residue_types": ((True,) * 147,) * 7,
                    "latent_dim": 4,
                    "nlayers": 1,
                    "token_dim": 16,
                    "nheads": 2,
                    "dim_cond": 8,
                    "pair_repr_dim": 8,
                    "token_type_emb_dim": 4,
                },
            )
        },
    ),
    Family(
        "minimax-h3",
        "MiniMaxH3LoraLoaderMixin",
        "MiniMaxH3ModularPipeline",
        "MiniMaxH3Transformer3DModel",
        MINIMAX_H3_CONFIG,
        blocks=("transformer_blocks.", "token_refiner.refiner_blocks."),
        modular=True,
        workflow="t2va",
    ),
    # H3's second DiT partition (the ``ref2va`` workflow's denoiser, same module names): the
    # mixin loads ``transformer_ref.``-named files into it (``load_lora_into_transformer_ref``).
    Family(
        "minimax-h3-ref",
        "MiniMaxH3LoraLoaderMixin",
        "MiniMaxH3ModularPipeline",
        "MiniMaxH3Transformer3DModel",
        MINIMAX_H3_CONFIG,
        blocks=("transformer_blocks.", "token_refiner.refiner_blocks."),
        attr="transformer_ref",
        modular=True,
        workflow="ref2va",
    ),
    Family(
        "anima",
        "AnimaLoraLoaderMixin",
        "AnimaModularPipeline",
        "CosmosTransformer3DModel",
        {
            "in_channels": 4,
            "out_channels": 4,
            "num_attention_heads": 2,
            "attention_head_dim": 16,  # the rope splits it in thirds of >= 4
            "num_layers": 2,
            "mlp_ratio": 2.0,
            "text_embed_dim": 16,
            "adaln_lora_dim": 4,
            "max_size": (4, 16, 16),
            "patch_size": (1, 2, 2),
            "rope_scale": (1.0, 1.0, 1.0),
            "concat_padding_mask": True,
            "extra_pos_embed_type": None,
        },
        modular=True,
    ),
    # Anima's second LoRA target: the LLM adapter between the text encoder and the DiT
    # (``text_conditioner``; original files name it ``llm_adapter.``).
    Family(
        "anima-text-conditioner",
        "AnimaLoraLoaderMixin",
        "AnimaModularPipeline",
        "AnimaTextConditioner",
        {
            "source_dim": 24,
            "target_dim": 16,
            "model_dim": 16,
            "num_layers": 2,
            "num_attention_heads": 2,
            "mlp_ratio": 2.0,
            "target_vocab_size": 32,
            "min_sequence_length": 8,
        },
        blocks=("blocks.",),
        attr="text_conditioner",
        modular=True,
    ),
    Family(
        "flux3",
        "Flux3LoraLoaderMixin",
        "Flux3ModularPipeline",
        "Flux3Transformer2DModel",
        {
            "in_channels": 8,
            "cond_in_channels": 8,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 16,
            "timestep_channels": 16,
            "mlp_ratio": 2.0,
            "axes_dims_rope": (4, 4, 4, 4),
        },
        blocks=("mode_blocks.", "txt_mode_blocks.", "single_transformer_blocks."),
        modular=True,
    ),
    # Batch A (issue #20): 0.36 - 0.42 families. Configs from diffusers' tiny LoRA / pipeline
    # tests (``tests/lora/test_lora_layers_<family>.py``, ``tests/pipelines/<family>/``).
    Family(
        "ltx2",
        "LTX2LoraLoaderMixin",
        "LTX2Pipeline",
        "LTX2VideoTransformer3DModel",
        {
            "in_channels": 4,
            "out_channels": 4,
            "patch_size": 1,
            "patch_size_t": 1,
            "num_attention_heads": 2,
            "attention_head_dim": 8,
            "cross_attention_dim": 16,
            "audio_in_channels": 4,
            "audio_out_channels": 4,
            "audio_num_attention_heads": 2,
            "audio_attention_head_dim": 4,
            "audio_cross_attention_dim": 8,
            "num_layers": 1,
            "qk_norm": "rms_norm_across_heads",
            "caption_channels": 32,
            "rope_double_precision": False,
            "rope_type": "split",
        },
        companions=("ltx2-connectors",),
    ),
    # LTX2's second LoRA target: the text connectors (``connectors.``-named files; original
    # files name their projection ``text_embedding_projection.aggregate_embed``). Its
    # ``load_lora_weights`` always calls into the transformer too, so both are real.
    Family(
        "ltx2-connectors",
        "LTX2LoraLoaderMixin",
        "LTX2Pipeline",
        "LTX2TextConnectors",
        {
            "caption_channels": 32,
            "text_proj_in_factor": 2,
            "video_connector_num_attention_heads": 4,
            "video_connector_attention_head_dim": 8,
            "video_connector_num_layers": 1,
            "video_connector_num_learnable_registers": None,
            "audio_connector_num_attention_heads": 4,
            "audio_connector_attention_head_dim": 8,
            "audio_connector_num_layers": 1,
            "audio_connector_num_learnable_registers": None,
            "connector_rope_base_seq_len": 32,
            "rope_theta": 10000.0,
            "rope_double_precision": False,
            "causal_temporal_positioning": False,
            "rope_type": "split",
        },
        blocks=("text_proj_in", "video_connector.", "audio_connector."),
        attr="connectors",
        library="diffusers.pipelines.ltx2",
        companions=("ltx2",),
    ),
    Family(
        "kandinsky5",
        "KandinskyLoraLoaderMixin",
        "Kandinsky5T2VPipeline",
        "Kandinsky5Transformer3DModel",
        {
            "in_visual_dim": 4,
            "in_text_dim": 16,
            "in_text_dim2": 32,
            "time_dim": 32,
            "out_visual_dim": 4,
            "patch_size": (1, 2, 2),
            "model_dim": 48,
            "ff_dim": 128,
            "num_text_blocks": 1,
            "num_visual_blocks": 1,
            "axes_dims": (8, 8, 8),
            "visual_cond": False,
        },
        blocks=("text_transformer_blocks.", "visual_transformer_blocks."),
    ),
    Family(
        "cosmos2-5",
        "CosmosLoraLoaderMixin",
        "Cosmos2_5_PredictBasePipeline",
        "CosmosTransformer3DModel",
        {
            "in_channels": 17,
            "out_channels": 16,
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "num_layers": 2,
            "mlp_ratio": 2.0,
            "text_embed_dim": 32,
            "adaln_lora_dim": 4,
            "max_size": (4, 32, 32),
            "patch_size": (1, 2, 2),
            "rope_scale": (2.0, 1.0, 1.0),
            "concat_padding_mask": True,
            "extra_pos_embed_type": "learnable",
        },
        # The constructor reads ``vae.config.latents_mean`` and, given no safety checker,
        # builds ``cosmos_guardrail``'s (an ImportError without it): a tiny Wan VAE and an
        # inert module stand in (diffusers' own tests pass a dummy checker too).
        fallback={
            "vae": (
                "AutoencoderKLWan",
                {
                    "base_dim": 3,
                    "z_dim": 16,
                    "dim_mult": [1, 1, 1, 1],
                    "num_res_blocks": 1,
                    "temperal_downsample": [False, True, True],
                },
            ),
            "safety_checker": ("torch.nn.Identity", {}),
        },
    ),
    Family(
        "helios",
        "HeliosLoraLoaderMixin",
        "HeliosPipeline",
        "HeliosTransformer3DModel",
        {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 2,
            "attention_head_dim": 12,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 32,
            "freq_dim": 256,
            "ffn_dim": 32,
            "num_layers": 2,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "rope_dim": (4, 4, 4),
            "has_multi_term_memory_patch": True,
            "guidance_cross_attn": True,
            "zero_history_timestep": True,
            "is_amplify_history": False,
        },
        blocks=("blocks.",),
    ),
    Family(
        "ernieimage",
        "ErnieImageLoraLoaderMixin",
        "ErnieImagePipeline",
        "ErnieImageTransformer2DModel",
        {
            "hidden_size": 32,
            "num_attention_heads": 2,
            "num_layers": 2,
            "ffn_hidden_size": 64,
            "in_channels": 16,
            "out_channels": 16,
            "patch_size": 1,
            "text_in_dim": 16,
            "rope_axes_dim": (4, 6, 6),
        },
        blocks=("layers.",),
    ),
    Family(
        "krea2",
        "Krea2LoraLoaderMixin",
        "Krea2Pipeline",
        "Krea2Transformer2DModel",
        {
            "in_channels": 16,
            "num_layers": 2,
            "attention_head_dim": 8,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,  # k / v narrower than q, as in the released model
            "intermediate_size": 32,
            "timestep_embed_dim": 8,
            "text_hidden_dim": 16,
            "num_text_layers": 3,
            "text_num_attention_heads": 2,
            "text_num_key_value_heads": 1,
            "text_intermediate_size": 16,
            "num_layerwise_text_blocks": 1,
            "num_refiner_text_blocks": 1,
            "axes_dims_rope": (4, 2, 2),
            "rope_theta": 1000.0,
        },
        blocks=(
            "transformer_blocks.",
            "text_fusion.layerwise_blocks.",
            "text_fusion.refiner_blocks.",
        ),
    ),
    Family(
        "briafibo2",
        "BriaFibo2LoraLoaderMixin",
        "BriaFibo2Pipeline",
        "BriaFibo2Transformer2DModel",
        {
            "in_channels": 16,
            "patch_size": 2,
            "dim": 32,
            "n_layers": 2,
            "n_refiner_layers": 1,
            "n_heads": 2,
            "cap_feat_dim": 16,
            "injection_layer_ids": (1,),  # block 1 also cross-attends to the text
            "perceiver_num_layers": 1,
            "min_num_gist_tokens": 8,
            "max_num_gist_tokens": 16,
            "gist_step": 8,
            "gist_min_text_len": 8,
            "gist_max_text_len": 32,
            "axes_dims": (4, 6, 6),
            "axes_lens": (64, 32, 32),
        },
        blocks=("noise_refiner.", "layers.", "perceiver."),
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
#: Mixins no pipeline inherits, driven through their classmethods by their own rows
#: (``suites/families/test_amused.py``: the training example's save / resume calls).
CLASSMETHOD_MIXINS: tuple[str, ...] = ("AmusedLoraLoaderMixin",)


def known_mixins() -> frozenset[str]:
    return frozenset(ZOO_MIXINS) | frozenset(CLASSMETHOD_MIXINS) | {f.mixin for f in FAMILY_LIST}
