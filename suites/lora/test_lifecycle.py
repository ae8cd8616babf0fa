"""LoRA lifecycle on each architecture: unload, fuse/unfuse, adapter weights, several
adapters, delete, reuse of a freed name, disable/enable, set_lora_device, save -> load, low_cpu_mem_usage, and the
end-to-end output against a pipeline patched by hand with the reference deltas.

The adapter under test is a diffusers/PEFT-format LoRA on every targetable layer (the
format every version loads natively), except where a check is *about* a format (the
save round trip also runs a kohya file with alpha != rank). Oracles: the reference deltas
(harness.oracles.lora) and the pristine weights / output of the zoo pipeline.
"""

from __future__ import annotations

import pytest
import torch

from harness.cell.classify import Finding, LibraryError
from harness.drivers.lora import (
    LORA_LOW_CPU_MEM_USAGE,
    adapter_list,
    judge_load,
    save_kwargs,
)
from harness.drivers.probe import accepts
from harness.inputs.checkpoints.lora.cases import Case, full_case, realise
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.checkpoints.lora.layouts import DENOISER
from harness.inputs.models.run import run_step
from harness.oracles.compare import outputs_close
from harness.oracles.lora import allowance, combine, parse
from harness.protocol.outcomes import Outcome

ARCHES = ("sd15", "sdxl", "sd3", "flux")
#: Each lifecycle property on the whole file, and on the denoiser's layers alone: a broken
#: text-encoder path (transformers 5's IndexError in 0.38-0.40) turns the whole-file row red
#: and leaves the denoiser row free to show whether the operation itself works.
SCOPED = [(arch, "all") for arch in ARCHES] + [(arch, "denoiser") for arch in ARCHES]
SCOPED_IDS = [arch if scope == "all" else f"{arch}-denoiser-only" for arch, scope in SCOPED]

#: Adapter names. Realistic ones on purpose: peft < 0.9 strips ``.<adapter name>`` from every
#: key when saving, so a one-letter name like "a" would mangle ".attentions" (our bug, not
#: the library's).
A, B = "style", "detail"


def _lora(
    scene,
    fmt: str = "peft",
    alpha: float | None = None,
    part: str = "all",
    seed: int = 0,
    blocks_only: bool = False,
    scope: str = "all",
):
    """A deterministic LoRA on all eligible groups, or on a half: ``even`` = the even
    denoiser groups plus the complete text encoder(s), ``odd`` = the odd denoiser groups
    (plus the first one, so the two overlap) and no text encoder. Text encoders get all
    of their layers or none: a partial text-encoder LoRA is the formats check's subject."""
    lora_format = FORMATS[fmt]
    case = full_case(lora_format, scene.arch, scene.layout, rank=4, alpha=alpha, seed=seed)
    if blocks_only:  # Flux's layers outside the blocks: a first-load problem in many versions
        case.picks = [
            p
            for p in case.picks
            if p.group.component != "transformer" or "blocks." in p.group.native
        ]
    if part != "all":
        denoiser = [p for p in case.picks if p.group.component == DENOISER[scene.arch]]
        encoders = [p for p in case.picks if p.group.component != DENOISER[scene.arch]]
        if part == "even":
            picks = [p for i, p in enumerate(denoiser) if i % 2 == 0] + encoders
        else:
            picks = [p for i, p in enumerate(denoiser) if i % 2 == 1 or i == 0]
        case = Case(picks, 0, case.dtype, seed, 0)
    if scope == "denoiser":
        picks = [p for p in case.picks if p.group.component == DENOISER[scene.arch]]
        case = Case(picks, 0, case.dtype, seed, 0)
    built = realise(lora_format, scene.arch, scene.layout, case)
    return built, parse(built.state_dict, lora_format, scene.arch, scene.layout)


def _expect_pristine(
    compat, scene, pipe, what: str, outcome: Outcome = Outcome.STALE_STATE
) -> None:
    changed = scene.restore_diff(pipe)  # our probe, outside the library call
    if changed:
        compat.detail(changed=dict(list(changed.items())[:20]))
        compat.finding(
            outcome,
            f"after {what}, {len(changed)} module(s) differ from pristine: {', '.join(list(changed)[:5])}",
        )


