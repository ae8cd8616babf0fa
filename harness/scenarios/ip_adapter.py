"""Shared helpers of the IP-Adapter suite: one hub-like folder of synthetic adapters per
session, image encoders, reference images and cached baseline outputs.

Why session-scoped: building pipelines and writing encoders dominate the suite's time;
every check still gets its own pristine pipeline (``ipa.pipe``) so checks never share
state. ``IPAWorld`` methods that call into diffusers take the check's ``compat`` and wrap
only the library call in ``compat.library_call`` (our own bookkeeping stays outside, so a
harness bug can never pass for a library finding).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.drivers.ip_adapter import (
    denoiser,
    load_kwargs,
    require_ip_adapter,
)
from harness.drivers.probe import at_least
from harness.inputs.checkpoints.ip_adapter import target_from_pipeline
from harness.inputs.checkpoints.ip_adapter.hub import ENCODER_FOLDERS, ENTRIES, Entry, HubRepo
from harness.inputs.checkpoints.ip_adapter.targets import Target
from harness.inputs.checkpoints.ip_adapter.variants import VARIANTS
from harness.inputs.models.run import run_step
from harness.oracles.ip_adapter import (
    image_proj_match,
    image_projection_modules,
    lora_mismatches,
    non_ip_slots_with_ip_layers,
    processor_mismatches,
)
from harness.protocol.outcomes import Outcome

#: Real CLIP image encoders take 224-pixel images, and diffusers before 0.28 pairs a
#: loaded encoder with a default CLIPImageProcessor() (224). Tiny towers at 224 with
#: 32-pixel patches keep that path realistic and cheap (50 tokens).
CLIP_IMAGE_SIZE, CLIP_PATCH = 224, 32

Names = str | Entry | Sequence[str | Entry]


class IPAWorld:
    """Builds (once) what IP-Adapter checks need; hands out pristine pipelines."""

    def __init__(self, zoo: Any, root: Path) -> None:
        self.zoo = zoo
        self._targets: dict[str, Target] = {}
        self._encoders: dict[str, Any] = {}
        self._baselines: dict[str, Any] = {}
        self._fresh: dict[tuple[Any, ...], Any] = {}
        self.repo = HubRepo(
            root,
            target_for=self.target,
            encoder_for=self.encoder,
            processor_for=lambda n: zoo.processor(n) if n == "siglip" else None,
        )

    # -- models --------------------------------------------------------------------------
    def pipe(self, compat: Any, arch: str) -> Any:
        """A pristine zoo pipeline (UNSUPPORTED where the class or its IP mixin is absent).
        Our build (checked on its own by the smoke suite): a failure here is ours."""
        compat.param(arch=arch)
        pipe = self.zoo.get(arch)
        require_ip_adapter(pipe)
        return pipe

    def target(self, arch: str) -> Target:
        if arch not in self._targets:
            self._targets[arch] = target_from_pipeline(self.zoo.get(arch))
        return self._targets[arch]

    def encoder(self, name: str) -> Any:
        """The zoo encoder ``name``; CLIP towers rebuilt at 224 px if the zoo's are not."""
        if name not in self._encoders:
            model = self.zoo.component(name)
            config = model.config
            if name.startswith("clip") and config.image_size != CLIP_IMAGE_SIZE:
                cfg = config.to_dict() | {"image_size": CLIP_IMAGE_SIZE, "patch_size": CLIP_PATCH}
                torch.manual_seed(1234 + int(config.projection_dim))
                model = type(model)(type(config)(**cfg)).eval()
                model.to(device=self.zoo.device, dtype=self.zoo.dtype)
            self._encoders[name] = model
        return self._encoders[name]

    # -- adapters ------------------------------------------------------------------------
    def entries(self, names: Names, fmt: str = "safetensors") -> list[str | Entry]:
        """Make sure the entries' files (and their encoder folders) exist; ``Entry``
        objects describe files a check wrote itself (only their encoders are made)."""
        names = [names] if isinstance(names, (str, Entry)) else list(names)
        for name in names:
            if isinstance(name, str):
                self.repo.file(name, fmt)
            else:
                for folder in {name.default_encoder, name.right_encoder} - {None}:
                    if folder in ENCODER_FOLDERS:
                        self.repo.encoder_folder(folder)
        return names

    def release(self, name: str) -> Any:
        return self.repo.release(name)

    def load(
        self,
        compat: Any,
        pipe: Any,
        names: Names,
        fmt: str = "safetensors",
        encoder_folder: Any = ...,
        **options: Any,
    ) -> list[str]:
        """``pipe.load_ip_adapter`` from the local hub folder, as a user calls it; returns
        the library's warnings. Version gaps raise Unsupported before the call."""
        names = self.entries(names, fmt)
        if encoder_folder not in (..., None):
            self.repo.encoder_folder(encoder_folder)
        kwargs = load_kwargs(pipe, self.repo.root, names, fmt, encoder_folder, **options)
        # A clear refusal names the file(s) or folder(s) of this load.
        weight_names = kwargs.get("weight_name") or []
        folders = kwargs.get("subfolder") or []
        case = [
            *([weight_names] if isinstance(weight_names, str) else weight_names),
            *([folders] if isinstance(folders, str) else folders),
        ]
        with compat.library_call(names=[str(n) for n in case if n]) as messages:
            pipe.load_ip_adapter(**kwargs)
        return messages

    def set_scale(self, compat: Any, pipe: Any, scale: Any) -> None:
        with compat.library_call():
            pipe.set_ip_adapter_scale(scale)

    def unload(self, compat: Any, pipe: Any) -> None:
        with compat.library_call():
            pipe.unload_ip_adapter()

    # -- inputs and outputs --------------------------------------------------------------
    @staticmethod
    def image(index: int = 0) -> Any:
        from PIL import Image

        pixels = np.random.RandomState(100 + index).randint(0, 256, (64, 64, 3), dtype=np.uint8)
        return Image.fromarray(pixels)

    def inputs(self, names: Names) -> dict[str, Any]:
        """``run_step`` keywords feeding one reference image per loaded adapter."""
        names = [names] if isinstance(names, (str, Entry)) else list(names)
        for name in names:
            entry = ENTRIES[name] if isinstance(name, str) else name
            if VARIANTS[entry.variant].consumes == "id":
                raise ValueError(f"{name} needs face-id embeddings, not images")
        images = [self.image(i) for i in range(len(names))]
        return {"ip_adapter_image": images[0] if len(images) == 1 else images}

    def run(self, compat: Any, pipe: Any, names: Names | None = None, late: bool = False) -> Any:
        """One seeded step, feeding images for ``names`` (None: no image). ``late``: the
        load before should already have refused, so any error here is a late failure."""
        kwargs = self.inputs(names) if names else {}
        with compat.library_call(late=late):
            return run_step(pipe, **kwargs)

    def baseline(self, compat: Any, arch: str) -> Any:
        """Output of the pristine pipeline without any adapter."""
        if arch not in self._baselines:
            pipe = self.pipe(compat, arch)
            self._baselines[arch] = self.run(compat, pipe)
        return self._baselines[arch]

    def fresh(self, compat: Any, arch: str, names: Names, scale: Any = 1.0, **load: Any) -> Any:
        """Output of a fresh pipeline holding only ``names`` at ``scale``: the oracle of
        every sequence check."""
        key = (arch, tuple([names] if isinstance(names, str) else names), repr(scale), repr(load))
        if key not in self._fresh:
            pipe = self.pipe(compat, arch)
            self.load(compat, pipe, names, **load)
            self.set_scale(compat, pipe, scale)
            self._fresh[key] = self.run(compat, pipe, names)
        return self._fresh[key]


