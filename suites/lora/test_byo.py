"""Bring your own LoRA: the checks ``adapter-compat check FILE`` runs on a user's file.

The file arrives in ``ADAPTER_COMPAT_USER_FILE`` (NOT_RUN without it: that is the normal
state of a plain suite run). A real file is full size, so it cannot be loaded into the tiny
zoo models; these checks use the detector view instead (``<Pipeline>.lora_state_dict`` on
the file's own tensors, compared module by module with the reference computed from the
file against the committed full-size layout), plus the input-mutation check.
"""

from __future__ import annotations

import types

import pytest

from harness.byo.user_lora import read_user_lora
from harness.drivers.lora import judge_view
from harness.drivers.lora_detector import read_converted, unpack
from harness.drivers.probe import accepts
from harness.inputs.checkpoints.lora.layouts import DENOISER
from harness.inputs.checkpoints.lora.manifests import load_layout
from harness.inputs.models import PIPELINES, pipeline_exists
from harness.oracles.compare import fingerprint_inputs, input_mutations
from harness.oracles.lora import parse
from harness.protocol.outcomes import Outcome


@pytest.fixture
def user_lora(compat):
    """(path, state dict, detection) of the user's file; NOT_RUN when none was given, or
    when the file is one the checks cannot judge (``harness.byo.user_lora``)."""
    return read_user_lora(compat)


def _pipe_cls(compat, arch: str):
    compat.require(pipeline_exists(arch), f"{PIPELINES[arch]} does not exist in this version")
    import diffusers

    return getattr(diffusers, PIPELINES[arch])


def _kwargs(pipe_cls, arch: str, layout) -> dict:
    kwargs = {}
    if arch == "sdxl":
        kwargs["unet_config"] = types.SimpleNamespace(**layout["unet"].config)
    if accepts(pipe_cls.lora_state_dict, "return_alphas"):
        kwargs["return_alphas"] = True
    return kwargs


def test_user_file_reaches_the_model(compat, user_lora) -> None:
    """Loading the file from disk, every module the reference targets receives exactly the
    reference delta; keys the harness cannot place must be rejected or reported."""
    path, state_dict, found = user_lora
    pipe_cls = _pipe_cls(compat, found.arch)
    layout = load_layout(found.arch)
    ref = parse(state_dict, found.format, found.arch, layout)
    compat.detail(
        keys=len(state_dict), unplaced_keys=ref.unknown_keys[:20], detection=found.describe()
    )
    with compat.library_call(names=ref.unknown_keys or list(state_dict)[:20]) as msgs:
        converted_sd, alphas = unpack(
            pipe_cls.lora_state_dict(
                str(path.parent), weight_name=path.name, **_kwargs(pipe_cls, found.arch, layout)
            )
        )
    converted = read_converted(converted_sd, alphas, inputs=set(state_dict))
    if converted.unconverted:
        compat.detail(unconverted=converted.unconverted[:10])
    judge_view(
        compat,
        ref,
        converted,
        DENOISER[found.arch],
        found.format.startswith("peft_"),
        msgs,
        strict_extra=not ref.unknown_keys,
    )


def test_user_file_not_mutated(compat, user_lora) -> None:
    """``lora_state_dict(dict)`` on the user's tensors leaves the dict and tensors alone."""
    path, state_dict, found = user_lora
    pipe_cls = _pipe_cls(compat, found.arch)
    layout = load_layout(found.arch)
    before = fingerprint_inputs(state_dict)
    with compat.library_call():
        pipe_cls.lora_state_dict(state_dict, **_kwargs(pipe_cls, found.arch, layout))
    problems = input_mutations(before, state_dict)
    if problems:
        compat.detail(mutations=problems[:20])
        compat.finding(
            Outcome.INPUT_MUTATED, f"{len(problems)} change(s) to the caller's dict: {problems[0]}"
        )