def _needs(compat, pipe, *methods: str) -> None:
    """UNSUPPORTED where the pipeline lacks a lifecycle method (SD3 in 0.29 loads and
    unloads only: ``set_adapters``, ``fuse_lora`` & co arrive with 0.30)."""
    missing = [m for m in methods if not callable(getattr(pipe, m, None))]
    compat.require(not missing, f"{type(pipe).__name__} has no {', '.join(missing)}")


def _load(compat, pipe, built, name: str = A, name_keys: bool = True, **kwargs) -> list[str]:
    """Load ``built``; a refusal must name its keys unless ``name_keys`` is off (a refusal
    of a keyword, say, has no offending key). Every file here is complete and valid."""
    compat.valid_input("a complete LoRA file")
    with compat.library_call(names=built.stems() if name_keys else ()) as msgs:
        pipe.load_lora_weights(built.state_dict, adapter_name=name, **kwargs)
    return msgs


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_unload_restores(compat, scene_for, arch: str, scope: str) -> None:
    """load -> unload_lora_weights gives back the pristine weights and output, exactly."""
    compat.param(arch=arch, scope=scope, format="peft")
    scene = scene_for(arch)
    built, ref = _lora(scene, scope=scope)
    pipe = scene.fresh()
    _load(compat, pipe, built)
    scene.expect_effect(compat, pipe, ref, "load")
    with compat.library_call():
        pipe.unload_lora_weights()
    _expect_pristine(compat, scene, pipe, "unload_lora_weights")
    with compat.library_call():
        after = run_step(pipe)
    pristine = run_step(scene.fresh())  # the reference output: a pristine copy of our zoo
    same, delta = outputs_close(after, pristine, scene.dtype, exact=True)
    compat.detail(output_max_abs_diff=delta)
    if not same:
        compat.finding(
            Outcome.STALE_STATE, f"output after unload differs from pristine (max {delta:.3g})"
        )


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_fuse_unfuse(compat, scene_for, arch: str, scope: str) -> None:
    """fuse_lora writes base + delta into the weights (and the LoRA is not applied twice);
    unfuse_lora gives the base weights back within rounding."""
    compat.param(arch=arch, scope=scope, format="peft")
    scene = scene_for(arch)
    built, ref = _lora(scene, scope=scope, seed=1)
    pipe = scene.fresh()
    _needs(compat, pipe, "fuse_lora", "unfuse_lora")
    _load(compat, pipe, built)
    with compat.library_call():
        pipe.fuse_lora(**scene.fuse_kwargs(pipe))
    stored = scene.stored(pipe)  # our read of the weights, outside the library call
    comparisons = scene.compare(stored, ref)
    moved = sum(len(c.matched) + len(c.wrong) for c in comparisons.values())
    if not any(c.matched or c.wrong for c in comparisons.values()):
        compat.finding(Outcome.SILENT_NOOP, "fuse_lora changed no stored weight")
    try:
        judge_load(ref, comparisons, [], [], compat, scene.classes)
    except Finding as exc:
        raise Finding(exc.outcome, f"fused weights: {exc}") from None
    scene.expect_effect(compat, pipe, ref, "fuse_lora (effective weights)")
    with compat.library_call():
        pipe.unfuse_lora(**scene.fuse_kwargs(pipe))
    stored = scene.stored(pipe)  # our read of the weights, outside the library call
    left = {}
    for component, weights in stored.items():
        base = scene.base[component]
        for name, w in weights.items():
            tol = (
                1e-5 * float(base[name].abs().max()) + 1e-6
                if scene.dtype == torch.float32
                else 2e-2
            )
            err = float((w - base[name]).abs().max())
            if err > tol:
                left[f"{component}.{name}"] = err
    compat.detail(modules_fused=moved)
    if left:
        compat.detail(not_restored=dict(list(left.items())[:20]))
        compat.finding(
            Outcome.STALE_STATE,
            f"unfuse_lora left {len(left)} module(s) fused: {', '.join(list(left)[:5])}",
        )
    scene.expect_effect(compat, pipe, ref, "unfuse_lora (adapter active again)")


