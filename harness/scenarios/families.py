"""The family suite's session object: one family's tiny pipeline, measured once.

:class:`FamilyScene` is the LoRA suites' :class:`~harness.scenarios.lora.Scene` for a
family from :mod:`harness.inputs.families`: its one LoRA-targetable component (the
denoiser under the mixin's ``transformer_name``), pristine weights, the probe of what each
Linear now computes, and the comparison with the reference of
:mod:`harness.oracles.lora_peft`. :func:`family_scene_cache` builds each family once per
session and raises Unsupported (grey) where the release lacks it.

Also here: how a family file reaches ``load_lora_weights`` in this release
(:func:`reads_adapter_metadata`) and the ``save_lora_weights`` keywords of a mixin.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cell.classify import Unsupported
from harness.drivers.probe import accepts
from harness.inputs.checkpoints.lora.layouts import Layer, layout_of
from harness.inputs.families.layouts import LAYOUTS, LayoutLora, expand, write_layout_lora
from harness.inputs.families.lora_files import (
    ADAPTER_METADATA_KEY,
    FamilyLora,
    block_targets,
    write_lora,
)
from harness.inputs.families.pipelines import FamilyZoo
from harness.inputs.families.table import FAMILIES, Family
from harness.oracles.lora import Reference, base_weight
from harness.oracles.lora_layouts import layout_reference
from harness.oracles.lora_peft import adapter_metadata, peft_reference
from harness.scenarios.lora import Scene

#: Rank and alpha of every family file: alpha != rank, so a lost or misread alpha shows.
RANK, ALPHA = 4, 2.0


class _Source:
    """What :class:`Scene` calls its zoo: copies of one family's pipeline."""

    def __init__(self, zoo: FamilyZoo, family: Family) -> None:
        self.zoo = zoo
        self.family = family
        self.dtype = zoo.dtype

    def get(self, name: str) -> Any:
        return self.zoo.get(self.family)


@dataclass
class FamilyScene(Scene):
    """One family, measured once: the denoiser's layout and pristine weights."""

    def __post_init__(self) -> None:
        self.family: Family = self.zoo.family
        pipe = self.zoo.get(self.arch)
        attr = self.family.attr
        self.layout = {attr: layout_of(getattr(pipe, attr))}
        self.classes = {attr: type(getattr(pipe, attr)).__name__}
        self.base = {attr: {n: base_weight(m) for n, m in self.modules(pipe, attr).items()}}
        self.dtype = self.zoo.dtype
        self.build_info = self.zoo.zoo.build(self.family).as_dict()

    @property
    def component(self) -> str:
        return self.family.attr

    def targets(self) -> dict[str, Layer]:
        """Every Linear inside the transformer blocks (the files' modules)."""
        targets = block_targets(self.layout[self.component], self.family.blocks)
        if not targets:  # the table's block prefixes match nothing: our bug
            raise RuntimeError(f"{self.family.name}: no Linear under {self.family.blocks}")
        return targets

    def partial_attention(self) -> tuple[str, list[str]]:
        """The first attention's ``to_k`` and that attention's q/k/v paths (``k_proj`` and
        q/k/v ``_proj`` in a model that names its attention so: Anima's text conditioner;
        ``to_key`` and ``to_query`` / ``to_value`` in Kandinsky 5)."""
        for names in (
            ("to_q", "to_k", "to_v"),
            ("q_proj", "k_proj", "v_proj"),
            ("to_query", "to_key", "to_value"),  # Kandinsky 5
        ):
            for path in self.targets():
                if path.endswith("." + names[1]):
                    head = path.removesuffix(names[1])
                    group = [head + s for s in names if head + s in self.targets()]
                    return path, group
        raise RuntimeError(f"{self.family.name}: no attention with a to_k in the blocks")

    def lora(
        self,
        seed: int = 0,
        alpha: float | None = ALPHA,
        omit: tuple[str, ...] = (),
        stray: int = 0,
        rank: int = RANK,
    ) -> tuple[FamilyLora, Reference]:
        """A file on every block Linear (less ``omit``, plus ``stray`` bogus pairs) and its
        reference; ``alpha`` goes into the header metadata only where the release reads
        it (else the file has no alpha, scale 1). ``rank``: another rank for hot-swap rows."""
        if alpha is not None and not reads_adapter_metadata():
            alpha = None
        targets = self.targets()
        built = write_lora(self.component, targets, rank, alpha, seed, omit, stray)
        meta = adapter_metadata(built.header, ADAPTER_METADATA_KEY)
        layers = self.layout[self.component].layers
        ref = peft_reference(built.state_dict, self.component, layers, meta)
        if set(ref.unknown_keys) != set(built.stray_keys):  # writer and reference disagree
            raise RuntimeError(f"reference could not place: {sorted(ref.unknown_keys)[:5]}")
        return built, ref

    def layout_lora(
        self,
        layout_row: str,
        seed: int = 0,
        alpha: float | None = ALPHA,
        omit: tuple[str, ...] = (),
        stray: bool = False,
        extras: tuple[str, ...] = (),
        diffs: tuple[str, ...] = (),
    ) -> tuple[LayoutLora, Reference]:
        """A non-diffusers file of ``layout_row`` (e.g. ``wan-musubi``) on every module its
        table names in this model (plus the named ``extras`` groups outside the blocks),
        and its reference read back with the same table. ``diffs``: the ``.diff`` /
        ``.diff_b`` keys to add (:func:`write_layout_lora`)."""
        layout = LAYOUTS[layout_row]
        layers = self.layout[self.component].layers
        if not expand(layout, layers):  # the table names nothing in this model: our bug
            raise RuntimeError(f"{layout_row}: no module of the layout in {self.family.name}")
        built = write_layout_lora(
            layout, layers, RANK, alpha, seed, omit, stray, extras=extras, diffs=diffs
        )
        ref = layout_reference(built.state_dict, layout, self.component, layers)
        if set(ref.unknown_keys) != set(built.stray_keys):  # writer and reference disagree
            raise RuntimeError(f"reference could not place: {sorted(ref.unknown_keys)[:5]}")
        return built, ref


