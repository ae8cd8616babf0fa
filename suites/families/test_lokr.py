"""LoKr files of the families (Flux2, Z-Image) in every spelling diffusers 0.42.1 routes.

``load[<family>-lokr-<spelling>-<case>]``: a LoKr file (:mod:`harness.inputs.families.lokr`:
Flux2's LyCORIS ``lycoris_transformer_blocks_0_attn_to_q``, ai-toolkit's BFL
``diffusion_model.double_blocks.0.img_attn.qkv``, bare dotted diffusers paths and peft's
``transformer.`` naming; Z-Image's ai-toolkit ``diffusion_model.layers.0.attention.to_q``),
on every block module the spelling names in the family's tiny model, saved as a
safetensors file and loaded with the pipeline's ``load_lora_weights``:

* ``complete-<form>`` - every module; ``full``: both factors whole (LyCORIS full-matrix
  mode, its forced alpha saved), ``lowrank``: ``lokr_w1`` whole and ``lokr_w2_a/_b``
  (rank 2, alpha 1 where the spelling carries alpha), ``both-lowrank``: ``lokr_w1_a/_b``
  too where w1 is wide enough. Valid input: the reference effect; any refusal is REFUSED.
* ``no-alpha`` - the low-rank file without ``.alpha`` (scale 1), where alpha is optional.
* ``partial-no-<module>`` - block 0's attention group less one module (``attn.to_k``;
  ai-toolkit's fused ``img_attn.qkv``): the effect of what is present, or a clear refusal
  naming a key or module of that group.
* ``stray-key`` - the low-rank file plus a module block 0 lacks (``bogus0``):
  applied-or-reported, or a clear refusal naming it.

Oracle: ``scale * kron(W1, W2)`` per module from the file alone
(:mod:`harness.oracles.lokr`; a fused qkv's delta split by rows), compared with what each
Linear computes - for an attention the library fused, the rows of its fused projection
(:func:`harness.scenarios.family_lokr.observe_computed`); judged by
:func:`harness.drivers.lora.judge_load`. A release without the spelling's LoKr route
still gets the row (the file is what users have); the record says whether the release
loads LoKr at all (``lokr_in_release``), whether the spelling's converter exists
(``converter_in_release``) and which attentions the load fused (``fused_attentions``).
"""

from __future__ import annotations

import pytest

from harness.drivers.lora import judge_load
from harness.inputs.families.lokr import LOKR_LAYOUT_LIST, LokrLayout, lokr_modules
from harness.scenarios.families import converter_in_release
from harness.scenarios.family_lokr import (
    fused_attentions,
    lokr_file,
    lokr_in_release,
    observe_computed,
)

ROWS = [(layout, case) for layout in LOKR_LAYOUT_LIST for case in layout.cases()]
ADAPTER = "style"


def _case(scene, layout: LokrLayout, case: str):
    """The file of a row, whether it is valid input, and what a refusal must name."""
    if case.startswith("complete-"):
        built, ref = lokr_file(scene, layout.row, form=case.removeprefix("complete-"))
        return built, ref, True, built.names(built.modules)
    if case == "no-alpha":
        built, ref = lokr_file(scene, layout.row, with_alpha=False)
        return built, ref, True, built.names(built.modules)
    if case == "stray-key":
        built, ref = lokr_file(scene, layout.row, stray=True)
        return built, ref, False, built.names([layout.stray])
    missing, group = layout.partial
    built, ref = lokr_file(scene, layout.row, omit=(missing,))
    names = built.names(group)
    table = lokr_modules(layout, scene.layout[scene.component].layers)
    paths = [t for source in group for t in table.get(source, ())]
    names += [*paths, *(f"{scene.component}.{p}" for p in paths)]
    return built, ref, False, names


@pytest.mark.parametrize("layout,case", ROWS, ids=[f"{layout.row}-{case}" for layout, case in ROWS])
def test_load(compat, family_scene, tmp_path, layout: LokrLayout, case: str) -> None:
    """One deterministic LoKr file of one spelling and case, judged by what that case owes."""
    compat.param(family=layout.family, layout=f"lokr-{layout.name}", kind=case, format=layout.row)
    scene = family_scene(layout.family)
    compat.detail(**scene.build_info)
    built, ref, valid, names = _case(scene, layout, case)
    if valid:
        compat.valid_input(f"{layout.trainer} LoKr file for {layout.family} ({case})")
    else:
        compat.may_reject(f"{case} {layout.row} file")
    path = built.save(tmp_path)
    compat.detail(
        n_keys=len(built.state_dict),
        modules=len(built.modules),
        form=built.form.notes,
        alpha_in=".alpha keys" if any(k.endswith(".alpha") for k in built.state_dict) else "none",
        converter=layout.converter or "none (peft keys)",
        converter_in_release=converter_in_release(layout.converter) if layout.converter else None,
        lokr_in_release=lokr_in_release(),
    )
    pipe = scene.fresh()
    with compat.library_call(names=names) as msgs:
        pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name=ADAPTER)
    compat.detail(fused_attentions=fused_attentions(scene, pipe))
    comparisons = scene.compare(observe_computed(scene, pipe), ref)
    status = judge_load(ref, comparisons, msgs, built.stray_keys, compat, scene.classes)
    compat.detail(status=status)