#: ``fuse_lora(lora_scale=...)``: a scale users pass to bake a LoRA in at less than full
#: strength (documented in every release of the grid).
FUSE_SCALE = 0.5
#: The file fused with a scale: kohya with alpha 2 != rank 4 (so the alpha / rank factor
#: and the scale multiply); SD3 has no kohya loader, so its file is diffusers/PEFT.
FUSE_SCALE_FORMAT = {"sd3": "peft"}


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_fuse_lora_scale(compat, scene_for, arch: str, scope: str) -> None:
    """fuse_lora(lora_scale=0.5) of a kohya file with alpha 2 != rank 4 (SD3: PEFT) writes
    base + 0.5 * (alpha / rank) * up @ down into the stored weights, and the effective
    weights equal them (the LoRA is not applied again on top)."""
    fmt = FUSE_SCALE_FORMAT.get(arch, "kohya")
    alpha = 2.0 if FORMATS[fmt].alpha else None
    compat.param(arch=arch, scope=scope, format=fmt, alpha=alpha, rank=4)
    scene = scene_for(arch)
    built, ref = _lora(scene, fmt=fmt, alpha=alpha, scope=scope, seed=10)
    pipe = scene.fresh()
    _needs(compat, pipe, "fuse_lora")
    compat.require(
        accepts(pipe.fuse_lora, "lora_scale"), "fuse_lora takes no lora_scale in this version"
    )
    _load(compat, pipe, built)
    with compat.library_call():
        pipe.fuse_lora(lora_scale=FUSE_SCALE, **scene.fuse_kwargs(pipe))
    stored = scene.stored(pipe)  # our read of the weights, outside the library call
    comparisons = scene.compare(stored, ref, FUSE_SCALE)
    if not any(c.matched or c.wrong for c in comparisons.values()):
        compat.finding(Outcome.SILENT_NOOP, "fuse_lora changed no stored weight")
    try:
        judge_load(ref, comparisons, [], [], compat, scene.classes)
    except Finding as exc:
        raise Finding(exc.outcome, f"weights fused with lora_scale={FUSE_SCALE}: {exc}") from None
    scene.expect_effect(compat, pipe, ref, f"fuse_lora(lora_scale={FUSE_SCALE})", weight=FUSE_SCALE)


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_set_adapters_weight(compat, scene_for, arch: str, scope: str) -> None:
    """set_adapters([A], [w]) scales the effect by w, for w in 0.5, 2.0 and 0."""
    compat.param(arch=arch, scope=scope, format="peft")
    scene = scene_for(arch)
    built, ref = _lora(scene, scope=scope, seed=2)
    pipe = scene.fresh()
    _needs(compat, pipe, "set_adapters")
    _load(compat, pipe, built)
    for weight in (0.5, 2.0, 0.0):
        with compat.library_call():
            pipe.set_adapters([A], [weight])
        scene.expect_effect(compat, pipe, ref, f"set_adapters([{A!r}], [{weight}])", weight)


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_multiple_adapters(compat, scene_for, arch: str, scope: str) -> None:
    """Two adapters with different (overlapping) target sets, weighted 0.7 / 1.3: the
    effect is the weighted sum of both references."""
    compat.param(arch=arch, scope=scope, format="peft")
    scene = scene_for(arch)
    a, ref_a = _lora(scene, scope=scope, part="even", seed=3)
    b, ref_b = _lora(scene, scope=scope, part="odd", seed=4)
    pipe = scene.fresh()
    _needs(compat, pipe, "set_adapters")
    _load(compat, pipe, a, A)
    _load(compat, pipe, b, B)
    with compat.library_call():
        pipe.set_adapters([A, B], [0.7, 1.3])
    scene.expect_effect(
        compat,
        pipe,
        combine([(ref_a, 0.7), (ref_b, 1.3)]),
        f"set_adapters([{A!r}, {B!r}], [0.7, 1.3])",
    )


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_delete_adapters(compat, scene_for, arch: str, scope: str) -> None:
    """delete_adapters(A) with B loaded leaves exactly B's effect and forgets A."""
    compat.param(arch=arch, scope=scope, format="peft")
    scene = scene_for(arch)
    a, _ = _lora(scene, scope=scope, part="even", seed=5)
    b, ref_b = _lora(scene, scope=scope, part="odd", seed=6)
    pipe = scene.fresh()
    _needs(compat, pipe, "set_adapters", "delete_adapters")
    _load(compat, pipe, a, A)
    _load(compat, pipe, b, B)
    with compat.library_call():
        pipe.set_adapters([A, B])
        pipe.delete_adapters(A)
        listed = adapter_list(pipe)
    if listed is not None and any(A in names for names in listed.values()):
        compat.finding(
            Outcome.STALE_STATE,
            f"get_list_adapters still lists 'style' after delete_adapters: {listed}",
        )
    scene.expect_effect(compat, pipe, ref_b, f"delete_adapters({A!r})")


