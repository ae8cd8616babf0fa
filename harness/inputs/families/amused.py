"""The two tiny models of the Amused LoRA route, built once per session, handed out as
copies.

No pipeline class inherits ``AmusedLoraLoaderMixin`` in any release (``AmusedPipeline``
inherits ``DiffusionPipeline`` only), so the family table leaves it out. Its users are
trainers calling its classmethods on bare models, as diffusers'
``examples/amused/train_amused.py`` does: ``save_lora_weights(...)`` in the checkpoint
hook, ``lora_state_dict`` + ``load_lora_into_text_encoder`` / ``load_lora_into_transformer``
in the resume hook. The host here is those two models and nothing else: a
``UVit2DModel`` from diffusers' own tiny test config (widths 16 instead of 8, so a rank-4
LoRA fits) and the zoo's tiny ``CLIPTextModelWithProjection``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.inputs.families.pipelines import find_mixin
from harness.inputs.models.build import build_component, seed_for
from harness.inputs.models.specs import Component, _clip_text
from harness.inputs.models.zoo import deep_copy

MIXIN = "AmusedLoraLoaderMixin"

#: diffusers' ``AmusedPipelineFastTests`` transformer (tests/pipelines/amused, removed with
#: the pipeline's deprecation), widths 8 -> 16; ``encoder_hidden_size`` = the CLIP width.
UVIT2D = Component(
    "diffusers",
    "UVit2DModel",
    {
        "hidden_size": 16,
        "use_bias": False,
        "hidden_dropout": 0.0,
        "cond_embed_dim": 16,
        "micro_cond_encode_dim": 2,
        "micro_cond_embed_dim": 10,
        "encoder_hidden_size": 32,
        "vocab_size": 32,
        "codebook_size": 8,
        "in_channels": 16,
        "block_out_channels": 16,
        "num_res_blocks": 1,
        "downsample": True,
        "upsample": True,
        "block_num_heads": 1,
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "attention_dropout": 0.0,
        "intermediate_size": 16,
        "layer_norm_eps": 1e-06,
        "ln_elementwise_affine": True,
    },
)
CLIP_TEXT = Component(
    "transformers", "CLIPTextModelWithProjection", _clip_text(32, 4, 32), "CLIPTextConfig"
)

#: component (the mixin's ``transformer_name`` / ``text_encoder_name``) -> (model, module
#: prefixes whose Linears the files target).
COMPONENTS: dict[str, tuple[Component, tuple[str, ...]]] = {
    "transformer": (UVIT2D, ("down_block.", "transformer_layers.", "up_block.")),
    "text_encoder": (CLIP_TEXT, ("text_model.encoder.layers.",)),
}


@dataclass
class AmusedModels:
    """What the training example holds: the two models, no pipeline around them."""

    transformer: Any
    text_encoder: Any


@dataclass
class AmusedBuild:
    models: AmusedModels
    dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "built_as": "a tiny UVit2DModel and a tiny CLIPTextModelWithProjection, no pipeline "
            "(AmusedLoraLoaderMixin's classmethods, as examples/amused/train_amused.py calls them)",
            "config_dropped": self.dropped,
            "build_s": round(self.seconds, 3),
        }


class AmusedZoo:
    """The two models built once (per device and dtype); Unsupported without the mixin."""

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self._built: AmusedBuild | None = None

    @staticmethod
    def mixin() -> type:
        return find_mixin(MIXIN)

    def build(self) -> AmusedBuild:
        if self._built is None:
            self.mixin()  # absent mixin: Unsupported before anything is built
            start = time.perf_counter()
            parts: dict[str, Any] = {}
            dropped: list[str] = []
            for name, (spec, _) in COMPONENTS.items():
                built = build_component(spec, seed_for("amused", name))
                built.obj.to(device=self.device, dtype=self.dtype)
                parts[name] = built.obj
                dropped += [f"{name}.{key}" for key in built.dropped]
            self._built = AmusedBuild(AmusedModels(**parts), dropped, time.perf_counter() - start)
        return self._built

    def get(self, name: str = "amused") -> AmusedModels:
        """Pristine copies sharing no tensor with the originals."""
        models = self.build().models
        return AmusedModels(deep_copy(models.transformer), deep_copy(models.text_encoder))
