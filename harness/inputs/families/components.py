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

import torch

from harness.inputs.families.table import FAMILIES
from harness.inputs.models.specs import CLIP_BOS, CLIP_EOS, T5_CONFIG, TEXT_VOCAB, Component
from harness.inputs.models.tokenizers import CHAT_STYLES

PROMPT = "a photo"


@dataclass(frozen=True)
class PromptEmbeds:
    """How *we* encode the call's prompt for the LoRA rows, which then pass
    ``prompt_embeds`` instead of ``prompt``.

    Why: a pipeline whose prompt handling fails for a reason that has nothing to do with
    LoRA (Wan / SkyReels-V2 call ``ftfy`` that they import only when installed) would
    leave the LoRA rows nothing to judge. The embedding is the encoder's last hidden state
    over ``max_length`` tokens, padded positions zeroed (what those pipelines compute).
    ``family_step`` keeps the prompt, so the prompt path stays judged there."""

    max_length: int
    text_encoder: str = "text_encoder"
    tokenizer: str = "tokenizer"


@dataclass(frozen=True)
class FamilyPipeline:
    """One family's non-denoiser components and its one-step call."""

    family: str  # key of ``FAMILIES``
    components: Mapping[str, Component]
    call: Mapping[str, Any]
    latent_shape: tuple[int, ...]
    #: Constructor keywords beyond the components (dropped where the release lacks them).
    init_extra: Mapping[str, Any] = field(default_factory=dict)
    #: Set where the LoRA rows step with our ``prompt_embeds`` rather than the prompt.
    embeds: PromptEmbeds | None = None
    #: Pipeline attributes set after construction, where a constructor hard-codes a size
    #: that no call keyword overrides (recorded in ``built_as``).
    attributes: Mapping[str, Any] = field(default_factory=dict)
    #: Denoiser config keys that differ from the family table's, where the pipeline's own
    #: arithmetic fixes a width the table's denoiser (built for LoRA loads alone) does not
    #: have (recorded in ``built_as``).
    denoiser_config: Mapping[str, Any] = field(default_factory=dict)
    #: Modular pipelines only: the state value the step returns (``pipe(..., output=...)``;
    #: their blocks always decode, so ``call`` names an ``output_type`` they accept). None:
    #: a ``DiffusionPipeline``, called with ``output_type="latent", return_dict=False``.
    output: str | None = None
    #: A pipeline with no latent output type: the fields of its output object
    #: (``return_dict=True``) the step returns, concatenated on the last axis. Name only
    #: what the denoiser decides continuously: a field that passed through an argmax
    #: would hide a LoRA error smaller than the argmax's margin. Empty: the latent output.
    fields: tuple[str, ...] = ()


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


def _mistral3(cls: str, hidden: int, heads: int, layers: int, top_ids: bool = False) -> Component:
    """A tiny Mistral 3 text encoder (Flux2, ERNIE-Image): the text model at the width the
    denoiser reads, a fixed tiny Pixtral vision tower; ``top_ids`` repeats the bos / eos /
    pad ids at the top level of the config (Flux2's pipeline reads them there)."""
    text = {
        "model_type": "mistral",
        "vocab_size": TEXT_VOCAB,
        "hidden_size": hidden,
        "intermediate_size": 37,
        "max_position_embeddings": 512,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1e9,
        "sliding_window": None,
        **_ids("mistral"),
    }
    vision = {
        "model_type": "pixtral",
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "intermediate_size": 37,
        "image_size": 30,
        "patch_size": 6,
        "num_channels": 3,
    }
    config: dict[str, Any] = {
        "text_config": text,
        "vision_config": vision,
        "image_seq_length": 4,
        "vision_feature_layer": -1,
        "image_token_index": TEXT_VOCAB - 1,
        **(_ids("mistral") if top_ids else {}),
    }
    return Component("transformers", cls, config, "Mistral3Config")


_MISTRAL_TOKENIZER = Component("tokenizer", "mistral", {"model_max_length": 512})

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

#: Wan's causal VAE (8x spatial, 4x temporal, 16 latent channels), shared with SkyReels-V2.
_WAN_VAE = Component(
    "diffusers",
    "AutoencoderKLWan",
    {
        "base_dim": 3,
        "z_dim": 16,
        "dim_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "temperal_downsample": [False, True, True],
    },
)

#: Gemma-2 for Sana and Lumina2 (hidden 16 = their caption width); eager attention (the
#: soft-capped logits of Gemma-2 are an eager-only path in older transformers). The sliding
#: window is wider than any prompt we send (as the real 4096 is): transformers 4.48's
#: sliding cache indexes past a window shorter than the prompt (IndexError).
_GEMMA2_16 = Component(
    "transformers",
    "Gemma2Model",
    {
        "vocab_size": TEXT_VOCAB,
        "hidden_size": 16,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "max_position_embeddings": 512,
        "sliding_window": 128,
        "attn_implementation": "eager",
        **_ids("gemma"),
    },
    "Gemma2Config",
)
_GEMMA_TOKENIZER = Component("tokenizer", "gemma", {"model_max_length": 512})

#: HiDream's two CLIPs: the pooled, projected output (``text_embeds``) is what it reads.
_CLIP_PROJECTED_8 = Component(
    "transformers",
    "CLIPTextModelWithProjection",
    {**_CLIP_16.config, "projection_dim": 8},
    "CLIPTextConfig",
)
_CLIP_TOKENIZER = Component(
    "tokenizer", "clip", {"model_max_length": 77, "pad_token": "<|endoftext|>"}
)

#: Qwen2.5-VL with hidden width 16 (Qwen-Image; Cosmos 2.5 reads all its layers).
_QWEN25_VL_16 = Component(
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
)