#: How a name is freed before it is used again; both are documented ways to drop a LoRA.
FREED_BY = ("delete", "unload")
REUSE = [(a, s, how) for a, s in SCOPED for how in FREED_BY]
REUSE_IDS = [f"{sid}-after-{how}" for sid in SCOPED_IDS for how in FREED_BY]


@pytest.mark.parametrize("arch,scope,how", REUSE, ids=REUSE_IDS)
def test_name_reuse(compat, scene_for, arch: str, scope: str, how: str) -> None:
    """Load A as 'style', free the name (delete_adapters / unload_lora_weights), load B as
    'style': the pipeline holds exactly B's effect. A refusal of the second load (a name
    left registered) is a refusal of valid input, never a pass."""
    compat.param(arch=arch, scope=scope, format="peft", freed_by=how)
    scene = scene_for(arch)
    a, _ = _lora(scene, scope=scope, seed=7)
    b, ref_b = _lora(scene, scope=scope, seed=8)
    pipe = scene.fresh()
    _needs(compat, pipe, "delete_adapters" if how == "delete" else "unload_lora_weights")
    _load(compat, pipe, a, A)
    with compat.library_call():
        if how == "delete":
            pipe.delete_adapters(A)
        else:
            pipe.unload_lora_weights()
    _load(compat, pipe, b, A)
    scene.expect_effect(compat, pipe, ref_b, f"{how} of {A!r}, then a load under {A!r}")


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_disable_enable(compat, scene_for, arch: str, scope: str) -> None:
    """disable_lora -> pristine behaviour; enable_lora -> the LoRA's effect again."""
    compat.param(arch=arch, scope=scope, format="peft")
    scene = scene_for(arch)
    built, ref = _lora(scene, scope=scope, seed=7)
    pipe = scene.fresh()
    _needs(compat, pipe, "disable_lora", "enable_lora")
    _load(compat, pipe, built)
    with compat.library_call():
        pipe.disable_lora()
    _expect_pristine(compat, scene, pipe, "disable_lora", Outcome.SILENT_NOOP)
    with compat.library_call():
        pipe.enable_lora()
    scene.expect_effect(compat, pipe, ref, "enable_lora")


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_set_lora_device(compat, scene_for, device, arch: str, scope: str) -> None:
    """set_lora_device moves the adapter's tensors (to CPU and back on a GPU run; on a CPU
    run the same device) and the effect is unchanged."""
    compat.param(arch=arch, scope=scope, format="peft")
    scene = scene_for(arch)
    built, ref = _lora(scene, scope=scope, seed=8)
    pipe = scene.fresh()
    _needs(compat, pipe, "set_lora_device")
    _load(compat, pipe, built)
    for target in ("cpu", str(device)):
        with compat.library_call():
            pipe.set_lora_device([A], target)
        misplaced = [
            name
            for component in scene.layout
            for name, param in getattr(pipe, component).named_parameters()
            if f".{A}." in f".{name}."
            and "lora_" in name
            and param.device.type != torch.device(target).type
        ]
        if misplaced:
            compat.finding(
                Outcome.SILENT_NOOP, f"set_lora_device({target!r}) left {misplaced[0]} elsewhere"
            )
    compat.detail(cross_device=str(device) != "cpu")
    scene.expect_effect(compat, pipe, ref, "set_lora_device")


SAVE_CASES = [
    (arch, fmt) for arch in ARCHES for fmt in ("peft", "kohya") if FORMATS[fmt].supports(arch)
]


