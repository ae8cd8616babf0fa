"""Per-architecture configs of the tiny zoo, as data.

Every version difference of the *constructors* is absorbed by ``build.filter_kwargs``
(keys an old constructor does not accept are dropped and recorded), so this table is the
newest superset of keys and contains no version conditions at all.

Sizes: hidden widths 16-32, 1-2 layers/blocks, 32x32 pixels. What must stay true so the
adapter suites have targets and the pipelines run:

* UNets have CrossAttnDownBlock2D / UNetMidBlock2DCrossAttn / CrossAttnUpBlock2D, so
  ``attn2`` (to_k / to_v) exists for LoRA and IP-Adapter; ``cross_attention_dim`` equals
  the text encoder width (SDXL: the two encoders' widths concatenated);
* SDXL: ``projection_class_embeddings_input_dim = 6 * addition_time_embed_dim +
  text_encoder_2.projection_dim``;
* SD3: ``joint_attention_dim`` = T5 ``d_model`` = the two CLIP widths concatenated (so the
  pipeline's zero-padding of the CLIP embeddings is a no-op), ``pooled_projection_dim`` =
  sum of the two CLIP projection widths, ``caption_projection_dim`` = heads * head_dim;
* Flux: ``num_attention_heads * attention_head_dim`` = inner width, ``sum(axes_dims_rope)
  == attention_head_dim``, ``joint_attention_dim`` = T5 ``d_model``,
  ``pooled_projection_dim`` = CLIP hidden width (Flux pools ``CLIPTextModel``),
  ``in_channels = 4 * vae.latent_channels`` (2x2 packing);
* IP-Adapter image encoders keep tiny towers but the *real* projection widths 1024 (ViT-H)
  and 1280 (ViT-bigG): an IP-Adapter's ``image_proj.proj`` input width is that width.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Tokens of the generated tokenizers (see ``harness.inputs.models.tokenizers``).
CLIP_BOS, CLIP_EOS = 512, 513
T5_PAD, T5_EOS = 0, 1
TEXT_VOCAB = 1000  # > every generated token id


@dataclass(frozen=True)
class Component:
    """One pipeline component.

    ``library``: ``diffusers`` (model or scheduler built from ``config``), ``transformers``
    (``cls(config_cls(**config))``), ``tokenizer`` (``cls`` is a generator name in
    ``harness.inputs.models.tokenizers``) or ``image_processor``.
    """

    library: str
    cls: str
    config: Mapping[str, Any] = field(default_factory=dict)
    config_cls: str | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """A zoo pipeline: its class, components, constructor extras and one-step call."""

    name: str
    pipeline_cls: str
    components: Mapping[str, Component]
    #: Constructor keywords beyond the components (dropped where the version lacks them).
    init_extra: Mapping[str, Any] = field(default_factory=dict)
    #: ``run_step`` defaults (dropped where ``__call__`` lacks them).
    call: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EncoderSpec:
    """An image encoder for IP-Adapter checks, with its locally built processor."""

    name: str
    model: Component
    processor: Component
    #: Width of the output an IP-Adapter ``image_proj`` consumes.
    output_width: int
    image_size: int
    #: Which output that is: ``image_embeds`` (CLIP projection, base IP-Adapters) or
    #: ``penultimate`` (``hidden_states[-2]``, what SD3's SigLIP IP-Adapter reads).
    output: str = "image_embeds"


def _clip_text(hidden: int, heads: int, projection: int, layers: int = 2) -> dict[str, Any]:
    return {
        "vocab_size": TEXT_VOCAB,
        "hidden_size": hidden,
        "intermediate_size": 37,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": 77,
        "projection_dim": projection,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "bos_token_id": CLIP_BOS,
        "eos_token_id": CLIP_EOS,
        "pad_token_id": CLIP_EOS,
        "attention_dropout": 0.0,
        "dropout": 0.0,
    }


T5_CONFIG: dict[str, Any] = {
    "vocab_size": TEXT_VOCAB,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 37,
    "num_layers": 1,
    "num_decoder_layers": 1,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 32,
    "dropout_rate": 0.0,  # T5's default 0.1 would make train-mode outputs random
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": False,
    "pad_token_id": T5_PAD,
    "eos_token_id": T5_EOS,
    "decoder_start_token_id": T5_PAD,
}

_UNET_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def _vae(block_out_channels: tuple[int, ...], latent_channels: int, **extra: Any) -> Component:
    return Component(
        "diffusers",
        "AutoencoderKL",
        {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * len(block_out_channels),
            "up_block_types": ["UpDecoderBlock2D"] * len(block_out_channels),
            "block_out_channels": list(block_out_channels),
            "layers_per_block": 1,
            "latent_channels": latent_channels,
            "norm_num_groups": 4,
            "sample_size": 32,
            **extra,
        },
    )


def _clip_tokenizer(pad: str = "<|endoftext|>") -> Component:
    return Component("tokenizer", "clip", {"model_max_length": 77, "pad_token": pad})


def _t5_tokenizer() -> Component:
    return Component("tokenizer", "t5", {"model_max_length": 512})


_UNET_PIPELINE_EXTRA = {
    "safety_checker": None,
    "feature_extractor": None,
    "image_encoder": None,
    "requires_safety_checker": False,
}

_CALL_SIZE = {"prompt": "a photo", "height": 32, "width": 32, "num_inference_steps": 1}

PIPELINE_SPECS: dict[str, PipelineSpec] = {
    "sd15": PipelineSpec(
        name="sd15",
        pipeline_cls="StableDiffusionPipeline",
        components={
            "unet": Component(
                "diffusers",
                "UNet2DConditionModel",
                {
                    "sample_size": 16,
                    "in_channels": 4,
                    "out_channels": 4,
                    "block_out_channels": [16, 32],
                    "layers_per_block": 1,
                    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                    "mid_block_type": "UNetMidBlock2DCrossAttn",
                    "cross_attention_dim": 32,
                    "attention_head_dim": 2,  # legacy name: the number of heads
                    "norm_num_groups": 4,
                },
            ),
            "vae": _vae((8, 16), latent_channels=4),
            "text_encoder": Component(
                "transformers", "CLIPTextModel", _clip_text(32, 4, 32), "CLIPTextConfig"
            ),
            "tokenizer": _clip_tokenizer(),
            "scheduler": Component(
                "diffusers",
                "DDIMScheduler",
                {**_UNET_SCHEDULER, "clip_sample": False, "set_alpha_to_one": False},
            ),
        },
        init_extra=_UNET_PIPELINE_EXTRA,
        call=_CALL_SIZE,
    ),
    "sdxl": PipelineSpec(
        name="sdxl",
        pipeline_cls="StableDiffusionXLPipeline",
        components={
            "unet": Component(
                "diffusers",
                "UNet2DConditionModel",
                {
                    "sample_size": 16,
                    "in_channels": 4,
                    "out_channels": 4,
                    "block_out_channels": [16, 32],
                    "layers_per_block": 1,
                    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
                    "mid_block_type": "UNetMidBlock2DCrossAttn",
                    "attention_head_dim": [2, 4],
                    "transformer_layers_per_block": [1, 2],
                    "use_linear_projection": True,
                    "addition_embed_type": "text_time",
                    "addition_time_embed_dim": 8,
                    "projection_class_embeddings_input_dim": 6 * 8 + 32,
                    "cross_attention_dim": 32 + 32,
                    "norm_num_groups": 4,
                },
            ),
            "vae": _vae((8, 16), latent_channels=4, force_upcast=True),
            "text_encoder": Component(
                "transformers", "CLIPTextModel", _clip_text(32, 4, 32), "CLIPTextConfig"
            ),
            "text_encoder_2": Component(
                "transformers",
                "CLIPTextModelWithProjection",
                _clip_text(32, 4, 32),
                "CLIPTextConfig",
            ),
            "tokenizer": _clip_tokenizer(),
            "tokenizer_2": _clip_tokenizer(pad="!"),
            "scheduler": Component("diffusers", "EulerDiscreteScheduler", _UNET_SCHEDULER),
        },
        init_extra={
            "image_encoder": None,
            "feature_extractor": None,
            "force_zeros_for_empty_prompt": True,
            "add_watermarker": False,
        },
        call=_CALL_SIZE,
    ),
    "sd3": PipelineSpec(
        name="sd3",
        pipeline_cls="StableDiffusion3Pipeline",
        components={
            "transformer": Component(
                "diffusers",
                "SD3Transformer2DModel",
                {
                    "sample_size": 16,
                    "patch_size": 2,
                    "in_channels": 4,
                    "out_channels": 4,
                    "num_layers": 2,
                    "attention_head_dim": 8,
                    "num_attention_heads": 4,
                    "caption_projection_dim": 32,
                    "joint_attention_dim": 32,
                    "pooled_projection_dim": 16 + 16,
                    "pos_embed_max_size": 16,
                },
            ),
            "vae": _vae(
                (8, 16),
                latent_channels=4,
                use_quant_conv=False,
                use_post_quant_conv=False,
                shift_factor=0.0609,
                scaling_factor=1.5035,
            ),
            "text_encoder": Component(
                "transformers",
                "CLIPTextModelWithProjection",
                _clip_text(16, 2, 16),
                "CLIPTextConfig",
            ),
            "text_encoder_2": Component(
                "transformers",
                "CLIPTextModelWithProjection",
                _clip_text(16, 2, 16),
                "CLIPTextConfig",
            ),
            "text_encoder_3": Component("transformers", "T5EncoderModel", T5_CONFIG, "T5Config"),
            "tokenizer": _clip_tokenizer(),
            "tokenizer_2": _clip_tokenizer(pad="!"),
            "tokenizer_3": _t5_tokenizer(),
            "scheduler": Component("diffusers", "FlowMatchEulerDiscreteScheduler", {"shift": 3.0}),
        },
        init_extra={"image_encoder": None, "feature_extractor": None},
        call={**_CALL_SIZE, "max_sequence_length": 16},
    ),
    "flux": PipelineSpec(
        name="flux",
        pipeline_cls="FluxPipeline",
        components={
            "transformer": Component(
                "diffusers",
                "FluxTransformer2DModel",
                {
                    "patch_size": 1,
                    "in_channels": 4 * 4,
                    "num_layers": 2,
                    "num_single_layers": 2,
                    "attention_head_dim": 16,
                    "num_attention_heads": 2,
                    "joint_attention_dim": 32,
                    "pooled_projection_dim": 32,
                    "guidance_embeds": True,
                    "axes_dims_rope": [4, 4, 8],
                },
            ),
            "vae": _vae(
                (8, 16),
                latent_channels=4,
                use_quant_conv=False,
                use_post_quant_conv=False,
                shift_factor=0.1159,
                scaling_factor=0.3611,
            ),
            "text_encoder": Component(
                "transformers", "CLIPTextModel", _clip_text(32, 4, 32), "CLIPTextConfig"
            ),
            "text_encoder_2": Component("transformers", "T5EncoderModel", T5_CONFIG, "T5Config"),
            "tokenizer": _clip_tokenizer(),
            "tokenizer_2": _t5_tokenizer(),
            "scheduler": Component(
                "diffusers",
                "FlowMatchEulerDiscreteScheduler",
                {
                    "shift": 3.0,
                    "use_dynamic_shifting": True,
                    "base_image_seq_len": 256,
                    "max_image_seq_len": 4096,
                    "base_shift": 0.5,
                    "max_shift": 1.15,
                },
            ),
        },
        init_extra={"image_encoder": None, "feature_extractor": None},
        call={**_CALL_SIZE, "max_sequence_length": 16},
    ),
}


def _clip_vision(projection: int) -> Component:
    return Component(
        "transformers",
        "CLIPVisionModelWithProjection",
        {
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
            "num_channels": 3,
            "projection_dim": projection,
            "hidden_act": "gelu",
            "attention_dropout": 0.0,
            "dropout": 0.0,
        },
        "CLIPVisionConfig",
    )


_CLIP_PROCESSOR = Component(
    "image_processor",
    "CLIPImageProcessor",
    {
        "size": {"shortest_edge": 32},
        "crop_size": {"height": 32, "width": 32},
        "do_resize": True,
        "do_center_crop": True,
        "do_normalize": True,
    },
)

ENCODER_SPECS: dict[str, EncoderSpec] = {
    "clip-vision-1024": EncoderSpec(
        "clip-vision-1024", _clip_vision(1024), _CLIP_PROCESSOR, output_width=1024, image_size=32
    ),
    "clip-vision-1280": EncoderSpec(
        "clip-vision-1280", _clip_vision(1280), _CLIP_PROCESSOR, output_width=1280, image_size=32
    ),
    "siglip": EncoderSpec(
        "siglip",
        Component(
            "transformers",
            "SiglipVisionModel",
            {
                "hidden_size": 32,
                "intermediate_size": 37,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "image_size": 32,
                "patch_size": 8,
                "num_channels": 3,
                "attention_dropout": 0.0,
            },
            "SiglipVisionConfig",
        ),
        Component(
            "image_processor",
            "SiglipImageProcessor",
            {"size": {"height": 32, "width": 32}, "do_resize": True, "do_normalize": True},
        ),
        output_width=32,  # the penultimate hidden state: hidden_size wide
        image_size=32,
        output="penultimate",
    ),
}