#: Qwen3-VL with text width 16 (Krea 2's ``Qwen3VLModel``, BriaFibo2's
#: ``Qwen3VLForConditionalGeneration``): two layers, so hidden states 0-2.
_QWEN3_VL_16_CONFIG: dict[str, Any] = {
    "text_config": {
        "vocab_size": TEXT_VOCAB,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        **_ids("qwen"),
    },
    "vision_config": {
        "depth": 2,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": 16,
    },
    "vision_start_token_id": TEXT_VOCAB - 4,
    "vision_end_token_id": TEXT_VOCAB - 3,
    "image_token_id": TEXT_VOCAB - 1,
    "video_token_id": TEXT_VOCAB - 5,
}

#: FLUX.3's prompt upsampler generates ids that the generated ChatML tokenizer must decode:
#: its 259 ids (256 bytes, 3 specials), then 5 vision ids no prompt uses.
_UPSAMPLER_VOCAB = 264

#: Flux 2's VAE cut to one stage of 4 channels (no downsampling; never run for a latent
#: output): Flux 2, ERNIE-Image, BriaFibo2, Ideogram 4.
_FLUX2_VAE = Component(
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
)

#: HunyuanVideo's causal VAE (8x spatial, 4x temporal, 4 latent channels), shared with
#: Kandinsky 5.
_HUNYUAN_VAE = Component(
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
)

_LTX_VAE_CLS, _LTX_VAE_CONFIG = FAMILIES["ltxvideo"].fallback["vae"]

#: RFD4-Proteina's residue vocabulary: the width of its sequence head's logits.
RFD4_RESIDUE_CLASSES = 147
#: The per-atom interaction annotations the released feature configuration requires (each
#: ``condition_<name>_1_atom``, one class per atom37 slot; 0 = none).
RFD4_ATOM_ANNOTATIONS = ("hbond", "pistack", "pication", "saltbridge", "hydrophobic", "metal-coord")
_RFD4_VAE_CLS, _RFD4_VAE_CONFIG = FAMILIES["rfd4proteina"].fallback["vae"]


def protein_call(tokens: int) -> dict[str, Any]:
    """RFD4-Proteina's prepared molecular tensors for one unconditioned chain of ``tokens``
    residues: all real, none given as context, all carrying a local latent, token type 0,
    every atom37 slot used, no sequence / interaction conditions (class 0), one molecule,
    bond path length ``|i - j|`` along the chain. What the preprocessor emits for a de novo
    design, without its package (the pipeline takes the tensors, not a file)."""
    chain = torch.arange(tokens)
    zeros = torch.zeros(1, tokens, dtype=torch.long)
    features: dict[str, torch.Tensor] = {
        name: zeros.clone()
        for name in (
            "condition_sequence_1_residue",
            "molecule_iid",
            "molecule_entity_id",
            "condition_index-group_1_token",
        )
    }
    features["token_bond_path_length"] = (chain[:, None] - chain[None, :]).abs()[None]
    for name in RFD4_ATOM_ANNOTATIONS:
        features[f"condition_{name}_1_atom"] = torch.zeros(1, tokens, 37, dtype=torch.long)
    return {
        "padding_mask": torch.ones(1, tokens, dtype=torch.bool),
        "is_in_context_conditioning": torch.zeros(1, tokens, dtype=torch.bool),
        "supports_local_latent": torch.ones(1, tokens, dtype=torch.bool),
        "token_type": zeros.clone(),
        "atom37_mask": torch.ones(1, tokens, 37, dtype=torch.bool),
        "conditioning_features": features,
    }