@pytest.mark.parametrize("arch,fmt", SAVE_CASES, ids=[f"{a}-{f}" for a, f in SAVE_CASES])
def test_save_load_roundtrip(compat, scene_for, tmp_path, arch: str, fmt: str) -> None:
    """load -> save_lora_weights -> load into a fresh pipeline: the reloaded adapter acts
    exactly as the first one did (kohya: alpha != rank, so a lost alpha shows). Metadata
    keywords are passed where the version's save_lora_weights accepts them, as diffusers'
    own training scripts do. The oracle is the first pipeline's effective weights, so a
    first-load problem (see lora/formats) does not count twice."""
    compat.param(arch=arch, format=fmt)
    scene = scene_for(arch)
    built, _ = _lora(
        scene, fmt=fmt, alpha=1.0 if FORMATS[fmt].alpha else None, seed=9, blocks_only=True
    )
    pipe = scene.fresh()
    try:
        _load(compat, pipe, built)
    except LibraryError as exc:  # the formats check reports first-load problems
        compat.not_run(f"the {fmt} file does not load here ({exc.outcome}); see lora/formats")
    with compat.library_call():
        first = scene.observe(pipe)
        kwargs = save_kwargs(arch, pipe, A)
    if not kwargs:
        compat.not_run(
            f"the {fmt} file attached no adapter here (see lora/formats); nothing to save"
        )
    with compat.library_call():
        save = type(pipe).save_lora_weights
        for component in list(kwargs):
            name = component.replace("_lora_layers", "_lora_adapter_metadata")
            if accepts(save, name):
                kwargs[name] = (
                    getattr(pipe, component.replace("_lora_layers", "")).peft_config[A].to_dict()
                )
        save(str(tmp_path), weight_name="roundtrip.safetensors", **kwargs)
    compat.detail(saved_with_metadata=any(k.endswith("_metadata") for k in kwargs))
    fresh = scene.fresh()
    with compat.library_call():
        fresh.load_lora_weights(str(tmp_path), weight_name="roundtrip.safetensors", adapter_name=A)
        second = scene.observe(fresh)
    lost, wrong = [], {}
    for component, weights in first.items():
        for name, w1 in weights.items():
            w2, b = second[component][name], scene.base[component][name]
            tol = allowance(w1 - b, b, scene.dtype, scene.dtype)
            err = float((w2 - w1).abs().max())
            if err <= tol:
                continue
            if float((w2 - b).abs().max()) <= tol:
                lost.append(f"{component}.{name}")
            else:
                wrong[f"{component}.{name}"] = err
    compat.detail(lost=lost[:20], wrong=dict(list(wrong.items())[:20]))
    if wrong:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"reloaded adapter acts differently on {len(wrong)} module(s): {', '.join(list(wrong)[:5])}",
        )
    if lost:
        compat.finding(
            Outcome.DROPPED_KEYS,
            f"reloaded adapter lost {len(lost)} module(s): {', '.join(lost[:5])}",
        )


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_low_cpu_mem_usage(compat, scene_for, arch: str, scope: str) -> None:
    """low_cpu_mem_usage=True and False both give the reference effect."""
    compat.param(arch=arch, scope=scope, format="peft")
    compat.require(
        LORA_LOW_CPU_MEM_USAGE.holds(),
        f"load_lora_weights reads low_cpu_mem_usage from {LORA_LOW_CPU_MEM_USAGE.version}",
    )
    scene = scene_for(arch)
    built, ref = _lora(scene, scope=scope, seed=10)
    for flag in (True, False):
        pipe = scene.fresh()
        _load(compat, pipe, built, name_keys=False, low_cpu_mem_usage=flag)
        scene.expect_effect(compat, pipe, ref, f"load_lora_weights(low_cpu_mem_usage={flag})")


