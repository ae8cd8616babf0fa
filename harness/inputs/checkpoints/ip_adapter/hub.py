"""A local folder laid out like the IP-Adapter hub repositories, filled on demand.

The table ``ENTRIES`` names every synthetic adapter the suites use: which zoo model it is
shaped for, its image_proj variant, the image encoder it was "trained" with, and where it
sits (``models/`` holds ViT-H-width adapters and ``models/image_encoder``;
``sdxl_models/`` the ViT-bigG-width ones and ``sdxl_models/image_encoder``, as in
``h94/IP-Adapter``). ``right_encoder`` is the encoder folder a careful user passes as
``image_encoder_folder``; ``default_encoder`` is what the loader picks when the caller
passes nothing (``<subfolder>/image_encoder``) — for ``sd15-base-vitG`` that is the
*wrong* width, exactly the mistake behind stale encoders after an encoder-width switch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.inputs.checkpoints.ip_adapter.files import save_release
from harness.inputs.checkpoints.ip_adapter.targets import Target
from harness.inputs.checkpoints.ip_adapter.variants import Encoder, build_release

#: Encoder folder (relative to the repo root) -> zoo encoder name.
ENCODER_FOLDERS: dict[str, str] = {
    "models/image_encoder": "clip-vision-1024",
    "sdxl_models/image_encoder": "clip-vision-1280",
    "sd3/image_encoder": "siglip",
}


@dataclass(frozen=True)
class Entry:
    """One adapter file of the synthetic hub repo."""

    name: str
    arch: str  # zoo pipeline it is shaped for
    variant: str
    encoder: str | None  # zoo encoder it needs (None: FaceID, embeddings passed by the caller)
    subfolder: str
    stem: str
    seed: int

    def weight_name(self, fmt: str = "safetensors") -> str:
        return f"{self.stem}.{fmt}"

    @property
    def right_encoder(self) -> str | None:
        """Encoder folder whose width matches the adapter."""
        if self.encoder is None:
            return None
        return next(f for f, e in ENCODER_FOLDERS.items() if e == self.encoder)

    @property
    def default_encoder(self) -> str:
        """Encoder folder the loader uses when ``image_encoder_folder`` is not passed."""
        return f"{self.subfolder}/image_encoder"


ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("sd15-base", "sd15", "base", "clip-vision-1024", "models", "ip-adapter_sd15", 11),
        Entry(
            "sd15-light", "sd15", "base", "clip-vision-1024", "models", "ip-adapter_sd15_light", 12
        ),
        Entry(
            "sd15-base-vitG",
            "sd15",
            "base",
            "clip-vision-1280",
            "models",
            "ip-adapter_sd15_vit-G",
            13,
        ),
        Entry(
            "sd15-plus", "sd15", "plus", "clip-vision-1024", "models", "ip-adapter-plus_sd15", 14
        ),
        Entry(
            "sd15-full-face",
            "sd15",
            "full-face",
            "clip-vision-1024",
            "models",
            "ip-adapter-full-face_sd15",
            15,
        ),
        Entry("sd15-faceid", "sd15", "faceid", None, "models", "ip-adapter-faceid_sd15", 16),
        Entry(
            "sd15-faceid-plus",
            "sd15",
            "faceid-plus",
            "clip-vision-1024",
            "models",
            "ip-adapter-faceid-plus_sd15",
            17,
        ),
        Entry(
            "sdxl-base", "sdxl", "base", "clip-vision-1280", "sdxl_models", "ip-adapter_sdxl", 21
        ),
        Entry(
            "sdxl-light",
            "sdxl",
            "base",
            "clip-vision-1280",
            "sdxl_models",
            "ip-adapter_sdxl_light",
            24,
        ),
        Entry(
            "sdxl-base-vith",
            "sdxl",
            "base",
            "clip-vision-1024",
            "sdxl_models",
            "ip-adapter_sdxl_vit-h",
            22,
        ),
        Entry(
            "sdxl-plus-vith",
            "sdxl",
            "plus",
            "clip-vision-1024",
            "sdxl_models",
            "ip-adapter-plus_sdxl_vit-h",
            23,
        ),
        Entry("flux-base", "flux", "flux", "clip-vision-1024", "flux", "ip_adapter", 31),
        Entry("flux-light", "flux", "flux", "clip-vision-1024", "flux", "ip_adapter_light", 32),
        Entry("sd3", "sd3", "sd3", "siglip", "sd3", "ip-adapter", 41),
    )
}


class HubRepo:
    """Writes entries and encoders under ``root`` the first time they are asked for.

    ``target_for(arch)`` gives the target model shape, ``encoder_for(name)`` a zoo image
    encoder and ``processor_for(name)`` its image processor (saved beside it)."""

    def __init__(
        self,
        root: str | Path,
        target_for: Callable[[str], Target],
        encoder_for: Callable[[str], Any],
        processor_for: Callable[[str], Any | None] | None = None,
    ) -> None:
        self.root = Path(root)
        self._target_for = target_for
        self._encoder_for = encoder_for
        self._processor_for = processor_for
        self._releases: dict[str, Mapping[str, Mapping[str, Any]]] = {}

    def release(self, name: str) -> Mapping[str, Mapping[str, Any]]:
        """The entry's checkpoint (nested dict), built once."""
        if name not in self._releases:
            entry = ENTRIES[name]
            encoder = (
                Encoder.from_model(self._encoder_for(entry.encoder))
                if entry.encoder
                else Encoder("id", None, 0)
            )
            target = self._target_for(entry.arch)
            self._releases[name] = build_release(target, entry.variant, encoder, seed=entry.seed)
        return self._releases[name]

    def file(self, name: str, fmt: str = "safetensors") -> Path:
        """Path of the entry's file in ``fmt``, written (with its encoders) if needed."""
        entry = ENTRIES[name]
        path = self.root / entry.subfolder / entry.weight_name(fmt)
        if not path.exists():
            save_release(self.release(name), path)
        for folder in {entry.default_encoder, entry.right_encoder} - {None}:
            if folder in ENCODER_FOLDERS:
                self.encoder_folder(folder)
        return path

    def encoder_folder(self, folder: str) -> Path:
        """``root/folder`` holding the zoo encoder for it (save_pretrained, safetensors)."""
        path = self.root / folder
        if not (path / "config.json").exists():
            name = ENCODER_FOLDERS[folder]
            path.mkdir(parents=True, exist_ok=True)
            self._encoder_for(name).save_pretrained(str(path), safe_serialization=True)
            processor = self._processor_for(name) if self._processor_for else None
            if processor is not None:
                processor.save_pretrained(str(path))
        return path
