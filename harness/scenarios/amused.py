"""The Amused rows' session object and the training example's two hooks.

:class:`AmusedScene` is the LoRA suites' :class:`~harness.scenarios.lora.Scene` over the two
bare models of :mod:`harness.inputs.families.amused` (``transformer``, ``text_encoder``):
pristine weights, the per-Linear probe and the comparison with the reference of
:mod:`harness.oracles.lora_peft`. The files are the family suite's diffusers/PEFT-named
files (``<component>.<module path>.lora_A.weight``), one per component.

:func:`save_hook` and :func:`load_hook` are what ``examples/amused/train_amused.py`` does in
its accelerate checkpoint / resume hooks, call for call; :func:`train_adapter` stands in for
training (``add_adapter(LoraConfig(r, lora_alpha, target_modules))``, then the file's tensors
as the trained values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.inputs.checkpoints.lora.layouts import Layer, layout_of
from harness.inputs.families.amused import COMPONENTS, AmusedModels, AmusedZoo
from harness.inputs.families.lora_files import (
    ADAPTER_METADATA_KEY,
    FamilyLora,
    block_targets,
    write_lora,
)
from harness.oracles.lora import Reference, base_weight
from harness.oracles.lora_peft import adapter_metadata, peft_reference
from harness.scenarios.lora import Scene

#: Rank of every file; the adapter's alpha is chosen per row (the example trains r=16,
#: alpha=32: alpha != rank is its default).
RANK = 4


@dataclass
class AmusedScene(Scene):
    """The two models, measured once."""

    def __post_init__(self) -> None:
        zoo: AmusedZoo = self.zoo
        models = zoo.get()
        self.layout = {c: layout_of(getattr(models, c)) for c in COMPONENTS}
        self.classes = {c: type(getattr(models, c)).__name__ for c in COMPONENTS}
        self.base = {
            c: {n: base_weight(m) for n, m in self.modules(models, c).items()} for c in COMPONENTS
        }
        self.dtype = zoo.dtype
        self.build_info = zoo.build().as_dict()

    @property
    def mixin(self) -> type:
        return self.zoo.mixin()

    def targets(self, component: str) -> dict[str, Layer]:
        """Every Linear below the component's block prefixes (the files' modules)."""
        targets = block_targets(self.layout[component], COMPONENTS[component][1])
        if not targets:  # the prefixes match nothing: our bug
            raise RuntimeError(f"amused: no Linear of {component} under {COMPONENTS[component][1]}")
        return targets

    def lora(
        self, components: tuple[str, ...], seed: int, alpha: float | None = None
    ) -> tuple[dict[str, FamilyLora], Reference]:
        """One file per component (``alpha`` in its header metadata when given, else
        none: scale 1) and the reference of all of them together."""
        files: dict[str, FamilyLora] = {}
        ref = Reference(format="peft-family")
        for offset, component in enumerate(components):
            built = write_lora(component, self.targets(component), RANK, alpha, seed + offset)
            meta = adapter_metadata(built.header, ADAPTER_METADATA_KEY)
            layers = self.layout[component].layers
            part = peft_reference(built.state_dict, component, layers, meta)
            if part.unknown_keys:  # writer and reference disagree: our bug
                raise RuntimeError(f"reference could not place: {part.unknown_keys[:5]}")
            ref.terms.update(part.terms)
            files[component] = built
        return files, ref

    def train_adapter(
        self, models: AmusedModels, component: str, built: FamilyLora, alpha: float
    ) -> None:
        """What training leaves: ``add_adapter(LoraConfig(r, lora_alpha, target_modules))``
        on the model, its LoRA tensors set to the file's. Library calls; the caller wraps
        them."""
        from peft import LoraConfig

        model = getattr(models, component)
        layout = self.layout[component]
        real = [layout.real_path(m) for m in built.modules]
        model.add_adapter(LoraConfig(r=RANK, lora_alpha=alpha, target_modules=real))
        prefix = f"{component}."
        for key, value in built.state_dict.items():
            path, role, _ = key.removeprefix(prefix).rsplit(".", 2)
            layer = model.get_submodule(layout.real_path(path))
            getattr(layer, role)["default"].weight.data.copy_(value)


def effect_ratio(scene: AmusedScene, models: AmusedModels, ref: Reference) -> float:
    """Least-squares factor between the observed and the reference deltas over every
    reference module (2.0: the effect is twice the reference, e.g. alpha / rank lost)."""
    observed = scene.observe(models)
    dot = norm = 0.0
    for component, module in ref.terms:
        want = ref.delta(component, module).flatten()
        got = (observed[component][module] - scene.base[component][module]).flatten()
        dot += float(got @ want)
        norm += float(want @ want)
    return dot / norm if norm else 0.0


def save_hook(mixin: type, models: AmusedModels, folder: Path) -> None:
    """The example's ``save_model_hook``: ``get_peft_model_state_dict`` of each model with
    an adapter, one ``save_lora_weights`` call for both."""
    from peft.utils import get_peft_model_state_dict

    layers: dict[str, Any] = {}
    for component in COMPONENTS:
        model = getattr(models, component)
        if getattr(model, "peft_config", None):
            layers[f"{component}_lora_layers"] = get_peft_model_state_dict(model)
    mixin.save_lora_weights(str(folder), **layers)


def load_hook(mixin: type, models: AmusedModels, source: Any, **kwargs: Any) -> None:
    """The example's ``load_model_hook``: ``lora_state_dict`` of the folder, then
    ``load_lora_into_text_encoder`` and ``load_lora_into_transformer`` with its alphas (both
    always: each takes its own prefix's keys)."""
    state_dict, network_alphas = mixin.lora_state_dict(source, **kwargs)
    mixin.load_lora_into_text_encoder(
        state_dict, network_alphas=network_alphas, text_encoder=models.text_encoder
    )
    mixin.load_lora_into_transformer(
        state_dict, network_alphas=network_alphas, transformer=models.transformer
    )


def amused_scene_cache(zoo: AmusedZoo) -> Callable[[], AmusedScene]:
    """``get()`` -> the session's AmusedScene (built once); Unsupported without the mixin."""
    cache: dict[str, AmusedScene] = {}

    def get() -> AmusedScene:
        if "amused" not in cache:
            cache["amused"] = AmusedScene("amused", zoo)
        return cache["amused"]

    return get