@pytest.mark.parametrize("arch,scope", SCOPED, ids=SCOPED_IDS)
def test_output_matches_patched(compat, scene_for, arch: str, scope: str) -> None:
    """End to end: one denoising step with the LoRA loaded equals the same step of a pristine
    pipeline whose weights were patched by hand with the reference deltas."""
    compat.param(arch=arch, scope=scope, format="peft")
    scene = scene_for(arch)
    built, ref = _lora(scene, scope=scope, seed=11)
    pipe = scene.fresh()
    _load(compat, pipe, built)
    patched = scene.fresh()
    with torch.no_grad():
        for component, name in ref.modules():
            module = scene.modules(patched, component)[name]
            delta = ref.delta(component, name).reshape(module.weight.shape)
            module.weight += delta.to(module.weight.dtype)
    with compat.library_call():
        got = run_step(pipe)
    expected = run_step(patched)
    close, delta = outputs_close(got, expected, scene.dtype)
    compat.detail(output_max_abs_diff=delta)
    if not close and delta > 1e-4:
        compat.finding(
            Outcome.WRONG_RESULT, f"output differs from the hand-patched pipeline (max {delta:.3g})"
        )


# -- the model-level API ------------------------------------------------------------------
#: Operations users call on the denoiser itself (``pipe.unet`` / ``pipe.transformer``)
#: rather than on the pipeline: the PEFT mixin of the model (``loaders/peft.py``).
MODEL_OPS = ("load", "set_adapters", "disable_enable", "save_reload")
MODEL_CASES = [(arch, op) for arch in ARCHES for op in MODEL_OPS]


@pytest.mark.parametrize("arch,op", MODEL_CASES, ids=[f"{a}-{o}" for a, o in MODEL_CASES])
def test_model_level(compat, scene_for, tmp_path, arch: str, op: str) -> None:
    """A denoiser-only diffusers/PEFT file (alpha != rank where the format carries it) loaded
    with ``<denoiser>.load_lora_adapter(sd, prefix=<denoiser>)``: the reference effect; then
    ``set_adapters([A], weights=[0.5])`` -> half of it; ``disable_lora`` -> pristine,
    ``enable_lora`` -> the effect again; ``save_lora_adapter`` + ``load_lora_adapter`` of the
    saved file (bare keys, ``prefix=None``) into a fresh model -> the same effect."""
    compat.param(arch=arch, op=op, format="peft", level="model")
    scene = scene_for(arch)
    denoiser_name = DENOISER[arch]
    built, ref = _lora(scene, scope="denoiser", seed=11)
    pipe = scene.fresh()
    model = getattr(pipe, denoiser_name)
    needs = {
        "load": ("load_lora_adapter",),
        "set_adapters": ("load_lora_adapter", "set_adapters"),
        "disable_enable": ("load_lora_adapter", "disable_lora", "enable_lora"),
        "save_reload": ("load_lora_adapter", "save_lora_adapter"),
    }[op]
    missing = [m for m in needs if not callable(getattr(model, m, None))]
    compat.require(not missing, f"{type(model).__name__} has no {', '.join(missing)}")
    compat.valid_input("a complete denoiser-only diffusers/PEFT file, model-level load")
    with compat.library_call(names=built.stems()):
        model.load_lora_adapter(dict(built.state_dict), prefix=denoiser_name, adapter_name=A)
    what = f"{denoiser_name}.load_lora_adapter(prefix={denoiser_name!r})"
    if op == "load":
        scene.expect_effect(compat, pipe, ref, what)
    elif op == "set_adapters":
        with compat.library_call():
            model.set_adapters([A], weights=[0.5])
        scene.expect_effect(compat, pipe, ref, f"{denoiser_name}.set_adapters([{A!r}], [0.5])", 0.5)
    elif op == "disable_enable":
        with compat.library_call():
            model.disable_lora()
        scene.expect_effect(compat, pipe, ref, f"{denoiser_name}.disable_lora()", 0.0)
        with compat.library_call():
            model.enable_lora()
        scene.expect_effect(compat, pipe, ref, f"{denoiser_name}.enable_lora()")
    else:
        with compat.library_call():
            model.save_lora_adapter(str(tmp_path), adapter_name=A)
        saved = sorted(tmp_path.glob("*.safetensors"))
        if not saved:
            compat.finding(Outcome.DROPPED_KEYS, "save_lora_adapter wrote no .safetensors file")
        fresh = scene.fresh()
        with compat.library_call():
            getattr(fresh, denoiser_name).load_lora_adapter(
                str(tmp_path), weight_name=saved[0].name, prefix=None, adapter_name=A
            )
        scene.expect_effect(
            compat, fresh, ref, "save_lora_adapter + load_lora_adapter(prefix=None)"
        )
