"""DoRA LoRAs: the magnitude vector must take effect, or the loader must say it did not.

DoRA (weight-decomposed LoRA) stores, next to each down/up pair, a per-output-row magnitude
``m``: PEFT / diffusers files as ``<module>.lora_magnitude_vector`` (shape ``(out,)``),
kohya / LyCORIS files as ``<stem>.dora_scale`` (``(out, 1)``). A module then acts with
``diag(m / ||W + s B A||_row) (W + s B A)`` (harness.oracles.lora, from PEFT's definition).

Per file (every Linear layer of the denoiser's blocks; text encoders are left out so the
transformers-5 text-encoder failures of 0.38-0.40 do not mask the DoRA result):

* OK - every module acts with the DoRA weight;
* OK (reported) - the modules act as the plain LoRA and a warning said the DoRA keys were
  filtered (diffusers' ``dora_scale`` filter);
* SILENT_NOOP - the plain LoRA was applied, the magnitudes ignored, no warning;
* CLEAR_ERROR - refused with a message naming the keys (accepted);
* DROPPED_KEYS / WRONG_RESULT / CRASH - findings.
"""

from __future__ import annotations

import pytest

from harness.drivers.lora import judge_dora
from harness.inputs.checkpoints.lora.cases import Case, full_case, realise
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.checkpoints.lora.layouts import DENOISER
from harness.oracles.lora import parse

ARCHES = ("sd15", "sdxl", "sd3", "flux")
#: The kind of a DoRA key, in the file's and in diffusers' spelling.
MAGNITUDE_NAMES = ("dora_scale", "lora_magnitude_vector")
CASES = [
    (arch, name)
    for name, fmt in FORMATS.items()
    if fmt.magnitude
    for arch in ARCHES
    if fmt.supports(arch)
]


def dora_file(scene, fmt: str, rank: int = 4, seed: int = 0):
    """Every DoRA-able denoiser group (Flux: the blocks; the layers outside them are a
    separate kohya finding), alpha != rank where the format has alphas."""
    lora_format = FORMATS[fmt]
    case = full_case(lora_format, scene.arch, scene.layout, rank=rank, alpha=2.0, seed=seed)
    picks = [
        p
        for p in case.picks
        if p.group.component == DENOISER[scene.arch]
        and (scene.arch != "flux" or "blocks." in p.group.native)
    ]
    built = realise(lora_format, scene.arch, scene.layout, Case(picks, 0, "float32", seed, 0))
    return built, parse(built.state_dict, lora_format, scene.arch, scene.layout)


@pytest.mark.parametrize("arch,fmt", CASES, ids=[f"{a}-{f}" for a, f in CASES])
def test_dora_load_matches_reference(compat, scene_for, arch: str, fmt: str) -> None:
    compat.param(arch=arch, format=fmt)
    compat.valid_input(f"complete {fmt} file for {arch}")
    scene = scene_for(arch)
    built, ref = dora_file(scene, fmt)
    compat.require(ref.magnitudes, f"{fmt} has no DoRA-able layer in the tiny {arch} model")
    if ref.unknown_keys:
        raise RuntimeError(f"reference cannot place {ref.unknown_keys[:3]}")
    compat.detail(n_keys=len(built.state_dict), dora_modules=len(ref.magnitudes))
    pipe = scene.fresh()
    # A refusal that names the DoRA keys by their kind is clear (SDXL kohya files are
    # renamed to diffusers blocks before the message is written).
    names = built.stems() + list(MAGNITUDE_NAMES)
    with compat.library_call(names=names) as msgs:
        pipe.load_lora_weights(dict(built.state_dict), adapter_name="dora")
        observed = scene.observe(pipe)
    status = judge_dora(scene, ref, observed, msgs, compat)
    compat.detail(status=status)
