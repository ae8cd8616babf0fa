"""One real denoising step per model family, and the same step with a LoRA, judged against
our own merge of the file (issue #20, item 2).

Why: the family suite (``suites/families``) checks each Linear's effective weight after a
load, in a pipeline whose other components are ``None``. What a user sees is a step.
Here each family's complete pipeline (tiny text encoders with generated tokenizers, VAE,
scheduler; :mod:`harness.inputs.families.components`) runs one seeded step:

* ``family_step[<family>]`` - the latent output has the shape the pipeline's arithmetic
  gives and finite values, and two copies with one seed agree bit for bit;
* ``family_lora_step[<family>]`` - after ``load_lora_weights`` of the family's complete
  diffusers/PEFT file, the step equals (within a dtype tolerance of the LoRA's own effect)
  the step of a LoRA-free copy whose denoiser weights we patched with base + (alpha /
  rank) B A read from the file (:func:`harness.oracles.lora_merge.merge_reference`), and
  differs from the pristine step (else SILENT_NOOP);
* ``family_lora_scale[<family>]`` - the same with ``{"scale": 0.5}`` passed through the
  pipeline's attention kwargs, against the merge at half weight.

A companion row (``COMPANION_LORA_HOSTS``: ``ltx2-connectors``) has ``family_lora_step``
only: its file targets a second component of the host family's pipeline (LTX-2's text
connectors), stepped with the host's data. No scale row: the attention kwargs' scale is
the denoiser's (LTX-2 calls its connectors with none, and they take none).

Where the data names a ``PromptEmbeds`` recipe (Wan, SkyReels-V2, Helios: their prompt
cleaning needs ``ftfy``, which they import only when installed) every step of the two
LoRA rows passes ``prompt_embeds`` we computed with the pipeline's own tokenizer and text
encoder; ``family_step`` always passes the prompt, so that path stays judged.

A modular-only family (FLUX.3, Anima) steps through its pipeline's own call with the
default blocks, returning the state's ``latents`` (the data's ``output``); its keywords
are the inputs the blocks declare.

Building, loading and stepping run inside ``compat.library_call()``: a release that
rejects the tiny architecture, or whose pipeline cannot step, is a finding of
``family_step`` (the LoRA rows of that family are then NOT_RUN, naming it, rather than
repeating it); a release without the family is UNSUPPORTED.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import pytest
import torch

from harness.cell.classify import LibraryError
from harness.inputs.families.components import COMPANION_LORA_HOSTS, FAMILY_PIPELINES
from harness.inputs.families.full_pipelines import FullFamilyZoo
from harness.inputs.families.table import FAMILIES
from harness.oracles.lora_merge import STEP_RELATIVE_TOLERANCE, merge_reference, step_agreement
from harness.protocol.outcomes import Outcome
from harness.scenarios.families import load_source
from harness.scenarios.family_steps import (
    complete_lora,
    family_step,
    prompt_embeds,
    scale_kwarg,
    step_kwargs,
)

pytestmark = pytest.mark.filterwarnings("ignore")

NAMES = list(FAMILY_PIPELINES)
#: ``family_lora_step`` also judges the companion rows' files (in their host's pipeline).
LORA_NAMES = NAMES + list(COMPANION_LORA_HOSTS)
ADAPTER = "style"
#: LoRA scale of the scale row: not 1, so an ignored scale shows.
LORA_SCALE = 0.5


@pytest.fixture(scope="session")
def full_family_zoo(device: Any, dtype: Any) -> FullFamilyZoo:
    return FullFamilyZoo(device=device, dtype=dtype)


def _declare(compat: Any, zoo: FullFamilyZoo, name: str) -> None:
    """Name the family in the record and build its pipeline (a library call: a release
    that rejects the tiny components is a finding; an absent class is UNSUPPORTED)."""
    family = FAMILIES[name]
    compat.param(family=name, pipeline_cls=family.pipeline)
    with compat.library_call():
        build = zoo.build(name)
    compat.detail(**build.as_dict())


def _pipe(compat: Any, zoo: FullFamilyZoo, name: str) -> Any:
    with compat.library_call():
        return zoo.get(name)


def _step(
    compat: Any,
    pipe: Any,
    name: str,
    late: bool = False,
    embeds: dict[str, torch.Tensor] | None = None,
    notes: list[str] | None = None,
    **extra: Any,
) -> torch.Tensor:
    with compat.library_call(late=late):
        return family_step(
            pipe, FAMILY_PIPELINES[name], seed=0, embeds=embeds, notes=notes, **extra
        )


#: zoo -> {family (+ "/embeds"): the seed-0 step of a pristine copy}, shared by the checks.
_PRISTINE: weakref.WeakKeyDictionary[Any, dict[str, torch.Tensor]] = weakref.WeakKeyDictionary()
#: zoo -> {family: our prompt_embeds}, for the families whose LoRA rows step with them.
_EMBEDS: weakref.WeakKeyDictionary[Any, dict[str, dict]] = weakref.WeakKeyDictionary()


def _pristine(
    compat: Any, zoo: FullFamilyZoo, name: str, embeds: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    outputs = _PRISTINE.setdefault(zoo, {})
    key = name if embeds is None else f"{name}/embeds"
    if key not in outputs:
        outputs[key] = _step(compat, _pipe(compat, zoo, name), name, embeds=embeds)
    return outputs[key]


def _embeds(zoo: FullFamilyZoo, name: str) -> dict[str, torch.Tensor]:
    """Our prompt_embeds from the session's original pipeline (its text encoder is only
    read; no LoRA touches it). Ours: a failure here is a HARNESS_ERROR."""
    cached = _EMBEDS.setdefault(zoo, {})
    if name not in cached:
        cached[name] = prompt_embeds(zoo.build(name).pipe, FAMILY_PIPELINES[name])
    return cached[name]


@pytest.mark.parametrize("name", NAMES)
def test_family_step(compat: Any, full_family_zoo: FullFamilyZoo, name: str) -> None:
    """One seeded step: the expected latent shape, finite values, deterministic."""
    _declare(compat, full_family_zoo, name)
    spec = FAMILY_PIPELINES[name]
    start = time.perf_counter()
    first = _pristine(compat, full_family_zoo, name)
    compat.detail(step_s=round(time.perf_counter() - start, 3))
    pipe = _pipe(compat, full_family_zoo, name)
    _, left_out = step_kwargs(pipe, spec, seed=0)
    notes: list[str] = []  # the call's return form, where it breaks its contract
    second = _step(compat, pipe, name, notes=notes)
    compat.detail(shape=list(first.shape), call_left_out=left_out, std=float(first.std()))
    if tuple(first.shape) != spec.latent_shape:
        compat.finding(
            Outcome.WRONG_RESULT, f"latent shape {tuple(first.shape)}, expected {spec.latent_shape}"
        )
    for note in notes:
        compat.finding(Outcome.WRONG_RESULT, note)
    if not bool(first.isfinite().all()):
        compat.finding(Outcome.WRONG_RESULT, f"{int((~first.isfinite()).sum())} non-finite values")
    if not torch.equal(first, second):
        diff = float((first.double() - second.double()).abs().max())
        compat.finding(Outcome.WRONG_RESULT, f"same seed, different steps (max diff {diff:g})")


def _prerequisites(
    compat: Any, zoo: FullFamilyZoo, name: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """Build and step the pristine pipeline for a LoRA row; the pristine step and the
    ``prompt_embeds`` every step of the row passes (None: the prompt). A library failure
    in the build or the prompt step is ``family_step``'s finding: here the row cannot run
    (NOT_RUN, naming it). Where the data has ``embeds`` the prompt path is no
    prerequisite: the pristine step with our embeddings is this row's own library call."""
    spec = FAMILY_PIPELINES[name]
    try:
        _declare(compat, zoo, name)
        if spec.embeds is None:
            return _pristine(compat, zoo, name), None
    except LibraryError as exc:
        compat.not_run(
            f"the pristine {name} pipeline does not build or step in this release "
            f"(family_step[{name}] records it): {exc.reason}"
        )
    embeds = _embeds(zoo, name)
    compat.detail(text_input=f"prompt_embeds {list(embeds['prompt_embeds'].shape)} (ours)")
    return _pristine(compat, zoo, name, embeds), embeds