def entry_of(name: str | Entry) -> Entry:
    return ENTRIES[name] if isinstance(name, str) else name


def expect_variant(compat: Any, variant: str) -> None:
    """A release file of a variant this version has a loader for is valid input (a refusal
    is REFUSED); versions older than the variant may reject it, but only clearly (naming
    the file, as :meth:`IPAWorld.load` requires)."""
    since = VARIANTS[variant].since
    if at_least("diffusers", since):
        compat.valid_input(f"a {variant} IP-Adapter release file")
    else:
        compat.may_reject(f"a {variant} IP-Adapter file, older than its loader ({since})")
    compat.param(variant=variant, variant_since=since)


def verify_loaded(
    compat: Any,
    ipa: IPAWorld,
    pipe: Any,
    names: Sequence[str | Entry],
    pristine: Any = None,
    releases: Sequence[Any] | None = None,
) -> None:
    """Findings unless ``pipe`` holds exactly the adapters ``names`` (in that order):
    processor IP layers, image projections and (with ``pristine``) FaceID LoRA."""
    arch = entry_of(names[0]).arch
    target = ipa.target(arch)
    model = denoiser(pipe)
    releases = list(releases) if releases is not None else [ipa.release(n) for n in names]
    wrong = processor_mismatches(model, target, releases)
    stray = non_ip_slots_with_ip_layers(model, target)
    projections = image_projection_modules(model)
    compat.detail(processor_mismatches=wrong[:10], stray_ip_processors=stray[:10])
    absent = [w for w in wrong if " has no " in w or "no such" in w]
    if absent:
        compat.finding(Outcome.DROPPED_KEYS, "IP layers missing: " + "; ".join(absent[:4]))
    if wrong or stray:
        compat.finding(
            Outcome.WRONG_RESULT, "processor IP weights: " + "; ".join((wrong + stray)[:4])
        )
    if len(projections) != len(releases):
        compat.finding(
            Outcome.DROPPED_KEYS,
            f"{len(projections)} image projections for {len(releases)} adapters",
        )
    variants = [entry_of(n).variant for n in names]
    matches = [
        image_proj_match(module, release["image_proj"], variant)
        for module, release, variant in zip(projections, releases, variants, strict=True)
    ]
    compat.detail(**{f"image_proj_{i}": m.summary() for i, m in enumerate(matches)})
    for i, match in enumerate(matches):
        if match.missing:
            compat.finding(Outcome.DROPPED_KEYS, f"adapter {i} image_proj: {match.summary()}")
        if not match.ok:
            compat.finding(Outcome.WRONG_RESULT, f"adapter {i} image_proj: {match.summary()}")
    if pristine is not None:
        for i, release in enumerate(releases):
            bad = lora_mismatches(model, pristine, target, release)
            if bad:
                compat.finding(
                    Outcome.WRONG_RESULT, f"adapter {i} FaceID LoRA: " + "; ".join(bad[:4])
                )
