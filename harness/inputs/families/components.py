"""The rest of each family's pipeline, as data: tiny text encoders, tokenizers, VAE and
scheduler around the table's denoiser, and the one-step call that runs it.

Why whole pipelines: the family suite loads LoRAs into a denoiser-only pipeline, so it
never sees what a user sees (a denoising step with the adapter in it). Here every
component the pipeline constructor declares is real and tiny, so one seeded step runs
offline (tokenizers generated locally by :mod:`harness.inputs.models.tokenizers`).

Widths are chained so the pipeline's own arithmetic holds: a text encoder's width is the
denoiser's text width (``text_dim`` / ``caption_channels`` / ``joint_attention_dim`` /
``text_embed_dim`` / ``cap_feat_dim``, from :mod:`harness.inputs.families.table`), the
VAE's latent channels are the denoiser's input channels (/ 4 where the pipeline packs 2x2
patches). Configs follow diffusers' own tiny pipeline tests (``tests/pipelines/<family>/``)
with our generated vocabularies (ids < ``TEXT_VOCAB``).

``call``: the smallest step that still gives every attention several tokens (image and
text), so a LoRA on ``to_q`` / ``to_k`` changes the output; ``output_type="latent"`` (the
VAE decode is not what a denoiser LoRA changes). Guidance is off where it would run the
denoiser twice (classifier-free), kept where it is an embedded input. ``latent_shape``
is what the pipeline's latent arithmetic gives for that call (image transformers return
packed ``(batch, tokens, channels)`` latents).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.inputs.families.table import FAMILIES
from harness.inputs.models.specs import CLIP_BOS, CLIP_EOS, T5_CONFIG, TEXT_VOCAB, Component
from harness.inputs.models.tokenizers import CHAT_STYLES

PROMPT = "a photo"


@dataclass(frozen=True)
class FamilyPipeline:
    """One family's non-denoiser components and its one-step call."""

    family: str  # key of ``FAMILIES``
    components: Mapping[str, Component]
    call: Mapping[str, Any]
    latent_shape: tuple[int, ...]
    #: Constructor keywords beyond the components (dropped where the release lacks them).
    init_extra: Mapping[str, Any] = field(default_factory=dict)


def _scheduler(**config: Any) -> Component:
    return Component("diffusers", "FlowMatchEulerDiscreteScheduler", config)


def _ids(style: str) -> dict[str, int]:
    """bos / eos / pad ids of a generated chat-style tokenizer, for the encoder config (the
    style's first special token is its bos, prepended or not)."""
    chat = CHAT_STYLES[style]
    return {
        "bos_token_id": chat.token_id(chat.bos or chat.specials[0]),
        "eos_token_id": chat.token_id(chat.eos),
        "pad_token_id": chat.token_id(chat.pad),
    }


_UMT5 = Component("transformers", "UMT5EncoderModel", T5_CONFIG, "UMT5Config")
_T5 = Component("transformers", "T5EncoderModel", T5_CONFIG, "T5Config")
_T5_TOKENIZER = Component("tokenizer", "t5", {"model_max_length": 512})

#: HunyuanVideo pools CLIP's ``pooler_output``: hidden width = ``pooled_projection_dim``.
_CLIP_16 = Component(
    "transformers",
    "CLIPTextModel",
    {
        "vocab_size": TEXT_VOCAB,
        "hidden_size": 16,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 16,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "bos_token_id": CLIP_BOS,
        "eos_token_id": CLIP_EOS,
        "pad_token_id": CLIP_EOS,
        "attention_dropout": 0.0,
        "dropout": 0.0,
    },
    "CLIPTextConfig",
)

_LTX_VAE_CLS, _LTX_VAE_CONFIG = FAMILIES["ltxvideo"].fallback["vae"]