def _judge_lora_step(
    compat: Any,
    zoo: FullFamilyZoo,
    name: str,
    tmp_path: Any,
    weight: float,
    extra: dict[str, Any],
) -> None:
    """Load the complete file, step (with ``extra``); compare with our merge at ``weight``
    and with the pristine step. A companion row's file targets its own component inside
    the host family's pipeline, which builds and steps as the host's rows do."""
    family = FAMILIES[name]
    host = COMPANION_LORA_HOSTS.get(name, name)
    pristine, embeds = _prerequisites(compat, zoo, host)
    if host != name:
        compat.param(family=name, host_family=host, lora_target=family.attr)
    pipe = _pipe(compat, zoo, host)
    built, ref = complete_lora(pipe, family)
    compat.valid_input(f"complete diffusers/PEFT file for {name}")
    source, kwargs = load_source(built, tmp_path)
    compat.detail(
        n_keys=len(built.state_dict),
        modules=len(built.modules),
        alpha_in="header metadata" if built.header else "none (scale 1)",
        weight=weight,
    )
    with compat.library_call(names=built.stems()):
        pipe.load_lora_weights(source, adapter_name=ADAPTER, **kwargs)
    loaded = _step(compat, pipe, host, late=True, embeds=embeds, **extra)
    merged_pipe = _pipe(compat, zoo, host)
    merged_paths = merge_reference(getattr(merged_pipe, family.attr), ref, family.attr, weight)
    merged = _step(compat, merged_pipe, host, embeds=embeds)
    err, effect = step_agreement(loaded, merged, pristine)
    moved = float((loaded.double() - pristine.double()).abs().max())
    tol = STEP_RELATIVE_TOLERANCE.get(zoo.dtype, 1e-3) * effect
    compat.detail(
        merged_modules=len(merged_paths),
        max_abs_loaded_vs_merged=err,
        max_abs_merge_effect=effect,
        max_abs_loaded_vs_pristine=moved,
        relative_error=err / effect if effect else None,
    )
    if effect == 0.0:  # our merge changed nothing: the comparison would mean nothing
        raise RuntimeError(f"{name}: the reference merge of {len(merged_paths)} modules is a no-op")
    if moved <= tol:
        compat.finding(
            Outcome.SILENT_NOOP,
            f"the step after load_lora_weights equals the pristine one (max diff {moved:.3g})",
        )
    if err > tol:
        why = ""
        if extra:  # was the scale heard at all? the same loaded pipe without it
            unscaled = _step(compat, pipe, host, late=True, embeds=embeds)
            scale_moved = float((loaded.double() - unscaled.double()).abs().max())
            compat.detail(max_abs_scaled_vs_unscaled=scale_moved)
            if scale_moved <= tol:
                why = f"; {sorted(extra)[0]}={extra[sorted(extra)[0]]} had no effect on the step"
        compat.finding(
            Outcome.WRONG_RESULT,
            f"step with the loaded LoRA differs from the step with our merge by {err:.3g} "
            f"({err / effect:.2%} of the LoRA's effect {effect:.3g}; allowed {tol:.3g}){why}",
        )


@pytest.mark.parametrize("name", LORA_NAMES)
def test_family_lora_step(compat: Any, full_family_zoo: FullFamilyZoo, name: str, tmp_path) -> None:
    """The loaded LoRA's step equals the step of our merge of the same file."""
    _judge_lora_step(compat, full_family_zoo, name, tmp_path, 1.0, {})


@pytest.mark.parametrize("name", NAMES)
def test_family_lora_scale(
    compat: Any, full_family_zoo: FullFamilyZoo, name: str, tmp_path
) -> None:
    """``{"scale": 0.5}`` in the pipeline's attention kwargs halves the LoRA's weights."""
    _prerequisites(compat, full_family_zoo, name)
    pipe = full_family_zoo.build(name).pipe  # read only: which keyword carries the scale
    keyword = scale_kwarg(pipe)
    compat.require(keyword, f"{type(pipe).__name__}.__call__ takes no attention kwargs")
    compat.param(scale_kwarg=keyword, scale=LORA_SCALE)
    extra = {keyword: {"scale": LORA_SCALE}}
    _judge_lora_step(compat, full_family_zoo, name, tmp_path, LORA_SCALE, extra)
