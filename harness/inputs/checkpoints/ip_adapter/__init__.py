"""Synthetic IP-Adapter checkpoints: release layouts as data, shaped to a target model.

``targets`` says where IP weights go (processor order and numbering, widths), ``variants``
holds the image_proj layouts and builds seeded checkpoints, ``files`` writes them as
``.bin`` / ``.safetensors`` and lays them out like a hub repository.
"""

from harness.inputs.checkpoints.ip_adapter.files import (
    FORMATS,
    RepoFile,
    flatten,
    load_release,
    nest,
    save_release,
    write_repo,
)
from harness.inputs.checkpoints.ip_adapter.targets import (
    Slot,
    Target,
    target_from_model,
    target_from_pipeline,
    unet_processor_names,
    unet_target_from_config,
)
from harness.inputs.checkpoints.ip_adapter.variants import (
    LORA_PARTS,
    VARIANTS,
    Dims,
    Encoder,
    Variant,
    build_release,
    fill,
    release_shapes,
)

__all__ = [
    "FORMATS",
    "LORA_PARTS",
    "VARIANTS",
    "Dims",
    "Encoder",
    "RepoFile",
    "Slot",
    "Target",
    "Variant",
    "build_release",
    "fill",
    "flatten",
    "load_release",
    "nest",
    "release_shapes",
    "save_release",
    "target_from_model",
    "target_from_pipeline",
    "unet_processor_names",
    "unet_target_from_config",
    "write_repo",
]
