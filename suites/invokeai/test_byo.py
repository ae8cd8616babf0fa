"""Bring your own Flux LoRA to a downstream app: what ``adapter-compat check FILE --target
invokeai`` runs on a user's file in each release of the app.

The file arrives in ``ADAPTER_COMPAT_USER_FILE`` (NOT_RUN without it, the state of a plain
suite run), is recognised by the same stdlib detector as ``suites/lora/test_byo.py`` (NOT_RUN
for a file that is not a Flux LoRA, or one whose modules the harness cannot place: never a
pass on nothing), goes through the app's own probe and converter, and is judged module by
module against the reference computed from the file's tensors on the committed full-size
Flux layout. A complete user file is valid input: a refusal is REFUSED.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.byo.user_lora import read_user_lora
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.checkpoints.lora.manifests import load_layout
from harness.loaders.judge import judge
from harness.oracles.compare import fingerprint_inputs, input_mutations
from harness.oracles.lora import parse
from harness.protocol.outcomes import Outcome

ARCH = "flux"


@pytest.fixture
def user_flux_lora(compat: Any) -> tuple[Any, dict, Any]:
    """(path, state dict, detection); NOT_RUN unless a placeable Flux LoRA was given."""
    path, state_dict, found = read_user_lora(compat)
    if found.arch != ARCH:
        compat.not_run(f"{path.name} is a {found.arch} LoRA; downstream loaders here load Flux")
    return path, state_dict, found


def test_user_file(compat: Any, loader_under_test: Any, user_flux_lora: Any) -> None:
    """The app converts the user's file to the reference effect on every module it names,
    and leaves the caller's dict as it was."""
    spec, loader = loader_under_test
    path, state_dict, found = user_flux_lora
    compat.param(target=spec.name)
    compat.require(not isinstance(loader, str), f"{spec.name} cannot run here: {loader}")
    compat.detail(loader_version=loader.version)
    claim = spec.claim(loader.version)
    compat.require(
        claim is not None and found.format in claim.formats,
        f"{spec.name} {loader.version} claims no {found.format} Flux LoRA",
    )
    layout = load_layout(ARCH)
    ref = parse(state_dict, FORMATS[found.format], ARCH, layout)
    compat.valid_input(f"the user's {found.format} Flux LoRA {path.name}")
    before = fingerprint_inputs(state_dict)
    try:
        with compat.library_call(names=sorted({k.rsplit(".", 2)[0] for k in state_dict})) as msgs:
            converted = loader.convert(state_dict, None)
    finally:
        changed = input_mutations(before, state_dict)
    if changed:
        compat.detail(mutations=changed[:20])
        compat.finding(Outcome.INPUT_MUTATED, f"{len(changed)} change(s) to the caller's dict")
    deltas = loader.deltas(converted)
    compat.detail(
        status=judge(compat, ref, deltas, spec.naming, layout, list(ref.unknown_keys), msgs)
    )
