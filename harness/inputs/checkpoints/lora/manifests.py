"""Real-layout manifests: key -> [shape, dtype] of every format at full model size.

``python -m harness.inputs.checkpoints.lora.manifests [--out fixtures/lora]`` (run with a cell's
interpreter: it needs torch, diffusers and transformers) instantiates SD1.5, SDXL, SD3-medium and
Flux-dev on the meta device from their published configs (below, as data: no hub), writes
the canonical layout of each (``layout-<arch>.json``: what the reference and the
full-scale checks read) and, for every format, the manifest of a LoRA on every layer the
format's trainers target (``manifest-<arch>-<format>.json``) and, for each optional family
of the format, the same file with that family added (``manifest-<arch>-<format>+<family>.json``).
Output is deterministic. ``--manifests-only`` rewrites the manifests from the committed
layouts (torch only, no diffusers).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.inputs.checkpoints.lora.build import build
from harness.inputs.checkpoints.lora.cases import full_case
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.checkpoints.lora.layouts import ComponentLayout, ModelLayout, layout_of

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "fixtures" / "lora"

CLIP_L = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
CLIP_BIG_G = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
SD15_UNET = {
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 64,
}
SDXL_UNET = {
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "projection_class_embeddings_input_dim": 2816,
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "sample_size": 128,
}
#: stabilityai/stable-diffusion-3-medium-diffusers ``transformer/config.json``.
SD3_MEDIUM = {
    "attention_head_dim": 64,
    "caption_projection_dim": 1536,
    "in_channels": 16,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 24,
    "out_channels": 16,
    "patch_size": 2,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
    "sample_size": 128,
}
FLUX_DEV = {
    "attention_head_dim": 128,
    "guidance_embeds": True,
    "in_channels": 64,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "patch_size": 1,
    "pooled_projection_dim": 768,
    "axes_dims_rope": [16, 56, 56],
}

#: arch -> component -> (library, class, config, config class)
MODELS: dict[str, dict[str, tuple[str, str, dict[str, Any], str | None]]] = {
    "sd15": {
        "unet": ("diffusers", "UNet2DConditionModel", SD15_UNET, None),
        "text_encoder": ("transformers", "CLIPTextModel", CLIP_L, "CLIPTextConfig"),
    },
    "sdxl": {
        "unet": ("diffusers", "UNet2DConditionModel", SDXL_UNET, None),
        "text_encoder": ("transformers", "CLIPTextModel", CLIP_L, "CLIPTextConfig"),
        "text_encoder_2": (
            "transformers",
            "CLIPTextModelWithProjection",
            CLIP_BIG_G,
            "CLIPTextConfig",
        ),
    },
    "sd3": {
        "transformer": ("diffusers", "SD3Transformer2DModel", SD3_MEDIUM, None),
        "text_encoder": (
            "transformers",
            "CLIPTextModelWithProjection",
            CLIP_L,
            "CLIPTextConfig",
        ),
        "text_encoder_2": (
            "transformers",
            "CLIPTextModelWithProjection",
            CLIP_BIG_G,
            "CLIPTextConfig",
        ),
    },
    "flux": {
        "transformer": ("diffusers", "FluxTransformer2DModel", FLUX_DEV, None),
        "text_encoder": ("transformers", "CLIPTextModel", CLIP_L, "CLIPTextConfig"),
    },
}

#: Typical rank / dtype of released LoRAs of each family (the manifests' shapes use them).
MANIFEST_RANK = 16
MANIFEST_DTYPE = {"sd15": "float16", "sdxl": "float16", "sd3": "float16", "flux": "bfloat16"}


def meta_model(library: str, cls: str, config: dict[str, Any], config_cls: str | None) -> Any:
    """Instantiate a full-size model without allocating its weights."""
    import importlib

    import torch

    module = importlib.import_module(library)
    with torch.device("meta"):
        if config_cls:
            return getattr(module, cls)(getattr(module, config_cls)(**config))
        return getattr(module, cls)(**config)


def full_layout(arch: str) -> ModelLayout:
    return {name: layout_of(meta_model(*spec)) for name, spec in MODELS[arch].items()}


def load_layout(arch: str, folder: Path = FIXTURES) -> ModelLayout:
    """The committed full-size layout of ``arch`` (no torch model needed)."""
    data = json.loads((folder / f"layout-{arch}.json").read_text())
    return {name: ComponentLayout.from_json(v) for name, v in data.items()}


def manifest(
    fmt: str, arch: str, layout: ModelLayout, families: tuple[str, ...] = ()
) -> dict[str, Any]:
    lora_format = FORMATS[fmt]
    case = full_case(
        lora_format,
        arch,
        layout,
        rank=MANIFEST_RANK,
        alpha=float(MANIFEST_RANK),
        narrow=False,
        families=families,
    )
    built = build(
        lora_format,
        arch,
        layout,
        case.picks,
        dtype=MANIFEST_DTYPE[arch],
        meta=True,
        families=families,
    )
    keys = {
        k: [list(v.shape), str(v.dtype).removeprefix("torch.")]
        for k, v in sorted(built.state_dict.items())
    }
    out: dict[str, Any] = {"format": fmt, "arch": arch, "rank": MANIFEST_RANK, "keys": keys}
    if families:
        out["families"] = list(families)
    return out


def manifest_variants(arch: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(format, families, file name) of every committed manifest of ``arch``: the complete
    file of each format, then one per optional family that applies to ``arch``."""
    out = []
    for name, fmt in FORMATS.items():
        if not fmt.supports(arch):
            continue
        out.append((name, (), f"manifest-{arch}-{name}.json"))
        for family in fmt.optional:
            if family in ("embedders", "final-layer") and arch != "flux":
                continue  # Flux layers outside the blocks
            out.append((name, (family,), f"manifest-{arch}-{name}+{family}.json"))
    return out


def write_all(out: Path = FIXTURES, layouts_too: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for arch in MODELS:
        if layouts_too:
            layout = full_layout(arch)
            path = out / f"layout-{arch}.json"
            path.write_text(
                json.dumps({k: v.to_json() for k, v in layout.items()}, indent=0, sort_keys=True)
                + "\n"
            )
            written.append(path)
        else:
            layout = load_layout(arch, out)
        for name, families, filename in manifest_variants(arch):
            path = out / filename
            path.write_text(
                json.dumps(manifest(name, arch, layout, families), indent=1, sort_keys=True) + "\n"
            )
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.inputs.checkpoints.lora.manifests", description=__doc__
    )
    parser.add_argument("--out", type=Path, default=FIXTURES)
    parser.add_argument(
        "--manifests-only",
        action="store_true",
        help="rewrite the manifests from the committed layouts (no diffusers needed)",
    )
    args = parser.parse_args(argv)
    for path in write_all(args.out, layouts_too=not args.manifests_only):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
