"""The adapter-management API at the model and the pipeline level, one row per method.

Model level (``pipe.unet`` / ``pipe.transformer``, ``PeftAdapterMixin``): ``add_adapter``,
``set_adapter``, ``active_adapters``, ``disable_adapters`` / ``enable_adapters``,
``fuse_lora(lora_scale=...)`` / ``unfuse_lora``. Adapters are attached with
``add_adapter(LoraConfig(r=4, lora_alpha=2, ...))`` and the file's matrices written into
the injected layers by the harness (:mod:`harness.scenarios.model_api`), so each row meets
the method under test and nothing else. Pipeline level: ``get_active_adapters``,
``fused_loras`` / ``num_fused_loras`` and ``fuse_lora(adapter_names=...)`` after
``load_lora_weights`` of denoiser-only diffusers/PEFT files.

Oracle: the reference effect of each file (:mod:`harness.oracles.lora`) times
``lora_alpha / r`` and the adapter weights; the pristine zoo weights. A method the
installed release lacks is UNSUPPORTED (probed on the class); a documented call that
raises is REFUSED (``compat.valid_input``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from harness.drivers.probe import accepts
from harness.oracles.lora import combine
from harness.protocol.outcomes import Outcome
from harness.scenarios.model_api import (
    SCALING,
    Adapter,
    add_with_weights,
    as_names,
    denoiser_lora,
    denoiser_with,
    fused_left,
    load_adapter,
    lora_config,
    require_methods,
    wrapped_paths,
    write_weights,
)

#: A UNet and a transformer denoiser (Flux: UNSUPPORTED before 0.30).
ARCHES = ("sd15", "flux")
A, B = "style", "detail"


@pytest.fixture(scope="session")
def scene_for(zoo: Any) -> Any:
    from harness.scenarios.lora import scene_cache

    return scene_cache(zoo)


def _expect_pristine(compat: Any, scene: Any, pipe: Any, what: str, outcome: Outcome) -> None:
    changed = scene.restore_diff(pipe)  # our probe, outside the library call
    if changed:
        compat.detail(changed=dict(list(changed.items())[:20]))
        compat.finding(
            outcome,
            f"after {what}, {len(changed)} module(s) act unlike the base model: "
            + ", ".join(list(changed)[:5]),
        )


def _expect_names(compat: Any, got: Any, expected: list[str], what: str) -> None:
    """The names a getter returned equal the active set (order free). A name that is not
    active is STALE_STATE; an active one missing is WRONG_RESULT."""
    names = as_names(got)
    compat.detail(**{f"returned_after_{what.split('(')[0]}": names})
    stale = sorted(set(names) - set(expected))
    if stale:
        compat.finding(Outcome.STALE_STATE, f"after {what}: returns {names}, {stale} not active")
    if sorted(set(names)) != sorted(expected):
        compat.finding(Outcome.WRONG_RESULT, f"after {what}: returns {names}, not {expected}")


# -- model level -------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHES)
def test_add_adapter(compat: Any, scene_for: Any, arch: str) -> None:
    """``add_adapter(LoraConfig(r=4, lora_alpha=2, target_modules=<paths>))``: a LoRA layer
    on exactly the targeted modules, the model unchanged until weights are written (LoRA's
    B starts at zero), then ``base + (alpha / r) * B @ A`` on every targeted module."""
    compat.param(arch=arch, level="model", rank=4, alpha=2.0)
    compat.valid_input("add_adapter with a LoraConfig naming existing modules")
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=20)
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter")
    config = lora_config(adapter)
    with compat.library_call(names=[A]):
        model.add_adapter(config, adapter_name=A)
    _expect_pristine(compat, scene, pipe, "add_adapter (B = 0)", Outcome.WRONG_RESULT)
    wrapped = wrapped_paths(model, A)
    targets = set(adapter.paths.values())
    compat.detail(targets=len(targets), wrapped=len(wrapped))
    extra = sorted(wrapped - targets)
    if extra:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"add_adapter wrapped {len(extra)} module(s) the config does not name: "
            + ", ".join(extra[:5]),
        )
    absent = write_weights(scene, pipe, adapter)
    if absent:
        compat.finding(
            Outcome.DROPPED_KEYS,
            f"add_adapter left {len(absent)} targeted module(s) without a LoRA layer: "
            + ", ".join(absent[:5]),
        )
    scene.expect_effect(compat, pipe, adapter.ref, "add_adapter + the file's weights", SCALING)


@pytest.mark.parametrize("arch", ARCHES)
def test_set_adapter(compat: Any, scene_for: Any, arch: str) -> None:
    """Two adapters added (overlapping targets); ``set_adapter(A)`` -> only A acts,
    ``set_adapter(B)`` -> only B, ``set_adapter([A, B])`` -> both."""
    compat.param(arch=arch, level="model", rank=4, alpha=2.0)
    compat.valid_input("set_adapter with names of added adapters")
    scene = scene_for(arch)
    first = denoiser_lora(scene, A, seed=21, part="even")
    second = denoiser_lora(scene, B, seed=22, part="odd")
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter", "set_adapter")
    add_with_weights(compat, scene, pipe, model, first)
    add_with_weights(compat, scene, pipe, model, second)
    for names, refs in (
        (A, [first.ref]),
        (B, [second.ref]),
        ([A, B], [first.ref, second.ref]),
    ):
        with compat.library_call(names=[A, B]):
            model.set_adapter(names)
        expected = combine([(ref, SCALING) for ref in refs])
        scene.expect_effect(compat, pipe, expected, f"set_adapter({names!r})")


@pytest.mark.parametrize("arch", ARCHES)
def test_active_adapters(compat: Any, scene_for: Any, arch: str) -> None:
    """``active_adapters()`` names exactly the adapters in use: the one just added, then
    whatever ``set_adapter`` chose."""
    compat.param(arch=arch, level="model")
    compat.valid_input("active_adapters after add_adapter / set_adapter")
    scene = scene_for(arch)
    first = denoiser_lora(scene, A, seed=23, part="even")
    second = denoiser_lora(scene, B, seed=24, part="odd")
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter", "set_adapter", "active_adapters")
    add_with_weights(compat, scene, pipe, model, first)
    with compat.library_call():
        got = model.active_adapters()
    _expect_names(compat, got, [A], f"add_adapter({A!r})")
    add_with_weights(compat, scene, pipe, model, second)
    with compat.library_call():
        got = model.active_adapters()
    _expect_names(compat, got, [B], f"add_adapter({B!r})")
    for names in (A, [A, B]):
        with compat.library_call():
            model.set_adapter(names)
            got = model.active_adapters()
        _expect_names(compat, got, as_names(names), f"set_adapter({names!r})")


@pytest.mark.parametrize("arch", ARCHES)
def test_disable_enable_adapters(compat: Any, scene_for: Any, arch: str) -> None:
    """``disable_adapters()`` -> the base model; ``enable_adapters()`` -> the adapter again."""
    compat.param(arch=arch, level="model", rank=4, alpha=2.0)
    compat.valid_input("disable_adapters / enable_adapters with an added adapter")
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=25)
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter", "disable_adapters", "enable_adapters")
    add_with_weights(compat, scene, pipe, model, adapter)
    with compat.library_call():
        model.disable_adapters()
    _expect_pristine(compat, scene, pipe, "disable_adapters()", Outcome.SILENT_NOOP)
    with compat.library_call():
        model.enable_adapters()
    scene.expect_effect(compat, pipe, adapter.ref, "enable_adapters()", SCALING)


#: ``fuse_lora(lora_scale=...)`` at the model level: the strength the LoRA is baked in at.
FUSE_SCALE = 0.5


@pytest.mark.parametrize("arch", ARCHES)
def test_model_fuse_unfuse(compat: Any, scene_for: Any, arch: str) -> None:
    """``<denoiser>.fuse_lora(lora_scale=0.5)`` stores ``W + 0.5 * (alpha/r) * B @ A`` and
    the model acts with it (not applied again on top); ``unfuse_lora()`` stores ``W`` again
    and the adapter acts as before the fuse (``alpha / r``, the strength it had)."""
    compat.param(arch=arch, level="model", rank=4, alpha=2.0, lora_scale=FUSE_SCALE)
    compat.valid_input("model-level fuse_lora(lora_scale) / unfuse_lora")
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=26)
    pipe = scene.fresh()
    model = denoiser_with(compat, scene, pipe, "add_adapter", "fuse_lora", "unfuse_lora")
    compat.require(
        accepts(model.fuse_lora, "lora_scale"), "the model's fuse_lora takes no lora_scale"
    )
    add_with_weights(compat, scene, pipe, model, adapter)
    with compat.library_call():
        model.fuse_lora(lora_scale=FUSE_SCALE)
    fused = SCALING * FUSE_SCALE
    stored = scene.compare(scene.stored(pipe), adapter.ref, fused)  # our read
    if not any(c.matched or c.wrong for c in stored.values()):
        compat.finding(Outcome.SILENT_NOOP, "fuse_lora changed no stored weight")
    _judge_stored(compat, stored, f"fuse_lora(lora_scale={FUSE_SCALE})")
    scene.expect_effect(compat, pipe, adapter.ref, f"fuse_lora(lora_scale={FUSE_SCALE})", fused)
    with compat.library_call():
        model.unfuse_lora()
    left = fused_left(scene, pipe)
    if left:
        compat.detail(not_restored=dict(list(left.items())[:20]))
        compat.finding(
            Outcome.STALE_STATE,
            f"unfuse_lora left {len(left)} stored weight(s) fused: {', '.join(list(left)[:5])}",
        )
    after = scene.compare(scene.observe(pipe), adapter.ref, SCALING)  # our probe
    if not all(c.ok for c in after.values()):
        still_scaled = scene.compare(scene.observe(pipe), adapter.ref, fused)
        if all(c.ok for c in still_scaled.values()):
            compat.finding(
                Outcome.STALE_STATE,
                f"after unfuse_lora the adapter still acts at lora_scale={FUSE_SCALE} times "
                "its strength: the fuse's scaling was never undone",
            )
    scene.expect_effect(compat, pipe, adapter.ref, "unfuse_lora (the adapter as before)", SCALING)


def _judge_stored(compat: Any, comparisons: dict[str, Any], what: str) -> None:
    wrong = {
        f"{c}.{m}": e
        for c, cmp in comparisons.items()
        for m, e in (cmp.wrong | cmp.unexpected).items()
    }
    dropped = [f"{c}.{m}" for c, cmp in comparisons.items() for m in cmp.dropped]
    if wrong:
        compat.detail(wrong=dict(list(wrong.items())[:20]))
        compat.finding(
            Outcome.WRONG_RESULT, f"{what}: wrong stored weight on {', '.join(list(wrong)[:5])}"
        )
    if dropped:
        compat.finding(
            Outcome.DROPPED_KEYS, f"{what}: {len(dropped)} module(s) not fused: {dropped[:5]}"
        )


# -- pipeline level ----------------------------------------------------------------------
#: The call keyword that carries a LoRA ``scale`` into the denoiser, per pipeline family.
ATTENTION_KWARGS = ("cross_attention_kwargs", "joint_attention_kwargs", "attention_kwargs")
CALL_SCALE = 0.5


def _patched(scene: Any, adapter: Adapter, weight: float) -> Any:
    """A pristine pipeline whose targeted weights we patched by hand: ``W + weight * delta``."""
    pipe = scene.fresh()
    with torch.no_grad():
        for component, name in adapter.ref.modules():
            module = scene.modules(pipe, component)[name]
            delta = adapter.ref.delta(component, name, weight).reshape(module.weight.shape)
            module.weight += delta.to(module.weight.dtype)
    return pipe


@pytest.mark.parametrize("arch", ARCHES)
def test_attention_kwargs_scale(compat: Any, scene_for: Any, arch: str) -> None:
    """A LoRA loaded, then one step with ``<cross|joint>_attention_kwargs={"scale": 0.5}``
    equals a pristine pipeline patched by hand with ``W + 0.5 * delta``; the next step
    without the keyword equals the one patched with ``W + delta`` (the call's scale must
    not outlive the call)."""
    from harness.inputs.models.run import run_step
    from harness.oracles.compare import outputs_close

    compat.param(arch=arch, level="pipeline", format="peft", scale=CALL_SCALE)
    compat.valid_input("a complete denoiser-only LoRA; a documented call keyword")
    scene = scene_for(arch)
    adapter = denoiser_lora(scene, A, seed=31)
    pipe = scene.fresh()
    names = [n for n in ATTENTION_KWARGS if accepts(type(pipe).__call__, n)]
    compat.require(names, f"{type(pipe).__name__}.__call__ takes no attention kwargs")
    compat.param(keyword=names[0])
    load_adapter(compat, pipe, adapter)
    with compat.library_call():
        scaled = run_step(pipe, **{names[0]: {"scale": CALL_SCALE}})
        after = run_step(pipe)
    references = {w: run_step(_patched(scene, adapter, w)) for w in (CALL_SCALE, 1.0)}
    alike, gap = outputs_close(references[CALL_SCALE], references[1.0], scene.dtype)
    compat.detail(reference_gap=gap)
    if alike or gap <= 1e-4:  # the two strengths look alike: the row would prove nothing
        raise RuntimeError(f"W + {CALL_SCALE}·delta and W + delta differ by only {gap:.3g}")
    for got, weight, outcome, what in (
        (scaled, CALL_SCALE, Outcome.WRONG_RESULT, f"{names[0]}={{'scale': {CALL_SCALE}}}"),
        (after, 1.0, Outcome.STALE_STATE, "the next call without a scale"),
    ):
        expected = references[weight]
        close, delta = outputs_close(got, expected, scene.dtype)
        compat.detail(**{f"max_abs_diff_at_{weight}": delta})
        if not close and delta > 1e-4:
            compat.finding(
                outcome, f"{what}: output differs from W + {weight}·delta by {delta:.3g}"
            )


@pytest.mark.parametrize("arch", ARCHES)
def test_get_active_adapters(compat: Any, scene_for: Any, arch: str) -> None:
    """Two denoiser-only files loaded with ``load_lora_weights``; after
    ``set_adapters([A])``, ``set_adapters([A, B])`` and ``set_adapters(B)``,
    ``get_active_adapters()`` names exactly the adapters set (and the effect follows)."""
    compat.param(arch=arch, level="pipeline", format="peft")
    compat.valid_input("complete denoiser-only LoRA files; set_adapters with their names")
    scene = scene_for(arch)
    first = denoiser_lora(scene, A, seed=27, part="even")
    second = denoiser_lora(scene, B, seed=28, part="odd")
    pipe = scene.fresh()
    require_methods(compat, pipe, "set_adapters", "get_active_adapters")
    load_adapter(compat, pipe, first)
    load_adapter(compat, pipe, second)
    refs = {A: first.ref, B: second.ref}
    for names in ([A], [A, B], B):
        with compat.library_call(names=[A, B]):
            pipe.set_adapters(names)
            got = pipe.get_active_adapters()
        _expect_names(compat, got, as_names(names), f"set_adapters({names!r})")
        expected = combine([(refs[n], 1.0) for n in as_names(names)])
        scene.expect_effect(compat, pipe, expected, f"set_adapters({names!r})")


@pytest.mark.parametrize("arch", ARCHES)
def test_fused_loras(compat: Any, scene_for: Any, arch: str) -> None:
    """A and B loaded and active; ``fuse_lora(adapter_names=[A])`` stores only A's delta and
    counts one fused LoRA (``num_fused_loras``; ``fused_loras == {A}`` where the property
    exists); ``unfuse_lora()`` stores the base weights and counts none.

    What B does meanwhile on a layer where A is fused is not judged: no release documents
    it (peft's forward skips every unmerged adapter of a layer that holds a merged one)."""
    compat.param(arch=arch, level="pipeline", format="peft")
    compat.valid_input("fuse_lora(adapter_names=[a loaded adapter]) / unfuse_lora")
    scene = scene_for(arch)
    first = denoiser_lora(scene, A, seed=29, part="even")
    second = denoiser_lora(scene, B, seed=30, part="odd")
    pipe = scene.fresh()
    require_methods(compat, pipe, "set_adapters", "fuse_lora", "unfuse_lora", "num_fused_loras")
    compat.require(
        accepts(pipe.fuse_lora, "adapter_names"), "fuse_lora takes no adapter_names here"
    )
    has_names = hasattr(type(pipe), "fused_loras")
    compat.detail(fused_loras_property=has_names)
    load_adapter(compat, pipe, first)
    load_adapter(compat, pipe, second)
    kwargs = scene.fuse_kwargs(pipe)
    with compat.library_call(names=[A, B]):
        pipe.set_adapters([A, B])
        pipe.fuse_lora(adapter_names=[A], **kwargs)
        count = pipe.num_fused_loras
        names = set(pipe.fused_loras) if has_names else None
    compat.detail(num_fused_after_fuse=count, fused_after_fuse=sorted(names or []))
    stored = scene.compare(scene.stored(pipe), first.ref)  # our read
    _judge_stored(compat, stored, f"fuse_lora(adapter_names=[{A!r}])")
    if count != 1 or (names is not None and names != {A}):
        compat.finding(
            Outcome.WRONG_RESULT,
            f"after fuse_lora(adapter_names=[{A!r}]): num_fused_loras={count}, "
            f"fused_loras={sorted(names) if names is not None else 'n/a'}",
        )
    with compat.library_call():
        pipe.unfuse_lora(**kwargs)
        count = pipe.num_fused_loras
        names = set(pipe.fused_loras) if has_names else None
    compat.detail(num_fused_after_unfuse=count, fused_after_unfuse=sorted(names or []))
    left = fused_left(scene, pipe)
    if left:
        compat.finding(Outcome.STALE_STATE, f"unfuse_lora left {len(left)} stored weight(s) fused")
    if count != 0 or names:
        compat.finding(
            Outcome.STALE_STATE,
            f"after unfuse_lora: num_fused_loras={count}, fused_loras={sorted(names or [])}",
        )
