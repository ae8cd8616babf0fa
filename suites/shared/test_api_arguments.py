"""The arguments users pass to the adapter API, one row per argument case (issue #14, 2).

A valid call must do what it says: a scalar weight for several adapters applies to each
(``set_adapters([a, b], 0.5)``), a folder without ``weight_name`` loads its one LoRA file,
a deprecated keyword is still accepted, ``delete_adapters("name")`` takes a plain string.
Those rows declare ``valid_input`` (a refusal is REFUSED) and judge the effect against the
reference of the file (``scene.expect_effect``).

An invalid call (an unknown adapter, a weights list of the wrong length, an empty
``components``, an adapter name taken already, no adapter loaded, metadata without
safetensors) must be a clear error naming the argument or adapter of the case
(``expect(CLEAR_ERROR)``; ``library_call(names=...)``), and must leave the pipeline as it
was. A call that returns is observed OK and so red; a pipeline changed by the refused call
is STALE_STATE. A method absent in the installed release is UNSUPPORTED.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.cell.classify import LibraryError
from harness.drivers.probe import accepts
from harness.inputs.checkpoints.lora.build import write_safetensors
from harness.inputs.checkpoints.lora.layouts import DENOISER
from harness.oracles.lora import combine
from harness.protocol.outcomes import Outcome
from harness.scenarios.model_api import (
    SCALING,
    Adapter,
    add_with_weights,
    denoiser_lora,
    denoiser_with,
    fused_left,
    load_adapter,
    lora_config,
    require_methods,
)

ARCHES = ("sd15", "flux")
A, B, UNKNOWN = "style", "detail", "not_loaded"
SCALAR = 0.5


@pytest.fixture(scope="session")
def scene_for(zoo: Any) -> Any:
    from harness.scenarios.lora import scene_cache

    return scene_cache(zoo)


# -- helpers -----------------------------------------------------------------------------
def _two_loaded(compat: Any, scene: Any, seed: int) -> tuple[Any, Adapter, Adapter]:
    """A pipeline with two overlapping denoiser LoRAs loaded, both set active at weight 1
    (a load activates only the adapter it loads)."""
    first = denoiser_lora(scene, A, seed=seed, part="even")
    second = denoiser_lora(scene, B, seed=seed + 1, part="odd")
    pipe = scene.fresh()
    require_methods(compat, pipe, "load_lora_weights", "set_adapters")
    load_adapter(compat, pipe, first)
    load_adapter(compat, pipe, second)
    with compat.library_call(names=[A, B]):
        pipe.set_adapters([A, B])
    return pipe, first, second


def _expect_refusal(
    compat: Any, call: Callable[[], Any], names: list[str], unchanged: Callable[[], None]
) -> None:
    """``call`` must raise a clear error naming one of ``names``; after it, ``unchanged``
    (our probe) checks the pipeline is as before (else STALE_STATE). A call that returns
    is observed OK (red against CLEAR_ERROR): what it then did is not judged."""
    compat.expect(Outcome.CLEAR_ERROR)
    try:
        with compat.library_call(names=names):
            call()
    except LibraryError as exc:
        compat.detail(call_raised=f"{type(exc.original).__name__}: {exc.original}"[:300])
        unchanged()
        raise
    compat.detail(call_raised=None, accepted="the invalid call returned without an error")


def _unchanged_effect(compat: Any, scene: Any, pipe: Any, ref: Any, what: str, w: float) -> Any:
    """A probe that the pipeline still acts as ``ref`` at weight ``w``: a difference after
    the refused call is STALE_STATE (the refusal left a half-done change behind)."""

    def probe() -> None:
        from harness.cell.classify import Finding

        try:
            scene.expect_effect(compat, pipe, ref, what, w)
        except Finding as exc:
            compat.finding(Outcome.STALE_STATE, f"refused call changed the pipeline: {exc}")

    return probe


# -- pipeline level: valid calls ---------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHES)
def test_set_adapters_scalar_weight(compat: Any, scene_for: Any, arch: str) -> None:
    """``pipe.set_adapters([A, B], 0.5)``: one float for several adapters applies to each."""
    compat.param(arch=arch, level="pipeline", weights=SCALAR)
    compat.valid_input("set_adapters with two loaded names and one float weight")
    scene = scene_for(arch)
    pipe, first, second = _two_loaded(compat, scene, seed=40)
    with compat.library_call(names=[A, B]):
        pipe.set_adapters([A, B], SCALAR)
    expected = combine([(first.ref, SCALAR), (second.ref, SCALAR)])
    scene.expect_effect(compat, pipe, expected, f"set_adapters([A, B], {SCALAR})")


@pytest.mark.parametrize("arch", ARCHES)
def test_load_folder_guesses_weight_name(
    compat: Any, scene_for: Any, arch: str, tmp_path: Path
) -> None:
    """``load_lora_weights(<folder>)`` without ``weight_name``: a folder holding one
    ``.safetensors`` LoRA file (not the default name) loads that file."""
    from huggingface_hub import constants as hub

    # 0.26-0.39 refuse to guess in offline mode even for a local folder: the row says which
    compat.param(arch=arch, level="pipeline", weight_name=None, hub_offline=hub.HF_HUB_OFFLINE)
    compat.valid_input("a local folder holding one complete LoRA .safetensors file")
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=42)
    write_safetensors(tmp_path / "my_style_lora.safetensors", adapter.built.state_dict)
    pipe = scene.fresh()
    require_methods(compat, pipe, "load_lora_weights")
    with compat.library_call(names=["my_style_lora.safetensors"]):
        pipe.load_lora_weights(str(tmp_path), adapter_name=A)
    scene.expect_effect(compat, pipe, adapter.ref, "load_lora_weights(<folder>)")


@pytest.mark.parametrize("arch", ARCHES)
def test_deprecated_fuse_keywords(compat: Any, scene_for: Any, arch: str) -> None:
    """``fuse_lora(fuse_text_encoder=False)`` / ``unfuse_lora(unfuse_text_encoder=False)``:
    the deprecated keywords are still accepted (a deprecation message) and the denoiser's
    LoRA is fused (stored ``W + delta``), then unfused (stored ``W``)."""
    compat.param(arch=arch, level="pipeline", keywords="fuse_text_encoder/unfuse_text_encoder")
    compat.valid_input("fuse_lora / unfuse_lora with their deprecated *_text_encoder keyword")
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=43)
    pipe = scene.fresh()
    require_methods(compat, pipe, "load_lora_weights", "fuse_lora", "unfuse_lora")
    load_adapter(compat, pipe, adapter)
    kwargs = scene.fuse_kwargs(pipe)
    with compat.library_call() as messages:
        pipe.fuse_lora(fuse_text_encoder=False, **kwargs)
    compat.detail(fuse_messages=messages[:3])
    stored = scene.compare(scene.stored(pipe), adapter.ref)
    if not all(c.ok for c in stored.values()):
        compat.finding(Outcome.WRONG_RESULT, "fuse_lora(fuse_text_encoder=False) stored no W+delta")
    scene.expect_effect(compat, pipe, adapter.ref, "fuse_lora(fuse_text_encoder=False)")
    with compat.library_call():
        pipe.unfuse_lora(unfuse_text_encoder=False, **kwargs)
    left = fused_left(scene, pipe)
    if left:
        compat.finding(
            Outcome.STALE_STATE,
            f"unfuse_lora(unfuse_text_encoder=False) left fused: {list(left)[:5]}",
        )


# -- pipeline level: invalid calls -------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHES)
def test_set_adapters_unknown_name(compat: Any, scene_for: Any, arch: str) -> None:
    """``set_adapters([A, <never loaded>])``: a clear error naming the unknown adapter."""
    compat.param(arch=arch, level="pipeline", adapter_names=[A, UNKNOWN])
    scene = scene_for(arch)
    pipe, first, second = _two_loaded(compat, scene, seed=44)
    both = combine([(first.ref, 1.0), (second.ref, 1.0)])
    _expect_refusal(
        compat,
        lambda: pipe.set_adapters([A, UNKNOWN]),
        [UNKNOWN],
        _unchanged_effect(compat, scene, pipe, both, "the refused set_adapters", 1.0),
    )


@pytest.mark.parametrize("arch", ARCHES)
def test_set_adapters_wrong_length(compat: Any, scene_for: Any, arch: str) -> None:
    """``set_adapters([A, B], [0.5, 0.5, 0.5])``: a clear error naming the weights."""
    compat.param(arch=arch, level="pipeline", adapter_names=[A, B], weights=[SCALAR] * 3)
    scene = scene_for(arch)
    pipe, first, second = _two_loaded(compat, scene, seed=46)
    both = combine([(first.ref, 1.0), (second.ref, 1.0)])
    _expect_refusal(
        compat,
        lambda: pipe.set_adapters([A, B], [SCALAR] * 3),
        ["weights"],
        _unchanged_effect(compat, scene, pipe, both, "the refused set_adapters", 1.0),
    )


#: ``components`` values a fuse / unfuse must refuse: empty, and a name not in the pipeline.
BAD_COMPONENTS = {"empty": ([], "components"), "unknown": (["no_such_part"], "no_such_part")}


@pytest.mark.parametrize("method", ["fuse_lora", "unfuse_lora"])
@pytest.mark.parametrize("case", list(BAD_COMPONENTS))
@pytest.mark.parametrize("arch", ARCHES)
def test_fuse_bad_components(
    compat: Any, scene_for: Any, arch: str, case: str, method: str
) -> None:
    """``fuse_lora(components=[])`` / ``(components=["no_such_part"])`` (and the same for
    ``unfuse_lora``): a clear error naming the argument / component; nothing fused."""
    components, name = BAD_COMPONENTS[case]
    compat.param(arch=arch, level="pipeline", method=method, components=components)
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=48)
    pipe = scene.fresh()
    require_methods(compat, pipe, "load_lora_weights", method)
    compat.require(accepts(getattr(pipe, method), "components"), f"{method} takes no components")
    load_adapter(compat, pipe, adapter)

    def unchanged() -> None:
        left = fused_left(scene, pipe)
        if left:
            compat.finding(Outcome.STALE_STATE, f"refused {method} fused {list(left)[:5]}")
        _unchanged_effect(compat, scene, pipe, adapter.ref, f"the refused {method}", 1.0)()

    _expect_refusal(compat, lambda: getattr(pipe, method)(components=components), [name], unchanged)


@pytest.mark.parametrize("arch", ARCHES)
def test_save_metadata_without_safetensors(
    compat: Any, scene_for: Any, arch: str, tmp_path: Path
) -> None:
    """``save_lora_weights(..., <denoiser>_lora_adapter_metadata={...},
    safe_serialization=False)``: metadata needs safetensors, a clear error naming
    ``safe_serialization``; no file written."""
    scene = scene_for(arch)
    denoiser = DENOISER[arch]
    pipe = scene.fresh()
    require_methods(compat, pipe, "save_lora_weights")
    keyword = f"{denoiser}_lora_adapter_metadata"
    compat.require(
        accepts(pipe.save_lora_weights, keyword), f"save_lora_weights takes no {keyword}"
    )
    compat.param(arch=arch, level="pipeline", keyword=keyword, safe_serialization=False)
    adapter = denoiser_lora(scene, A, seed=49)
    prefix = f"{denoiser}."
    layers = {
        k.removeprefix(prefix): v
        for k, v in adapter.built.state_dict.items()
        if k.startswith(prefix)
    }
    if not layers:  # the row would prove nothing: our bug
        raise RuntimeError(f"no {prefix} key in the built LoRA")
    metadata = {"r": 4, "lora_alpha": 4, "target_modules": sorted(adapter.paths.values())}

    def unchanged() -> None:
        written = sorted(p.name for p in tmp_path.iterdir())
        if written:
            compat.finding(Outcome.STALE_STATE, f"refused save wrote {written}")

    _expect_refusal(
        compat,
        lambda: pipe.save_lora_weights(
            str(tmp_path),
            **{f"{denoiser}_lora_layers": layers, keyword: metadata},
            safe_serialization=False,
        ),
        ["safe_serialization"],
        unchanged,
    )


# -- model level -------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHES)
def test_model_set_adapters_scalar_weight(compat: Any, scene_for: Any, arch: str) -> None:
    """``<denoiser>.set_adapters([A, B], weights=0.5)``: each adapter at 0.5 (x alpha/r)."""
    compat.param(arch=arch, level="model", weights=SCALAR)
    compat.valid_input("model set_adapters with two added names and one float weight")
    scene = scene_for(arch)
    first = denoiser_lora(scene, A, seed=50, part="even")
    second = denoiser_lora(scene, B, seed=51, part="odd")
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter", "set_adapters")
    add_with_weights(compat, scene, pipe, model, first)
    add_with_weights(compat, scene, pipe, model, second)
    with compat.library_call(names=[A, B]):
        model.set_adapters([A, B], weights=SCALAR)
    expected = combine([(first.ref, SCALING * SCALAR), (second.ref, SCALING * SCALAR)])
    scene.expect_effect(compat, pipe, expected, f"set_adapters([A, B], weights={SCALAR})")


@pytest.mark.parametrize("arch", ARCHES)
def test_model_set_adapters_wrong_length(compat: Any, scene_for: Any, arch: str) -> None:
    """``<denoiser>.set_adapters([A, B], weights=[0.5])``: a clear error naming the
    weights; both adapters still act at full strength."""
    compat.param(arch=arch, level="model", weights=[SCALAR])
    scene = scene_for(arch)
    first = denoiser_lora(scene, A, seed=52, part="even")
    second = denoiser_lora(scene, B, seed=53, part="odd")
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter", "set_adapter", "set_adapters")
    add_with_weights(compat, scene, pipe, model, first)
    add_with_weights(compat, scene, pipe, model, second)
    with compat.library_call(names=[A, B]):
        model.set_adapter([A, B])
    both = combine([(first.ref, SCALING), (second.ref, SCALING)])
    _expect_refusal(
        compat,
        lambda: model.set_adapters([A, B], weights=[SCALAR]),
        ["weights"],
        _unchanged_effect(compat, scene, pipe, both, "the refused set_adapters", 1.0),
    )


@pytest.mark.parametrize("arch", ARCHES)
def test_model_add_existing_name(compat: Any, scene_for: Any, arch: str) -> None:
    """``add_adapter(config, adapter_name=A)`` twice: a clear error naming A; the first
    adapter's weights untouched."""
    compat.param(arch=arch, level="model", adapter_name=A)
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=54)
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter")
    add_with_weights(compat, scene, pipe, model, adapter)
    config = lora_config(adapter)
    _expect_refusal(
        compat,
        lambda: model.add_adapter(config, adapter_name=A),
        [A],
        _unchanged_effect(compat, scene, pipe, adapter.ref, "the refused add_adapter", SCALING),
    )