FAMILY_PIPELINES: dict[str, FamilyPipeline] = {
    # Wan 2.1 T2V: UMT5 (text_dim 32 = d_model), AutoencoderKLWan 8x spatial / 4x temporal.
    # 32 x 32 x 5 frames -> latents 16 x 2 x 4 x 4 -> 8 tokens of patch (1, 2, 2).
    "wan": FamilyPipeline(
        "wan",
        {
            "text_encoder": _UMT5,
            "tokenizer": _T5_TOKENIZER,
            "vae": Component(
                "diffusers",
                "AutoencoderKLWan",
                {
                    "base_dim": 3,
                    "z_dim": 16,
                    "dim_mult": [1, 1, 1, 1],
                    "num_res_blocks": 1,
                    "temperal_downsample": [False, True, True],
                },
            ),
            "scheduler": _scheduler(shift=7.0),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_frames": 5,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_sequence_length": 16,
        },
        (1, 16, 2, 4, 4),
    ),
    # LTX-Video: T5 (caption_channels 32), the table's tiny LTX VAE (4x / 4x, 8 channels).
    # Sizes must be multiples of 32: 32 x 32 x 5 -> 2 x 8 x 8 = 128 packed tokens.
    "ltxvideo": FamilyPipeline(
        "ltxvideo",
        {
            "text_encoder": _T5,
            "tokenizer": _T5_TOKENIZER,
            "vae": Component("diffusers", _LTX_VAE_CLS, _LTX_VAE_CONFIG),
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_frames": 5,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_sequence_length": 16,
        },
        (1, 128, 8),
    ),
    # Flux2: Mistral 3 (joint_attention_dim 32 = one hidden layer of width 32, picked with
    # ``text_encoder_out_layers``), AutoencoderKLFlux2 without downsampling, 4 latent
    # channels (in_channels 16 = 4 x 2 x 2). 8 x 8 -> 16 packed tokens. The system message
    # fills the 16 text tokens (the prompt is truncated away; the text path still runs).
    "flux2": FamilyPipeline(
        "flux2",
        {
            "text_encoder": Component(
                "transformers",
                "Mistral3ForConditionalGeneration",
                {
                    "text_config": {
                        "model_type": "mistral",
                        "vocab_size": TEXT_VOCAB,
                        "hidden_size": 32,
                        "intermediate_size": 37,
                        "max_position_embeddings": 512,
                        "num_attention_heads": 4,
                        "num_hidden_layers": 1,
                        "num_key_value_heads": 2,
                        "head_dim": 8,
                        "rms_norm_eps": 1e-5,
                        "rope_theta": 1e9,
                        "sliding_window": None,
                        **_ids("mistral"),
                    },
                    "vision_config": {
                        "model_type": "pixtral",
                        "hidden_size": 16,
                        "num_hidden_layers": 1,
                        "num_attention_heads": 4,
                        "intermediate_size": 37,
                        "image_size": 30,
                        "patch_size": 6,
                        "num_channels": 3,
                    },
                    "image_seq_length": 4,
                    "vision_feature_layer": -1,
                    "image_token_index": TEXT_VOCAB - 1,
                    **_ids("mistral"),
                },
                "Mistral3Config",
            ),
            "tokenizer": Component("tokenizer", "mistral", {"model_max_length": 512}),
            "vae": Component(
                "diffusers",
                "AutoencoderKLFlux2",
                {
                    "sample_size": 32,
                    "in_channels": 3,
                    "out_channels": 3,
                    "down_block_types": ["DownEncoderBlock2D"],
                    "up_block_types": ["UpDecoderBlock2D"],
                    "block_out_channels": [4],
                    "layers_per_block": 1,
                    "latent_channels": 4,
                    "norm_num_groups": 1,
                    "use_quant_conv": False,
                    "use_post_quant_conv": False,
                },
            ),
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 8,
            "width": 8,
            "num_inference_steps": 1,
            "guidance_scale": 4.0,
            "max_sequence_length": 16,
            "text_encoder_out_layers": (1,),
        },
        (1, 16, 16),
    ),
    # Qwen-Image: Qwen2.5-VL (hidden 16 = joint_attention_dim), AutoencoderKLQwenImage
    # (8x spatial, z_dim 4 = out_channels; in_channels 16 = 4 x 2 x 2). 32 x 32 -> 16 tokens.
    "qwenimage": FamilyPipeline(
        "qwenimage",
        {
            "text_encoder": Component(
                "transformers",
                "Qwen2_5_VLForConditionalGeneration",
                {
                    "text_config": {
                        "vocab_size": TEXT_VOCAB,
                        "hidden_size": 16,
                        "intermediate_size": 16,
                        "num_hidden_layers": 2,
                        "num_attention_heads": 2,
                        "num_key_value_heads": 2,
                        "rope_scaling": {
                            "mrope_section": [1, 1, 2],
                            "rope_type": "default",
                            "type": "default",
                        },
                        "rope_theta": 1e6,
                        **_ids("qwen"),
                    },
                    "vision_config": {
                        "depth": 2,
                        "hidden_size": 16,
                        "intermediate_size": 16,
                        "num_heads": 2,
                        "out_hidden_size": 16,
                    },
                    "hidden_size": 16,
                    "vocab_size": TEXT_VOCAB,
                    "vision_start_token_id": TEXT_VOCAB - 4,
                    "vision_end_token_id": TEXT_VOCAB - 3,
                    "vision_token_id": TEXT_VOCAB - 2,
                    "image_token_id": TEXT_VOCAB - 1,
                    "video_token_id": TEXT_VOCAB - 5,
                    **_ids("qwen"),
                },
                "Qwen2_5_VLConfig",
            ),
            "tokenizer": Component("tokenizer", "qwen", {"model_max_length": 2048}),
            "vae": Component(
                "diffusers",
                "AutoencoderKLQwenImage",
                {
                    "base_dim": 24,
                    "z_dim": 4,
                    "dim_mult": [1, 2, 4],
                    "num_res_blocks": 1,
                    "temperal_downsample": [False, True],
                    "latents_mean": [0.0] * 4,
                    "latents_std": [1.0] * 4,
                },
            ),
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_inference_steps": 1,
            "true_cfg_scale": 1.0,
            "max_sequence_length": 16,
        },
        (1, 16, 16),
    ),
    # HunyuanVideo: Llama (hidden 16 = text_embed_dim; the pipeline reads hidden_states[-3])
    # + CLIP (pooled 16), the 8x / 4x causal VAE with 4 latent channels. The default
    # prompt template is kept (crop_start 95 of our byte tokens; the prompt itself falls
    # past the 95 + 16 token window, the CLIP path still reads it). 32 x 32 x 5 -> 32 tokens.
    "hunyuanvideo": FamilyPipeline(
        "hunyuanvideo",
        {
            "text_encoder": Component(
                "transformers",
                "LlamaModel",
                {
                    "vocab_size": TEXT_VOCAB,
                    "hidden_size": 16,
                    "intermediate_size": 37,
                    "num_attention_heads": 4,
                    "num_hidden_layers": 2,
                    "max_position_embeddings": 1024,
                    "hidden_act": "gelu",
                    "rms_norm_eps": 1e-5,
                    **_ids("llama"),
                },
                "LlamaConfig",
            ),
            "tokenizer": Component("tokenizer", "llama", {"model_max_length": 1024}),
            "text_encoder_2": _CLIP_16,
            "tokenizer_2": Component(
                "tokenizer", "clip", {"model_max_length": 77, "pad_token": "<|endoftext|>"}
            ),
            "vae": Component(
                "diffusers",
                "AutoencoderKLHunyuanVideo",
                {
                    "in_channels": 3,
                    "out_channels": 3,
                    "latent_channels": 4,
                    "down_block_types": ["HunyuanVideoDownBlock3D"] * 4,
                    "up_block_types": ["HunyuanVideoUpBlock3D"] * 4,
                    "block_out_channels": [8, 8, 8, 8],
                    "layers_per_block": 1,
                    "act_fn": "silu",
                    "norm_num_groups": 4,
                    "scaling_factor": 0.476986,
                    "spatial_compression_ratio": 8,
                    "temporal_compression_ratio": 4,
                    "mid_block_add_attention": True,
                },
            ),
            "scheduler": _scheduler(shift=7.0),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_frames": 5,
            "num_inference_steps": 1,
            "guidance_scale": 6.0,
            "max_sequence_length": 16,
        },
        (1, 4, 2, 4, 4),
    ),
    # Z-Image: Qwen3 (hidden 16 = cap_feat_dim; hidden_states[-2]) behind a ChatML chat
    # template, an AutoencoderKL with 16 latent channels and 2x downsampling.
    # Guidance 0 = no classifier-free pass. 16 x 16 -> latents 16 x 8 x 8 -> 16 tokens.
    "zimage": FamilyPipeline(
        "zimage",
        {
            "text_encoder": Component(
                "transformers",
                "Qwen3Model",
                {
                    "vocab_size": TEXT_VOCAB,
                    "hidden_size": 16,
                    "intermediate_size": 16,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 2,
                    "num_key_value_heads": 2,
                    "head_dim": 8,
                    "max_position_embeddings": 512,
                    "rope_theta": 1e6,
                    **_ids("qwen"),
                },
                "Qwen3Config",
            ),
            "tokenizer": Component("tokenizer", "qwen", {"model_max_length": 512}),
            "vae": Component(
                "diffusers",
                "AutoencoderKL",
                {
                    "in_channels": 3,
                    "out_channels": 3,
                    "down_block_types": ["DownEncoderBlock2D"] * 2,
                    "up_block_types": ["UpDecoderBlock2D"] * 2,
                    "block_out_channels": [8, 16],
                    "layers_per_block": 1,
                    "latent_channels": 16,
                    "norm_num_groups": 4,
                    "sample_size": 32,
                    "scaling_factor": 0.3611,
                    "shift_factor": 0.1159,
                },
            ),
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 16,
            "width": 16,
            "num_inference_steps": 1,
            "guidance_scale": 0.0,
            "max_sequence_length": 64,
        },
        (1, 16, 8, 8),
    ),
}

#: Pipeline keywords that carry ``{"scale": s}`` to the denoiser, in the order tried.
SCALE_KWARGS = ("attention_kwargs", "joint_attention_kwargs", "cross_attention_kwargs")
