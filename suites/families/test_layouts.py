"""Non-diffusers LoRA files of the families (original-model and trainer names), per case.

``load[<family>-<layout>-<case>]``: a file in one layout of
:mod:`harness.inputs.families.layouts` (Wan's original names with PEFT or kohya tensor
names, musubi-tuner's ``lora_unet_`` form, Qwen-Image's ``diffusion_model.`` and kohya
forms, Flux2's ai-toolkit and kohya forms), rank 4, on every block module the layout names
in the family's tiny model, saved as a safetensors file and loaded with the family
pipeline's ``load_lora_weights``:

* ``complete`` - every module, ``.alpha`` = 2 != rank where the layout carries alpha:
  valid input, must load with the reference effect; a refusal is ``REFUSED``.
* ``no-alpha`` - the same without ``.alpha`` (scale 1), where the trainers writing the
  layout leave alpha out (never for kohya-style trainers, which always save it). Valid.
* ``partial-no-<module>`` - block 0's attention group less one module (Wan ``self_attn.k``,
  Qwen-Image ``attn.to_k``, Flux2 ``img_attn.qkv``): the effect of the modules present,
  or a clear refusal naming a key or module of that group.
* ``stray-key`` - complete plus a module block 0 does not have (``bogus0``):
  applied-or-reported (a warning naming it), or a clear refusal naming it.

Oracle: each targeted module's effective weight equals base + (alpha / rank) B A, read
from the file with the layout's own table (:mod:`harness.oracles.lora_layouts`; a fused
original layer's up rows split over its diffusers modules), never by a diffusers
converter; judged by :func:`harness.drivers.lora.judge_load`. A release without the
layout's converter still gets the row (the file is what users have); the record says
whether the converter exists (``converter_in_release``).
"""

from __future__ import annotations

import pytest

from harness.drivers.lora import judge_load
from harness.inputs.families.layouts import LAYOUT_LIST, Layout, expand
from harness.scenarios.families import converter_in_release

ROWS = [(layout, case) for layout in LAYOUT_LIST for case in layout.cases()]
ADAPTER = "style"


def _case(scene, layout: Layout, case: str):
    """The file of a row, whether it is valid input, and what a refusal must name."""
    if case == "complete":
        built, ref = scene.layout_lora(layout.row)
        return built, ref, True, built.names(built.modules)
    if case == "no-alpha":
        built, ref = scene.layout_lora(layout.row, alpha=None)
        return built, ref, True, built.names(built.modules)
    if case == "stray-key":
        built, ref = scene.layout_lora(layout.row, stray=True)
        return built, ref, False, built.names([layout.stray])
    missing, group = layout.partial
    built, ref = scene.layout_lora(layout.row, omit=(missing,))
    names = built.names(group)
    table = expand(layout, scene.layout[scene.component].layers)
    paths = [t for source in group for t in table.get(source, ())]
    names += [*paths, *(f"{scene.component}.{p}" for p in paths)]
    return built, ref, False, names


@pytest.mark.parametrize("layout,case", ROWS, ids=[f"{layout.row}-{case}" for layout, case in ROWS])
def test_load(compat, family_scene, tmp_path, layout: Layout, case: str) -> None:
    """One deterministic file of one layout and case, judged by what that case owes."""
    compat.param(family=layout.family, layout=layout.name, kind=case, format=layout.row)
    scene = family_scene(layout.family)
    compat.detail(**scene.build_info)
    built, ref, valid, names = _case(scene, layout, case)
    if valid:
        compat.valid_input(f"{layout.trainer} file for {layout.family} ({case})")
    else:
        compat.may_reject(f"{case} {layout.row} file")
    path = built.save(tmp_path)
    compat.detail(
        n_keys=len(built.state_dict),
        modules=len(built.modules),
        alpha_in=".alpha keys" if any(k.endswith(".alpha") for k in built.state_dict) else "none",
        converter=layout.converter,
        converter_in_release=converter_in_release(layout.converter),
    )
    pipe = scene.fresh()
    with compat.library_call(names=names) as msgs:
        pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name=ADAPTER)
    observed = scene.observe(pipe)
    comparisons = scene.compare(observed, ref)
    status = judge_load(ref, comparisons, msgs, built.stray_keys, compat, scene.classes)
    compat.detail(status=status)