#: Model methods that need an adapter: called on a model without one, a clear error.
NEEDS_ADAPTER: dict[str, Callable[[Any], Any]] = {
    "set_adapter": lambda model: model.set_adapter(A),
    "disable_adapters": lambda model: model.disable_adapters(),
    "enable_adapters": lambda model: model.enable_adapters(),
    "active_adapters": lambda model: model.active_adapters(),
}


@pytest.mark.parametrize("method", list(NEEDS_ADAPTER))
@pytest.mark.parametrize("arch", ARCHES)
def test_model_no_adapter_loaded(compat: Any, scene_for: Any, arch: str, method: str) -> None:
    """``<denoiser>.<method>()`` before any adapter: a clear error (the message has no
    adapter of the case to name), the model unchanged."""
    compat.param(arch=arch, level="model", method=method)
    scene = scene_for(arch)
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, method)

    def unchanged() -> None:
        changed = scene.restore_diff(pipe)
        if changed:
            compat.finding(Outcome.STALE_STATE, f"refused {method} changed {list(changed)[:5]}")

    _expect_refusal(compat, lambda: NEEDS_ADAPTER[method](model), [], unchanged)


@pytest.mark.parametrize("arch", ARCHES)
def test_model_delete_adapters_string(compat: Any, scene_for: Any, arch: str) -> None:
    """``<denoiser>.delete_adapters("style")`` (a plain string, as documented): A gone,
    B acts alone."""
    compat.param(arch=arch, level="model", adapter_names=A)
    compat.valid_input("model delete_adapters with one added name as a string")
    scene = scene_for(arch)
    first = denoiser_lora(scene, A, seed=56, part="even")
    second = denoiser_lora(scene, B, seed=57, part="odd")
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter", "set_adapter", "delete_adapters")
    add_with_weights(compat, scene, pipe, model, first)
    add_with_weights(compat, scene, pipe, model, second)
    with compat.library_call(names=[A, B]):
        model.set_adapter([A, B])
        model.delete_adapters(A)
    left = [p for p, m in model.named_modules() if A in getattr(m, "lora_A", {})]
    if left or A in getattr(model, "peft_config", {}):
        compat.finding(Outcome.STALE_STATE, f"delete_adapters({A!r}) left it on {list(left)[:5]}")
    scene.expect_effect(compat, pipe, second.ref, f"delete_adapters({A!r})", SCALING)


@pytest.mark.parametrize("arch", ARCHES)
def test_model_save_unknown_adapter(compat: Any, scene_for: Any, arch: str, tmp_path: Path) -> None:
    """``<denoiser>.save_lora_adapter(dir, adapter_name=<never added>)``: a clear error
    naming the adapter; no file written."""
    compat.param(arch=arch, level="model", adapter_name=UNKNOWN)
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=58)
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter", "save_lora_adapter")
    add_with_weights(compat, scene, pipe, model, adapter)

    def unchanged() -> None:
        written = sorted(p.name for p in tmp_path.iterdir())
        if written:
            compat.finding(Outcome.STALE_STATE, f"refused save wrote {written}")

    _expect_refusal(
        compat, lambda: model.save_lora_adapter(str(tmp_path), adapter_name=UNKNOWN), [UNKNOWN],
        unchanged,
    )  # fmt: skip
