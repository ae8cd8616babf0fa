"""Every LoRA format x architecture, one row per kind of file, plus one exploring row.

The row name says what was fed in (``load[flux-kohya-partial-no-to_k]``), and the
expectation follows from it:

* ``complete`` - every group the format can express, text encoders included; then, one
  component at a time (so a broken text-encoder path does not hide the denoiser rows):
  ``denoiser-only``, ``text-encoders-only``, and on the denoiser ``no-alpha`` /
  ``reordered`` / ``float16`` / ``bfloat16`` - well-formed files (alpha != rank where the
  format stores alphas, so the scaling shows): they must load with the reference effect.
  A refusal, however clear, is ``REFUSED``.
* ``partial-no-<part>`` - one fused group without one of its parts (the partial Q/K/V
  shape that crashed strict converters), everything else complete: the reference effect
  of the parts present, or a refusal naming a key or module of that group.
* ``stray-key`` - a complete file plus one well-formed pair for a module the model does
  not have: applied-or-reported (a warning naming that key or its module), or a refusal
  naming it.
* ``with-<family>`` - the denoiser's groups plus one optional family that real files of the
  format carry only sometimes (``formats.FAMILIES``): Flux ``embedders`` / ``final-layer``,
  control-LoRA ``biases`` (``lora_B.bias``: the module's bias must move by ``s * b``), and
  OneTrainer's ``t5`` keys (no diffusers Flux loader targets T5: the keys must be reported,
  like stray keys). Real files, so valid input.

``explore[<arch>-<format>]``: hypothesis keeps drawing subsets, ranks, alphas, layouts,
dtypes, orders and stray keys; each example is judged by the same rules (from what the
example is), and the findings are grouped by symptom (outcome, exception type, message
with names and numbers normalised), each with its smallest example.

Oracle in every row: each targeted module's effective weight (probed, independent of peft
internals) equals base + reference delta, no other module moved; keys without effect are
fine only if a library warning named them.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from hypothesis import Phase, given, settings

from harness.cell.classify import Finding, LibraryError, Unsupported
from harness.drivers.lora import judge_biases, judge_load
from harness.inputs.checkpoints.lora.build import Pick
from harness.inputs.checkpoints.lora.cases import (
    Case,
    candidates,
    case_strategy,
    full_case,
    realise,
)
from harness.inputs.checkpoints.lora.formats import FAMILIES, FORMATS, stems_of
from harness.inputs.checkpoints.lora.layouts import ARCH_COMPONENTS, DENOISER, FLUX_DOUBLE, Group
from harness.oracles.compare import fingerprint_inputs, input_mutations
from harness.oracles.lora import parse
from harness.protocol.outcomes import Outcome

ARCHES = ("sd15", "sdxl", "sd3", "flux")
#: DoRA / control / full-size-only formats have their own checks (test_dora, test_control,
#: test_full_scale); the rows here are the plain down/up/alpha formats.
CASES = [
    (arch, name)
    for name, fmt in FORMATS.items()
    for arch in ARCHES
    if fmt.supports(arch) and not fmt.extension
]
IDS = [f"{arch}-{name}" for arch, name in CASES]

#: Rank and alpha of the deterministic rows: alpha != rank, so a loader that gets the
#: alpha / rank scaling wrong shows.
RANK, ALPHA = 4, 2.0

#: Kinds of well-formed file: (alpha, dtype, reversed key order). ``complete`` carries
#: every component; the others one component (``text-encoders-only``) or the denoiser.
VALID_KINDS: dict[str, tuple[float | None, str, bool]] = {
    "complete": (ALPHA, "float32", False),
    "denoiser-only": (ALPHA, "float32", False),
    "text-encoders-only": (ALPHA, "float32", False),
    "no-alpha": (None, "float32", False),
    "reordered": (ALPHA, "float32", True),
    "float16": (ALPHA, "float16", False),
    "bfloat16": (ALPHA, "bfloat16", False),
}

FOCUS_ENV = "ADAPTER_COMPAT_LORA_FOCUS"

#: Hypothesis: no shrinking (every example loads a pipeline; each symptom keeps its
#: smallest example instead), no example database.
RUN = settings(phases=[Phase.explicit, Phase.generate])


def focused(cands):
    """Restrict the groups to those matching ``ADAPTER_COMPAT_LORA_FOCUS`` (a regex on
    ``<component>.<native group name>``; unset = all). For narrowing a bisection or a
    self-test to one part of the model; recorded with the result."""
    pattern = os.environ.get(FOCUS_ENV)
    if not pattern:
        return cands
    return [(g, p) for g, p in cands if re.search(pattern, f"{g.component}.{g.native}")]


def _kinds(arch: str, fmt: str) -> list[str]:
    """The row kinds a format x architecture has (from the format, not from the library)."""
    lora_format = FORMATS[fmt]
    kinds = [k for k in VALID_KINDS if k != "no-alpha" or lora_format.alpha]
    if not _carries_text_encoders(arch, fmt):
        kinds = [k for k in kinds if k not in ("denoiser-only", "text-encoders-only")]
    kinds += [f"partial-no-{part}" for part in _fused_parts(arch, fmt)]
    return kinds + ["stray-key"] + _family_kinds(arch, fmt)


def _family_kinds(arch: str, fmt: str) -> list[str]:
    """``with-<family>`` for each optional family of the format that exists for ``arch``
    (the embedder / final-layer families are Flux layers outside the blocks)."""
    flux_only = ("embedders", "final-layer", "t5")
    return [
        f"with-{family}"
        for family in FORMATS[fmt].optional
        if arch == "flux" or family not in flux_only
    ]


def _families(kind: str) -> tuple[str, ...]:
    family = kind.removeprefix("with-")
    return (family,) if kind.startswith("with-") and family in FAMILIES else ()


def _carries_text_encoders(arch: str, fmt: str) -> bool:
    """The format names text-encoder layers of this architecture (from its naming rules)."""
    lora_format = FORMATS[fmt]
    path = "text_model.encoder.layers.0.self_attn.q_proj"
    for component in ARCH_COMPONENTS[arch][1:]:
        probe = Group(component, path, (path,), (8,), 8)
        if lora_format.stem(arch, probe, {}) is not None and lora_format.part_filter(
            arch, component, path
        ):
            return True
    return False


def _fused_parts(arch: str, fmt: str) -> tuple[str, ...]:
    """Parts of the first fused group (Flux's ``double_blocks.0.img_attn.qkv``) the format
    can carry, by short name. From the format tables, so rows exist before any model."""
    if arch != "flux":
        return ()  # SD1.5 / SDXL LoRA formats have no fused groups
    parts = [f"transformer_blocks.0.{s}" for s in FLUX_DOUBLE[0][1]]
    kept = [p for p in parts if FORMATS[fmt].part_filter(arch, "transformer", p)]
    return tuple(p.rsplit(".", 1)[-1] for p in kept) if len(kept) > 1 else ()


ROWS = [(arch, fmt, kind) for arch, fmt in CASES for kind in _kinds(arch, fmt)]
#: Key families of the extension formats checked here (control-LoRA biases on the tiny
#: model; the control load itself, norms and all, is test_control's).
ROWS += [
    (arch, name, f"with-{family}")
    for name, fmt in FORMATS.items()
    if fmt.extension and not fmt.full_only and not fmt.magnitude
    for arch in ARCHES
    if fmt.supports(arch)
    for family in fmt.optional
    if FAMILIES[family] == "key"
]


def _load(compat, scene, built, names, biases: bool = False):
    """Load ``built`` into a fresh pipeline and observe it; returns (msgs, observed,
    observed biases or None)."""
    pipe = scene.fresh()
    with compat.library_call(names=names) as msgs:
        pipe.load_lora_weights(built.state_dict, adapter_name="style")
    observed = scene.observe(pipe)
    return msgs, observed, scene.observe_bias(pipe) if biases else None


def _check_writer_reference(ref, built) -> None:
    """Our writer and reference must agree on every non-stray key (else: our bug)."""
    unknown = set(ref.unknown_keys) - set(built.stray_keys)
    if unknown:
        raise RuntimeError(
            f"reference could not place keys the writer wrote: {sorted(unknown)[:5]}"
        )


def _case_of(kind: str, lora_format, arch: str, scene, cands) -> tuple[Case, bool, list[Pick]]:
    """The deterministic file of a row: its case, whether it is valid input, and the
    picks a refusal must name (the partial group)."""
    denoiser = DENOISER[arch]
    families = _families(kind)
    if families:  # the denoiser's groups (the family's own included) plus the family
        cands = [(g, parts) for g, parts in cands if g.component == denoiser]
        alpha = ALPHA if lora_format.alpha else None
        picks = [Pick(g, parts, RANK, alpha) for g, parts in cands]
        return Case(picks, 0, "float32", 0, 0, families), True, []
    if kind == "text-encoders-only":
        cands = [(g, parts) for g, parts in cands if g.component != denoiser]
        if not cands:
            raise RuntimeError(f"{lora_format.name} expresses no text-encoder group on {arch}")
    elif kind != "complete":
        cands = [(g, parts) for g, parts in cands if g.component == denoiser]
    if kind in VALID_KINDS:
        alpha, dtype, _ = VALID_KINDS[kind]
        picks = [Pick(g, parts, RANK, alpha if lora_format.alpha else None) for g, parts in cands]
        return Case(picks, 0, dtype, 0, 0), True, []
    picks = [Pick(g, parts, RANK, ALPHA if lora_format.alpha else None) for g, parts in cands]
    if kind == "stray-key":
        return Case(picks, 1, "float32", 0, 0), False, []
    missing = kind.removeprefix("partial-no-")
    for i, pick in enumerate(picks):
        if len(pick.present) > 1:
            present = tuple(p for p in pick.present if p.rsplit(".", 1)[-1] != missing)
            picks[i] = Pick(pick.group, present, pick.rank, pick.alpha)
            return Case(picks, 0, "float32", 0, 0), False, [picks[i]]
    raise Unsupported(f"{kind}: the focused groups hold no fused group of {arch}")


def _names(built, partial: list[Pick], lora_format, arch: str, layout) -> list[str]:
    """What a refusal of this file must name: the stray keys (or their modules), else the
    keys, stems and module paths of the partial group, else any key of the file."""
    if built.stray_keys:
        return sorted({k.rsplit(".", 2)[0] for k in built.stray_keys}) + list(built.stray_keys)
    if partial:
        group = partial[0].group
        stems = [
            stem
            for stem, g in stems_of(lora_format, arch, layout).items()
            if g.component == group.component and set(g.parts) <= set(group.parts)
        ]
        keys = [k for k in built.state_dict if any(k.startswith(s + ".") for s in stems)]
        return [group.native, *group.parts, *stems, *keys]
    return built.stems()


def judge_file(compat, scene, lora_format, arch: str, built, partial) -> str:
    """Load one file and judge it (the caller has declared what it is); returns the
    status or raises."""
    ref = parse(built.state_dict, lora_format, arch, scene.layout)
    _check_writer_reference(ref, built)
    names = _names(built, partial, lora_format, arch, scene.layout)
    with_bias = bool(ref.bias_modules())
    msgs, observed, biases = _load(compat, scene, built, names, with_bias)
    status = judge_load(
        ref, scene.compare(observed, ref), msgs, built.stray_keys, compat, scene.classes
    )
    if with_bias:
        bias_status = judge_biases(compat, scene, ref, biases, msgs)
        status = "OK-reported" if "reported" in (status + bias_status) else status
    return status


@pytest.mark.parametrize("arch,fmt,kind", ROWS, ids=[f"{a}-{f}-{k}" for a, f, k in ROWS])
def test_load(compat, scene_for, arch: str, fmt: str, kind: str) -> None:
    """One deterministic file of one kind, judged by what that kind owes the user."""
    compat.param(arch=arch, format=fmt, kind=kind)
    scene = scene_for(arch)
    lora_format = FORMATS[fmt]
    cands = focused(candidates(lora_format, arch, scene.layout, families=_families(kind)))
    compat.require(cands, f"{fmt} expresses no module of the tiny {arch} model")
    case, valid, partial = _case_of(kind, lora_format, arch, scene, cands)
    if valid:
        compat.valid_input(f"complete {fmt} file for {arch} ({kind})")
    else:
        compat.may_reject(f"{kind} {fmt} file for {arch}")
    built = realise(lora_format, arch, scene.layout, case)
    if kind == "reordered":
        built.state_dict = dict(reversed(list(built.state_dict.items())))
    compat.detail(example=case.describe(), n_keys=len(built.state_dict))
    if os.environ.get(FOCUS_ENV):
        compat.detail(focus=os.environ[FOCUS_ENV])
    compat.detail(status=judge_file(compat, scene, lora_format, arch, built, partial))


# -- exploring ---------------------------------------------------------------------------------
_NUMBERS = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]")


def symptom(outcome: Outcome, exc: BaseException | None) -> str:
    """Outcome + exception type + message with names and numbers normalised: examples
    that fail the same way fall into one symptom."""
    text = ""
    if exc is not None:
        original = getattr(exc, "original", exc)
        message = str(original).splitlines()[0] if str(original) else ""
        message = _NUMBERS.sub("N", _QUOTED.sub("<name>", message))[:160]
        text = f" {type(original).__name__}: {message}"
    return f"{outcome.value}{text}"


@pytest.mark.parametrize("arch,fmt", CASES, ids=IDS)
def test_explore(compat, scene_for, arch: str, fmt: str) -> None:
    """Drawn files (any subset of a fused group, rank, alpha, layout, dtype, order, stray
    keys), each judged by what it is; findings grouped by symptom."""
    compat.param(arch=arch, format=fmt, kind="explore")
    compat.expect(Outcome.OK, Outcome.CLEAR_ERROR)
    scene = scene_for(arch)
    lora_format = FORMATS[fmt]
    cands = focused(candidates(lora_format, arch, scene.layout))
    compat.require(cands, f"{fmt} expresses no module of the tiny {arch} model")
    symptoms: dict[str, dict[str, Any]] = {}
    first_failure: list[BaseException] = []
    examples = 0

    @RUN
    @given(case=case_strategy(lora_format, cands))
    def run(case) -> None:
        nonlocal examples
        examples += 1
        built = realise(lora_format, arch, scene.layout, case)
        valid = not case.partial_groups and not built.stray_keys
        if valid:
            compat.valid_input("a drawn complete file")
        else:
            compat.may_reject("a drawn partial or stray-key file")
        try:
            judge_file(compat, scene, lora_format, arch, built, case.partial_groups)
            return
        except (Finding, LibraryError) as exc:
            outcome = exc.outcome
            if outcome is Outcome.CLEAR_ERROR:
                return  # a clear refusal of a partial or stray file is what it owes
            failure = exc
        key = symptom(outcome, failure)
        seen = symptoms.setdefault(key, {"count": 0, "example": None, "keys": None})
        seen["count"] += 1
        if seen["keys"] is None or len(built.state_dict) < seen["keys"]:
            seen.update(example=case.describe(), keys=len(built.state_dict), valid=valid)
            if not first_failure or key == next(iter(symptoms)):
                first_failure[:] = [failure]

    if os.environ.get(FOCUS_ENV):
        compat.detail(focus=os.environ[FOCUS_ENV])
    try:
        run()
    finally:
        compat.may_reject("drawn files, each judged by what it is")
        compat.detail(examples=examples, symptoms=symptoms)
    if symptoms:
        worst = max(symptoms.items(), key=lambda item: item[1]["count"])
        compat.detail(worst_symptom=worst[0])
        raise first_failure[0]


def _call_and_check_mutation(compat, state_dict, call) -> None:
    """Run ``call()`` in a library call; INPUT_MUTATED when the caller's dict or tensors
    changed - checked even when the call raised (a loader may pop, then fail). A refusal
    without mutation records the refusal (CLEAR_ERROR passes, a crash stays a finding)."""
    before = fingerprint_inputs(state_dict)
    failure: LibraryError | None = None
    try:
        with compat.library_call():
            call()
    except LibraryError as exc:
        failure = exc
    problems = input_mutations(before, state_dict)
    if problems:
        compat.detail(
            mutations=problems[:20], raised=str(failure.original)[:300] if failure else None
        )
        compat.finding(
            Outcome.INPUT_MUTATED, f"{len(problems)} change(s) to the caller's dict: {problems[0]}"
        )
    if failure is not None:
        raise failure


def _mutation_case(compat: Any, scene_for: Any, arch: str, fmt: str) -> tuple[Any, Any]:
    """A complete file (alpha != rank, so any in-place rescaling shows) and a fresh
    pipeline: valid input, so a refusal is REFUSED; a changed input is INPUT_MUTATED."""
    compat.param(arch=arch, format=fmt)
    compat.valid_input(f"complete {fmt} file for {arch}")
    scene = scene_for(arch)
    lora_format = FORMATS[fmt]
    case = full_case(lora_format, arch, scene.layout, rank=4, alpha=1.0)
    compat.require(case.picks, f"{fmt} expresses no module of the tiny {arch} model")
    return realise(lora_format, arch, scene.layout, case), scene.fresh()


@pytest.mark.parametrize("arch,fmt", CASES, ids=IDS)
def test_load_does_not_mutate_input(compat, scene_for, arch: str, fmt: str) -> None:
    """``load_lora_weights(dict)`` leaves the caller's dict and tensors as they were (alpha
    != rank, so any in-place rescaling shows)."""
    built, pipe = _mutation_case(compat, scene_for, arch, fmt)
    _call_and_check_mutation(
        compat,
        built.state_dict,
        lambda: pipe.load_lora_weights(built.state_dict, adapter_name="style"),
    )


@pytest.mark.parametrize("arch,fmt", CASES, ids=IDS)
def test_lora_state_dict_does_not_mutate_input(compat, scene_for, arch: str, fmt: str) -> None:
    """The public classmethod ``<Pipeline>.lora_state_dict(dict)`` (what apps call to
    inspect / convert a LoRA) leaves the caller's dict and tensors alone."""
    built, pipe = _mutation_case(compat, scene_for, arch, fmt)
    kwargs = {"unet_config": pipe.unet.config} if arch == "sdxl" else {}
    _call_and_check_mutation(
        compat, built.state_dict, lambda: type(pipe).lora_state_dict(built.state_dict, **kwargs)
    )