def converter_in_release(name: str) -> bool:
    """Whether the installed diffusers has the converter function ``name`` (a fact for
    the record: a row is judged the same either way)."""
    try:
        from diffusers.loaders import lora_conversion_utils
    except ImportError:
        return False
    return callable(getattr(lora_conversion_utils, name, None))


def reads_adapter_metadata() -> bool:
    """Whether ``load_lora_weights`` reads alpha & co from a file's ``lora_adapter_metadata``
    header (diffusers 0.34 on): the module constant it parses the header with."""
    try:
        from diffusers.loaders import lora_base
    except ImportError:
        return False
    return hasattr(lora_base, "LORA_ADAPTER_METADATA_KEY")


def load_source(built: FamilyLora, folder: Path) -> tuple[Any, dict[str, Any]]:
    """What to pass ``load_lora_weights``: a file with its header where the file carries
    metadata (a dict cannot), else the dict itself; plus the keywords that go with it."""
    if built.header is None:
        return built.state_dict, {}
    path = built.save(folder)
    return str(folder), {"weight_name": path.name}


def save_kwargs(scene: FamilyScene, pipe: Any, adapter: str) -> dict[str, Any]:
    """``save_lora_weights`` keywords of the family's mixin from the loaded adapter:
    ``<attr>_lora_layers`` and, where the release takes it, ``<attr>_lora_adapter_metadata``
    (what diffusers' own training scripts pass)."""
    from peft.utils import get_peft_model_state_dict

    attr = scene.component
    if not takes_keyword(type(pipe).save_lora_weights, f"{attr}_lora_layers"):
        raise Unsupported(
            f"{type(pipe).__name__}.save_lora_weights takes no {attr}_lora_layers: a "
            f"{attr} LoRA cannot be saved through the pipeline in this release"
        )
    model = getattr(pipe, attr)
    kwargs: dict[str, Any] = {
        f"{attr}_lora_layers": get_peft_model_state_dict(model, adapter_name=adapter)
    }
    meta_name = f"{attr}_lora_adapter_metadata"
    if accepts(type(pipe).save_lora_weights, meta_name):
        kwargs[meta_name] = model.peft_config[adapter].to_dict()
    return kwargs


def takes_keyword(fn: Callable[..., Any], name: str) -> bool:
    """``fn`` names ``name`` or takes ``**kwargs`` (then only a call can tell): a method
    whose explicit signature lacks it has no such parameter (UNSUPPORTED, not a crash)."""
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def family_scene_cache(zoo: FamilyZoo) -> Callable[[str], FamilyScene]:
    """``get(name)`` -> the session's FamilyScene (built once); Unsupported where the
    release lacks the family's mixin, pipeline or denoiser."""
    cache: dict[str, FamilyScene] = {}
    failures: dict[str, str] = {}

    def get(name: str) -> FamilyScene:
        if name in failures:
            raise Unsupported(failures[name])
        if name not in cache:
            try:
                cache[name] = FamilyScene(name, _Source(zoo, FAMILIES[name]))
            except Unsupported as exc:
                failures[name] = str(exc)
                raise
        return cache[name]

    return get