FAMILY_PIPELINES: dict[str, FamilyPipeline] = {
    # Wan 2.1 T2V: UMT5 (text_dim 32 = d_model), AutoencoderKLWan 8x spatial / 4x temporal.
    # 32 x 32 x 5 frames -> latents 16 x 2 x 4 x 4 -> 8 tokens of patch (1, 2, 2).
    "wan": FamilyPipeline(
        "wan",
        {
            "text_encoder": _UMT5,
            "tokenizer": _T5_TOKENIZER,
            "vae": _WAN_VAE,
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
        embeds=PromptEmbeds(max_length=16),
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
            "text_encoder": _mistral3("Mistral3ForConditionalGeneration", 32, 4, 1, top_ids=True),
            "tokenizer": _MISTRAL_TOKENIZER,
            "vae": _FLUX2_VAE,
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
            "text_encoder": _QWEN25_VL_16,
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
            "vae": _HUNYUAN_VAE,
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
    # Sana: Gemma-2 (hidden 16 = caption_channels; last hidden state) + the Gemma chat-style
    # tokenizer, AutoencoderDC (8x: four stages) with 4 latent channels. No resolution
    # binning (its bins start at 512 px), no complex-human-instruction preamble (about a
    # thousand byte tokens through the encoder). Sizes must be multiples of 32:
    # 32 x 32 -> latents 4 x 4 x 4 -> 16 tokens.
    "sana": FamilyPipeline(
        "sana",
        {
            "text_encoder": _GEMMA2_16,
            "tokenizer": _GEMMA_TOKENIZER,
            "vae": Component(
                "diffusers",
                "AutoencoderDC",
                {
                    "in_channels": 3,
                    "latent_channels": 4,
                    "attention_head_dim": 2,
                    "encoder_block_types": ("ResBlock",) * 3 + ("EfficientViTBlock",),
                    "decoder_block_types": ("ResBlock",) * 3 + ("EfficientViTBlock",),
                    "encoder_block_out_channels": (8, 8, 8, 8),
                    "decoder_block_out_channels": (8, 8, 8, 8),
                    "encoder_qkv_multiscales": ((), (), (), (5,)),
                    "decoder_qkv_multiscales": ((), (), (), (5,)),
                    "encoder_layers_per_block": (1, 1, 1, 1),
                    "decoder_layers_per_block": (1, 1, 1, 1),
                    "downsample_block_type": "conv",
                    "upsample_block_type": "interpolate",
                    "decoder_norm_types": "rms_norm",
                    "decoder_act_fns": "silu",
                    "scaling_factor": 0.41407,
                },
            ),
            "scheduler": _scheduler(shift=7.0),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_sequence_length": 16,
            "use_resolution_binning": False,
            "complex_human_instruction": None,
        },
        (1, 4, 4, 4),
    ),
    # Lumina2: Gemma-2 (hidden 16 = cap_feat_dim; hidden_states[-2]) + the Gemma tokenizer,
    # an AutoencoderKL with 4 latent channels (the pipeline assumes 8x: 32 x 32 -> 4 x 4
    # latents -> 4 tokens of patch 2). A short system prompt keeps the prompt inside the
    # 32-token window.
    "lumina2": FamilyPipeline(
        "lumina2",
        {
            "text_encoder": _GEMMA2_16,
            "tokenizer": _GEMMA_TOKENIZER,
            "vae": Component(
                "diffusers",
                "AutoencoderKL",
                {
                    "sample_size": 32,
                    "in_channels": 3,
                    "out_channels": 3,
                    "block_out_channels": [4],
                    "layers_per_block": 1,
                    "latent_channels": 4,
                    "norm_num_groups": 1,
                    "use_quant_conv": False,
                    "use_post_quant_conv": False,
                    "shift_factor": 0.0609,
                    "scaling_factor": 1.5035,
                },
            ),
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_sequence_length": 32,
            "system_prompt": "draw",
        },
        (1, 4, 4, 4),
    ),
    # CogVideoX: T5 (text_embed_dim 32; max_sequence_length = the transformer's
    # max_text_seq_length 16), AutoencoderKLCogVideoX (8x spatial: four stages; 4x
    # temporal; 4 channels), the CogVideoX DDIM scheduler. 32 x 32 x 5 frames -> latents
    # (frames 2, channels 4, 4 x 4) -> 8 tokens of patch 2.
    "cogvideox": FamilyPipeline(
        "cogvideox",
        {
            "text_encoder": _T5,
            "tokenizer": _T5_TOKENIZER,
            "vae": Component(
                "diffusers",
                "AutoencoderKLCogVideoX",
                {
                    "in_channels": 3,
                    "out_channels": 3,
                    "down_block_types": ("CogVideoXDownBlock3D",) * 4,
                    "up_block_types": ("CogVideoXUpBlock3D",) * 4,
                    "block_out_channels": (8, 8, 8, 8),
                    "latent_channels": 4,
                    "layers_per_block": 1,
                    "norm_num_groups": 2,
                    "temporal_compression_ratio": 4,
                },
            ),
            "scheduler": Component("diffusers", "CogVideoXDDIMScheduler", {}),
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
        (1, 2, 4, 4, 4),
    ),
    # SkyReels-V2 T2V: Wan's components (UMT5, the Wan VAE) and a flow UniPC scheduler, as
    # diffusers' own test builds it. 32 x 32 x 5 frames -> latents 16 x 2 x 4 x 4.
    "skyreels-v2": FamilyPipeline(
        "skyreels-v2",
        {
            "text_encoder": _UMT5,
            "tokenizer": _T5_TOKENIZER,
            "vae": _WAN_VAE,
            "scheduler": Component(
                "diffusers",
                "UniPCMultistepScheduler",
                {"flow_shift": 8.0, "use_flow_sigmas": True, "prediction_type": "flow_prediction"},
            ),
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
        embeds=PromptEmbeds(max_length=16),
    ),
    # Mochi: T5 (text_embed_dim 32; max_sequence_length = the transformer's 16),
    # AutoencoderKLMochi with diffusers' test widths (its group norms need 32 channels) and
    # 12 latent channels; the pipeline assumes 8x spatial, 6x temporal.
    # 32 x 32 x 7 frames -> latents 12 x 2 x 4 x 4 -> 8 tokens of patch 2. Two steps: its
    # linear-quadratic sigma schedule divides by zero for one.
    "mochi": FamilyPipeline(
        "mochi",
        {
            "text_encoder": _T5,
            "tokenizer": _T5_TOKENIZER,
            "vae": Component(
                "diffusers",
                "AutoencoderKLMochi",
                {
                    "latent_channels": 12,
                    "out_channels": 3,
                    "encoder_block_out_channels": (32, 32, 32, 32),
                    "decoder_block_out_channels": (32, 32, 32, 32),
                    "layers_per_block": (1, 1, 1, 1, 1),
                },
            ),
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_frames": 7,
            "num_inference_steps": 2,
            "guidance_scale": 1.0,
            "max_sequence_length": 16,
        },
        (1, 12, 2, 4, 4),
    ),
    # AuraFlow: UMT5 (joint_attention_dim 32) + T5 tokenizer, a two-stage AutoencoderKL (2x,
    # 4 latent channels). 16 x 16 -> latents 4 x 8 x 8 -> 16 tokens of patch 2.
    "auraflow": FamilyPipeline(
        "auraflow",
        {
            "text_encoder": _UMT5,
            "tokenizer": _T5_TOKENIZER,
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
                    "latent_channels": 4,
                    "norm_num_groups": 4,
                    "sample_size": 32,
                },
            ),
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 16,
            "width": 16,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_sequence_length": 16,
        },
        (1, 4, 8, 8),
    ),
    # CogView4: GLM-4 (hidden 32 = text_embed_dim; hidden_states[-2]; the pipeline left-pads
    # the prompt to a multiple of 16 tokens) + the GLM-style tokenizer, a two-stage
    # AutoencoderKL (2x, 4 channels), the dynamic-shift scheduler of diffusers' test.
    # 16 x 16 -> latents 4 x 8 x 8 -> 16 tokens of patch 2.
    "cogview4": FamilyPipeline(
        "cogview4",
        {
            "text_encoder": Component(
                "transformers",
                "GlmModel",
                {
                    "vocab_size": TEXT_VOCAB,
                    "hidden_size": 32,
                    "intermediate_size": 37,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 4,
                    "num_key_value_heads": 2,
                    "head_dim": 8,
                    "max_position_embeddings": 512,
                    **_ids("glm"),
                },
                "GlmConfig",
            ),
            "tokenizer": Component("tokenizer", "glm", {"model_max_length": 512}),
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
                    "latent_channels": 4,
                    "norm_num_groups": 4,
                    "sample_size": 32,
                },
            ),
            "scheduler": _scheduler(
                base_shift=0.25,
                max_shift=0.75,
                base_image_seq_len=256,
                use_dynamic_shifting=True,
                time_shift_type="linear",
            ),
        },
        {
            "prompt": PROMPT,
            "height": 16,
            "width": 16,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_sequence_length": 16,
        },
        (1, 4, 8, 8),
    ),
    # HiDream-I1: four encoders. Two CLIPs with projection (pooled 8 + 8 = text_emb_dim
    # 16), T5 (32 = caption_channels[0]) and a Llama-3 causal LM (hidden 16 =
    # caption_channels[1]; both of its layers' hidden states = llama_layers (0, 1)), each
    # with its generated tokenizer; a two-stage AutoencoderKL (2x, 4 channels). The
    # pipeline rescales every request to the area of ``default_sample_size`` (128, set in
    # ``__init__``) latents squared: 4096 tokens at any size asked for. Set to 8 after
    # construction: 16 x 16 -> latents 4 x 8 x 8 -> 16 tokens of patch 2.
    "hidream": FamilyPipeline(
        "hidream",
        {
            "text_encoder": _CLIP_PROJECTED_8,
            "tokenizer": _CLIP_TOKENIZER,
            "text_encoder_2": _CLIP_PROJECTED_8,
            "tokenizer_2": _CLIP_TOKENIZER,
            "text_encoder_3": _T5,
            "tokenizer_3": _T5_TOKENIZER,
            "text_encoder_4": Component(
                "transformers",
                "LlamaForCausalLM",
                {
                    "vocab_size": TEXT_VOCAB,
                    "hidden_size": 16,
                    "intermediate_size": 37,
                    "num_attention_heads": 4,
                    "num_hidden_layers": 2,
                    "max_position_embeddings": 512,
                    "hidden_act": "silu",
                    "rms_norm_eps": 1e-5,
                    **_ids("llama"),
                },
                "LlamaConfig",
            ),
            "tokenizer_4": Component("tokenizer", "llama", {"model_max_length": 512}),
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
                    "latent_channels": 4,
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
            "guidance_scale": 1.0,
            "max_sequence_length": 16,
        },
        (1, 4, 8, 8),
        attributes={"default_sample_size": 8},
    ),
    # Cosmos-Predict 2.5 (text to world): Qwen2.5-VL behind the ChatML template; the
    # pipeline concatenates every layer's normalised hidden state (2 x 16 = text_embed_dim
    # 32). The Wan VAE (16 channels; in_channels 17 = + the padding mask), UniPC, and an
    # inert safety checker (``stand_ins``). The 64-token window holds the system message
    # and the prompt. 32 x 32 x 5 frames -> latents 16 x 2 x 4 x 4 -> 8 tokens.
    "cosmos2-5": FamilyPipeline(
        "cosmos2-5",
        {
            "text_encoder": _QWEN25_VL_16,
            "tokenizer": Component("tokenizer", "qwen", {"model_max_length": 2048}),
            "vae": _WAN_VAE,
            "scheduler": Component("diffusers", "UniPCMultistepScheduler", {}),
            "safety_checker": Component(
                "harness.inputs.families.stand_ins", "PassingSafetyChecker", {}
            ),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_frames": 5,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_sequence_length": 64,
        },
        (1, 16, 2, 4, 4),
    ),
    # Kandinsky 5 T2V: Qwen2.5-VL (16 = in_text_dim; its last hidden state from token 128
    # of the prompt template on) and CLIP's pooled output (32 = in_text_dim2), the
    # HunyuanVideo VAE (4 channels). The tokenizer is called as a processor (``text=``,
    # ``images=None``): the ChatML tokenizer behind that signature (``qwen-processor``).
    # 32 x 32 x 5 frames -> latents 2 x 4 x 4 -> 8 tokens.
    "kandinsky5": FamilyPipeline(
        "kandinsky5",
        {
            "text_encoder": _QWEN25_VL_16,
            "tokenizer": Component("tokenizer", "qwen-processor", {"model_max_length": 2048}),
            "text_encoder_2": Component(
                "transformers",
                "CLIPTextModel",
                {**_CLIP_16.config, "hidden_size": 32, "projection_dim": 32},
                "CLIPTextConfig",
            ),
            "tokenizer_2": _CLIP_TOKENIZER,
            "vae": _HUNYUAN_VAE,
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
        (1, 2, 4, 4, 4),
    ),
    # LTX-2 (audio + video): Gemma-3 (text hidden 32 = caption_channels; one layer, so the
    # pipeline's stack of all hidden states is 2 x 32 = the connectors' text_proj_in_factor
    # 2) + the Gemma tokenizer; the table's text connectors (the mixin's second target);
    # diffusers' test video / audio VAEs and vocoder (2x spatial and temporal). 32 x 32 x 5
    # frames -> video latents 4 x 3 x 16 x 16 (the step's first output; audio not compared).
    "ltx2": FamilyPipeline(
        "ltx2",
        {
            "text_encoder": Component(
                "transformers",
                "Gemma3ForConditionalGeneration",
                {
                    "text_config": {
                        "model_type": "gemma3_text",
                        "vocab_size": TEXT_VOCAB,
                        "hidden_size": 32,
                        "intermediate_size": 37,
                        "num_hidden_layers": 1,
                        "num_attention_heads": 2,
                        "num_key_value_heads": 1,
                        "head_dim": 16,
                        "max_position_embeddings": 512,
                        "sliding_window": 128,
                        **_ids("gemma"),
                    },
                    "vision_config": {
                        "model_type": "siglip_vision_model",
                        "hidden_size": 16,
                        "intermediate_size": 37,
                        "num_hidden_layers": 1,
                        "num_attention_heads": 2,
                        "image_size": 28,
                        "patch_size": 14,
                    },
                    "mm_tokens_per_image": 4,
                    "boi_token_index": TEXT_VOCAB - 3,
                    "eoi_token_index": TEXT_VOCAB - 2,
                    "image_token_index": TEXT_VOCAB - 1,
                },
                "Gemma3Config",
            ),
            "tokenizer": _GEMMA_TOKENIZER,
            "connectors": Component(
                FAMILIES["ltx2-connectors"].library,
                FAMILIES["ltx2-connectors"].denoiser,
                FAMILIES["ltx2-connectors"].config,
            ),
            "vae": Component(
                "diffusers",
                "AutoencoderKLLTX2Video",
                {
                    "in_channels": 3,
                    "out_channels": 3,
                    "latent_channels": 4,
                    "block_out_channels": (8,),
                    "decoder_block_out_channels": (8,),
                    "layers_per_block": (1,),
                    "decoder_layers_per_block": (1, 1),
                    "spatio_temporal_scaling": (True,),
                    "decoder_spatio_temporal_scaling": (True,),
                    "decoder_inject_noise": (False, False),
                    "downsample_type": ("spatial",),
                    "upsample_residual": (False,),
                    "upsample_factor": (1,),
                    "timestep_conditioning": False,
                    "patch_size": 1,
                    "patch_size_t": 1,
                    "encoder_causal": True,
                    "decoder_causal": False,
                },
            ),
            "audio_vae": Component(
                "diffusers",
                "AutoencoderKLLTX2Audio",
                {
                    "base_channels": 4,
                    "output_channels": 2,
                    "ch_mult": (1,),
                    "num_res_blocks": 1,
                    "attn_resolutions": None,
                    "in_channels": 2,
                    "resolution": 32,
                    "latent_channels": 2,
                    "norm_type": "pixel",
                    "causality_axis": "height",
                    "dropout": 0.0,
                    "mid_block_add_attention": False,
                    "sample_rate": 16000,
                    "mel_hop_length": 160,
                    "is_causal": True,
                    "mel_bins": 8,
                },
            ),
            "vocoder": Component(
                "diffusers.pipelines.ltx2",
                "LTX2Vocoder",
                {
                    "in_channels": 2 * 8,  # audio VAE output channels x mel bins
                    "hidden_channels": 32,
                    "out_channels": 2,
                    "upsample_kernel_sizes": [4, 4],
                    "upsample_factors": [2, 2],
                    "resnet_kernel_sizes": [3],
                    "resnet_dilations": [[1, 3, 5]],
                    "leaky_relu_negative_slope": 0.1,
                    "output_sampling_rate": 16000,
                },
            ),
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_frames": 5,
            "frame_rate": 25.0,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "audio_guidance_scale": 1.0,
            "max_sequence_length": 16,
        },
        (1, 4, 3, 16, 16),
    ),
    # Helios: Wan's components (UMT5, the Wan VAE) and its own one-stage HeliosScheduler,
    # as diffusers' test builds it. Its prompt cleaning calls ``ftfy`` unguarded, as
    # SkyReels-V2's does: the LoRA rows take our embeddings. It denoises whole chunks of
    # ``num_latent_frames_per_chunk`` latent frames (9 by default; 2 here): 32 x 32 x 5
    # frames -> latents 16 x 2 x 4 x 4.
    "helios": FamilyPipeline(
        "helios",
        {
            "text_encoder": _UMT5,
            "tokenizer": _T5_TOKENIZER,
            "vae": _WAN_VAE,
            "scheduler": Component(
                "diffusers",
                "HeliosScheduler",
                {"stage_range": [0, 1], "stages": 1, "use_dynamic_shifting": True},
            ),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_frames": 5,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_sequence_length": 16,
            "num_latent_frames_per_chunk": 2,
        },
        (1, 16, 2, 4, 4),
        embeds=PromptEmbeds(max_length=16),
    ),
    # ERNIE-Image: Mistral 3 (text hidden 16 = text_in_dim; hidden_states[-2], the prompt's
    # own tokens, no padding), AutoencoderKLFlux2 with one stage (the pipeline takes 2 **
    # stages = 2x) and 4 channels (2 x 2 patchified: 16 = in_channels; the step draws its
    # latents patchified). No prompt enhancer. 16 x 16 -> latents 16 x 8 x 8 -> 64 tokens.
    "ernieimage": FamilyPipeline(
        "ernieimage",
        {
            "text_encoder": _mistral3("Mistral3Model", 16, 2, 2),
            "tokenizer": _MISTRAL_TOKENIZER,
            "vae": _FLUX2_VAE,
            "scheduler": _scheduler(),
        },
        {
            "prompt": PROMPT,
            "height": 16,
            "width": 16,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "use_pe": False,
        },
        (1, 16, 8, 8),
    ),
    # Krea 2: Qwen3-VL (text hidden 16 = text_hidden_dim; hidden states of layers 0-2 =
    # num_text_layers 3, ``text_encoder_select_layers``) behind the ChatML template, Qwen-
    # Image's VAE (8x, z 4, narrower: never run; in_channels 16 = 4 x 2 x 2), the dynamic-
    # shift scheduler of diffusers' test. Guidance 0 (it guides whenever the scale is > 0).
    # 32 x 32 -> 16 packed tokens.
    "krea2": FamilyPipeline(
        "krea2",
        {
            "text_encoder": Component(
                "transformers", "Qwen3VLModel", _QWEN3_VL_16_CONFIG, "Qwen3VLConfig"
            ),
            "tokenizer": Component("tokenizer", "qwen", {"model_max_length": 2048}),
            "vae": Component(
                "diffusers",
                "AutoencoderKLQwenImage",
                {
                    "base_dim": 8,
                    "z_dim": 4,
                    "dim_mult": [1, 2, 4],
                    "num_res_blocks": 1,
                    "temperal_downsample": [False, True],
                    "latents_mean": [0.0] * 4,
                    "latents_std": [1.0] * 4,
                },
            ),
            "scheduler": _scheduler(
                use_dynamic_shifting=True,
                base_shift=0.5,
                max_shift=1.15,
                base_image_seq_len=256,
                max_image_seq_len=6400,
            ),
        },
        {
            "prompt": PROMPT,
            "height": 32,
            "width": 32,
            "num_inference_steps": 1,
            "guidance_scale": 0.0,
            "max_sequence_length": 16,
        },
        (1, 16, 16),
        init_extra={"text_encoder_select_layers": (0, 1, 2)},
    ),
    # BriaFibo2: Qwen3-VL (text 16) behind the processor's call signature (``qwen-
    # processor``: the pipeline calls ``processor(text=..., images=None)``), Flux 2's VAE
    # (one stage, 4 channels; never run), the dynamic-shift scheduler. The pipeline bundles
    # hidden states of three layers each into 1 + len(injection_layer_ids) = 6 streams of
    # width 3 x 2560 (``text_encoder_out_layers``, layers up to 35); the tiny denoiser
    # reads 2 streams of width ``cap_feat_dim`` 16, so one layer per bundle: ((1,), (2,)),
    # set after construction. Guidance 1 (it guides above 1). 16 x 16 -> (1, 16, 16, 16)
    # unpacked latents (vae_scale_factor 1, patch 2: 64 image tokens).
    "briafibo2": FamilyPipeline(
        "briafibo2",
        {
            "text_encoder": Component(
                "transformers",
                "Qwen3VLForConditionalGeneration",
                _QWEN3_VL_16_CONFIG,
                "Qwen3VLConfig",
            ),
            "processor": Component("tokenizer", "qwen-processor", {"model_max_length": 2048}),
            "vae": _FLUX2_VAE,
            "scheduler": _scheduler(
                use_dynamic_shifting=True,
                base_shift=0.5,
                max_shift=1.15,
                base_image_seq_len=256,
                max_image_seq_len=4096,
            ),
        },
        {
            "prompt": PROMPT,
            "height": 16,
            "width": 16,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
        },
        (1, 16, 16, 16),
        attributes={"text_encoder_out_layers": ((1,), (2,))},
    ),
    # Ideogram 4: ``Qwen3VLModel`` (the pipeline reads ``text_encoder.language_model``, which
    # ``Qwen3VLForConditionalGeneration`` of transformers 5.21 lacks) whose decoder layers
    # the pipeline runs itself, tapping the 13
    # fixed layers 0, 3, ..., 33, 35 (``QWEN3_VL_ACTIVATION_LAYERS``, a module constant):
    # 36 layers of text width 16, so ``llm_features_dim`` = 13 x 16 = 208 for both
    # denoisers (the table's 16 is for LoRA loads alone). The unconditional denoiser is a
    # second tiny one (no LoRA targets it). Flux 2's one-stage VAE (never run), 8 x 8 ->
    # 4 x 4 = 16 packed tokens of ``in_channels`` 8; one-entry guidance schedule (3: both
    # denoisers count).
    "ideogram4": FamilyPipeline(
        "ideogram4",
        {
            "text_encoder": Component(
                "transformers",
                "Qwen3VLModel",
                {
                    **_QWEN3_VL_16_CONFIG,
                    "text_config": {**_QWEN3_VL_16_CONFIG["text_config"], "num_hidden_layers": 36},
                },
                "Qwen3VLConfig",
            ),
            "tokenizer": Component("tokenizer", "qwen", {"model_max_length": 2048}),
            "vae": _FLUX2_VAE,
            "scheduler": _scheduler(),
            "unconditional_transformer": Component(
                "diffusers",
                "Ideogram4Transformer2DModel",
                {**FAMILIES["ideogram4"].config, "llm_features_dim": 208},
            ),
        },
        {
            "prompt": PROMPT,
            "height": 8,
            "width": 8,
            "num_inference_steps": 1,
            "guidance_schedule": (3.0,),
            "max_sequence_length": 32,
        },
        (1, 16, 8),
        denoiser_config={"llm_features_dim": 208},
    ),
    # FLUX.3 (modular): the default blocks, prompt upsampler included (a user without one
    # pops the step). The upsampler is a tiny Qwen3.5 (one linear-attention and one full-
    # attention layer) whose vocabulary is the generated tokenizer's 259 ids plus the 5
    # vision ids (an id beyond the tokenizer's decodes to nothing, and an empty caption
    # is refused), greedy for
    # ``max_new_tokens`` 4; the text encoder Qwen3-VL (text 16; ``text_encoder_out_layers``
    # (2,) = ``joint_attention_dim`` 16); one processor stand-in (``.tokenizer``,
    # ``apply_chat_template``, ``decode``) for both. The blocks always decode: Flux 2's
    # one-stage VAE with 2 latent channels (x 2 x 2 = the denoiser's 8), ``output_type``
    # "pt". Classifier-free guidance of the default guider (3.5: two denoiser passes).
    # 8 x 8 -> 4 x 4 = 16 tokens; the state's ``latents`` are unpacked (1, 8, 4, 4).
    "flux3": FamilyPipeline(
        "flux3",
        {
            "prompt_upsampler": Component(
                "transformers",
                "Qwen3_5ForConditionalGeneration",
                {
                    "text_config": {
                        "vocab_size": _UPSAMPLER_VOCAB,
                        "hidden_size": 16,
                        "intermediate_size": 16,
                        "num_hidden_layers": 2,
                        "num_attention_heads": 2,
                        "num_key_value_heads": 1,
                        "head_dim": 8,
                        "linear_conv_kernel_dim": 2,
                        "linear_key_head_dim": 8,
                        "linear_value_head_dim": 8,
                        "linear_num_key_heads": 2,
                        "linear_num_value_heads": 2,
                        "layer_types": ["linear_attention", "full_attention"],
                        **_ids("qwen"),
                    },
                    "vision_config": {
                        "depth": 1,
                        "hidden_size": 16,
                        "intermediate_size": 16,
                        "num_heads": 2,
                        "out_hidden_size": 16,
                    },
                    "vision_start_token_id": _UPSAMPLER_VOCAB - 4,
                    "vision_end_token_id": _UPSAMPLER_VOCAB - 3,
                    "image_token_id": _UPSAMPLER_VOCAB - 1,
                    "video_token_id": _UPSAMPLER_VOCAB - 5,
                    **_ids("qwen"),
                },
                "Qwen3_5Config",
            ),
            "prompt_upsampler_processor": Component("tokenizer", "qwen-vl-processor", {}),
            "text_encoder": Component(
                "transformers",
                "Qwen3VLForConditionalGeneration",
                _QWEN3_VL_16_CONFIG,
                "Qwen3VLConfig",
            ),
            "tokenizer": Component("tokenizer", "qwen-vl-processor", {}),
            "vae": Component(
                "diffusers", "AutoencoderKLFlux2", {**_FLUX2_VAE.config, "latent_channels": 2}
            ),
        },
        {
            "prompt": PROMPT,
            "height": 8,
            "width": 8,
            "num_inference_steps": 1,
            "max_new_tokens": 4,
            "max_sequence_length": 16,
            "text_encoder_out_layers": (2,),
            "output_type": "pt",
        },
        (1, 8, 4, 4),
        output="latents",
    ),
    # Anima (modular): Qwen3 (hidden 24 = the text conditioner's ``source_dim``) + the
    # ChatML tokenizer, the generated T5 tokenizer for the conditioner's target ids (its
    # ``target_vocab_size`` raised from the table's 32 to 64, above the 45 generated ids),
    # the table's ``anima-text-conditioner`` otherwise, Qwen-Image's VAE (z 4 = the
    # denoiser's channels; the blocks always decode, ``output_type`` "pt"), the scheduler
    # (a pretrained component of the blocks). The default guider's two passes.
    # 32 x 32 -> latents (1, 4, 1, 8, 8) (4x spatial; 16 tokens of patch 2).
    "anima": FamilyPipeline(
        "anima",
        {
            "text_encoder": Component(
                "transformers",
                "Qwen3Model",
                {
                    "vocab_size": TEXT_VOCAB,
                    "hidden_size": 24,
                    "intermediate_size": 16,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 2,
                    "num_key_value_heads": 2,
                    "head_dim": 8,
                    "max_position_embeddings": 512,
                    **_ids("qwen"),
                },
                "Qwen3Config",
            ),
            "tokenizer": Component("tokenizer", "qwen", {"model_max_length": 512}),
            "t5_tokenizer": _T5_TOKENIZER,
            "text_conditioner": Component(
                "diffusers",
                "AnimaTextConditioner",
                {**FAMILIES["anima-text-conditioner"].config, "target_vocab_size": 64},
            ),
            "vae": Component(
                "diffusers",
                "AutoencoderKLQwenImage",
                {
                    "base_dim": 8,
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
            "max_sequence_length": 16,
            "output_type": "pt",
        },
        (1, 4, 1, 8, 8),
        output="latents",
    ),
    # ACE-Step (audio): Qwen3 (hidden 16 = the condition encoder's ``text_hidden_dim``) +
    # the ChatML tokenizer for caption and lyrics, the condition encoder (width 16 = the
    # denoiser's; timbre width = the acoustic width 4), diffusers' test Oobleck VAE cut to
    # 4 latent channels, its audio tokenizer / detokenizer (cover tasks; unused by this
    # step). The denoiser reads noise, source latents and chunk mask concatenated:
    # ``in_channels`` 3 x 4 = 12 (the table's 8 is for LoRA loads alone). Guidance 1 (no
    # second pass). The tiny VAE gives 4 Hz / 2 = 2 latent frames per second: 8 s -> 16
    # frames, 8 tokens of patch 2 -> latents (1, 16, 4).
    "acestep": FamilyPipeline(
        "acestep",
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
                    **_ids("qwen"),
                },
                "Qwen3Config",
            ),
            "tokenizer": Component("tokenizer", "qwen", {"model_max_length": 512}),
            "condition_encoder": Component(
                "diffusers.pipelines.ace_step",
                "AceStepConditionEncoder",
                {
                    "hidden_size": 16,
                    "intermediate_size": 32,
                    "text_hidden_dim": 16,
                    "timbre_hidden_dim": 4,
                    "num_lyric_encoder_hidden_layers": 1,
                    "num_timbre_encoder_hidden_layers": 1,
                    "num_attention_heads": 2,
                    "num_key_value_heads": 1,
                    "head_dim": 8,
                    "sliding_window": 8,
                },
            ),
            "vae": Component(
                "diffusers",
                "AutoencoderOobleck",
                {
                    "encoder_hidden_size": 6,
                    "downsampling_ratios": [1, 2],
                    "decoder_channels": 3,
                    "decoder_input_channels": 4,
                    "audio_channels": 2,
                    "channel_multiples": [2, 4],
                    "sampling_rate": 4,
                },
            ),
            "scheduler": _scheduler(num_train_timesteps=1, shift=1.0),
            "audio_tokenizer": Component(
                "diffusers.pipelines.ace_step",
                "AceStepAudioTokenizer",
                {
                    "hidden_size": 16,
                    "intermediate_size": 32,
                    "audio_acoustic_hidden_dim": 4,
                    "pool_window_size": 2,
                    "fsq_dim": 16,
                    "fsq_input_levels": [4, 4, 4],
                    "fsq_input_num_quantizers": 1,
                    "num_attention_pooler_hidden_layers": 1,
                    "num_attention_heads": 2,
                    "num_key_value_heads": 1,
                    "head_dim": 8,
                    "sliding_window": 8,
                },
            ),
        },
        {
            "prompt": PROMPT,
            "lyrics": "[verse]\nla",
            "audio_duration": 8.0,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
            "max_text_length": 16,
            "max_lyric_length": 16,
        },
        (1, 16, 4),
        denoiser_config={"in_channels": 12},
    ),
    # MiniMax-H3 (modular, workflow ``t2va``: text to video + stereo audio in one packed
    # sequence): the default blocks with a Qwen3-VL conditioner (text 16 = the denoiser's
    # ``text_dim``) of 51 layers, because the blocks read ``hidden_states[50]`` (a module
    # property; fewer layers are refused), the ChatML tokenizer (the prompt verbatim, no
    # template) and the ``qwen-vl-processor`` stand-in (the blocks ask it only for the
    # modality type of each id: all text). diffusers' test video VAE (8 + 16 channels, 4x
    # spatial and temporal, the released ``clip_length`` 17 / ``token_drop`` 3: 124 frames
    # -> 37 latent frames) and audio VAE (hop 4), both cut to the denoiser's 4 latent
    # channels; the two schedulers with the released shifts (12 video, 3 audio). The step
    # is the fewest the blocks accept: 124 frames (5 s at 24 fps, the shortest duration,
    # rounded up to 17 n + 5), an 8 x 8 canvas (the multiple 4 x patch 2), two inference
    # steps (the scheduler refuses one). The packed sequence: 7 text rows, 2 x 207 audio
    # rows, 37 video rows of one patch each. The blocks always decode (``output_type``
    # "pt"); the step returns the state's video ``latents`` (1, 4, 37, 2, 2); the audio
    # latents are not compared.
    "minimax-h3": FamilyPipeline(
        "minimax-h3",
        {
            "text_encoder": Component(
                "transformers",
                "Qwen3VLForConditionalGeneration",
                {
                    **_QWEN3_VL_16_CONFIG,
                    "text_config": {**_QWEN3_VL_16_CONFIG["text_config"], "num_hidden_layers": 51},
                },
                "Qwen3VLConfig",
            ),
            "tokenizer": Component("tokenizer", "qwen", {"model_max_length": 512}),
            "processor": Component("tokenizer", "qwen-vl-processor", {}),
            "vae": Component(
                "diffusers",
                "AutoencoderKLMiniMaxH3",
                {
                    "in_channels": 3,
                    "out_channels": 3,
                    "latent_channels": 4,
                    "block_out_channels": (8, 16),
                    "layers_per_block": 1,
                    "spatial_downsample_factors": (2, 2),
                    "temporal_downsample_factors": (2, 2),
                    "norm_num_groups": 8,
                    "decoder_num_layers": 2,
                    "decoder_num_attention_heads": 2,
                    "decoder_attention_head_dim": 8,
                    "decoder_num_register_tokens": 2,
                    "decoder_ffn_mult": 2,
                    "clip_length": 17,
                    "token_drop": 3,
                    "latents_mean": (0.0,) * 4,
                    "latents_std": (1.0,) * 4,
                },
            ),
            "audio_vae": Component(
                "diffusers",
                "AutoencoderKLMiniMaxH3Audio",
                {
                    "encoder_dim": 4,
                    "encoder_rates": (2, 2),
                    "latent_dim": 32,
                    "latent_channels": 4,
                    "num_attention_heads": 2,
                    "decoder_dim": 16,
                    "decoder_rates": (2, 2),
                    "decoder_kernel_sizes": (4, 4),
                    "resblock_kernel_sizes": (3, 7),
                    "resblock_dilation_sizes": ((1, 3), (1, 3)),
                    "sampling_rate": 32000,
                    "latents_mean": [0.0] * 4,
                    "latents_std": [1.0] * 4,
                },
            ),
            "scheduler": Component("diffusers", "MiniMaxH3Scheduler", {"shift": 12.0}),
            "audio_scheduler": Component("diffusers", "MiniMaxH3Scheduler", {"shift": 3.0}),
        },
        {
            "prompt": PROMPT,
            "height": 8,
            "width": 8,
            "num_frames": 124,
            "num_inference_steps": 2,
            "output_type": "pt",
        },
        (1, 4, 37, 2, 2),
        output="latents",
    ),
    # RFD4-Proteina (proteins): no text; the call is the prepared molecular tensors of one
    # 6-residue chain (``protein_call``). The table's autoencoder (latent 4 = the
    # denoiser's; its ``atom37_mask`` has a row for each of the 147 residue classes, as the
    # decoder indexes it by the predicted class). Two schedulers, one per modality
    # (backbone: log times, tan noise; local latents: power times, 1/t noise), no finer
    # tail intervals: the number
    # of steps is ``len(recycle_depths)``, so ``[1]`` is one step with one trunk pass.
    # There is no latent output type: the step is the final backbone (3), local latents
    # (4) and sequence logits (147) per residue -> (1, 6, 154); ``coords_nm`` and
    # ``residue_type`` pass through an argmax over those logits.
    "rfd4proteina": FamilyPipeline(
        "rfd4proteina",
        {
            "vae": Component("diffusers", _RFD4_VAE_CLS, _RFD4_VAE_CONFIG),
            "bb_ca_scheduler": Component(
                "diffusers",
                "RFD4ProteinaScheduler",
                {
                    "schedule_mode": "log",
                    "noise_mode": "tan",
                    "tsr_k": 1.0,
                    "tsr_sigma": 1.0,
                    "tail_steps": 0,
                },
            ),
            "local_latents_scheduler": Component(
                "diffusers",
                "RFD4ProteinaScheduler",
                {
                    "schedule_mode": "power",
                    "noise_mode": "1/t",
                    "tsr_k": 1.0,
                    "tsr_sigma": 1.0,
                    "tail_steps": 0,
                },
            ),
        },
        protein_call(6),
        (1, 6, 3 + FAMILIES["rfd4proteina"].config["latent_dim"] + RFD4_RESIDUE_CLASSES),
        init_extra={"recycle_depths": [1]},
        fields=("bb_ca", "local_latents", "sequence_logits"),
    ),
}

#: LoRA rows whose file targets a companion component of another family's complete
#: pipeline (the table's ``companions``: a second component the family's mixin loads
#: into), row -> that family. The pipeline, its call and its ``family_step`` are the host
#: family's; the file and our merge are the row's own (``FAMILIES[row].attr`` and
#: ``.blocks``: LTX-2's text connectors, loaded from ``connectors.``-named keys).
COMPANION_LORA_HOSTS: dict[str, str] = {"ltx2-connectors": "ltx2"}

#: Pipeline keywords that carry ``{"scale": s}`` to the denoiser, in the order tried.
SCALE_KWARGS = ("attention_kwargs", "joint_attention_kwargs", "cross_attention_kwargs")
