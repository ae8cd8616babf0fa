"""Non-diffusers LoRA files of the families (original-model and trainer names), per case.

``load[<family>-<layout>-<case>]``: a file in one layout of
:mod:`harness.inputs.families.layouts` (Wan's original names with PEFT or kohya tensor
names, musubi-tuner's ``lora_unet_`` form, Qwen-Image's ``diffusion_model.`` and kohya
forms, Flux2's ai-toolkit and kohya forms, Z-Image's five forms, HunyuanVideo's original
names under ``diffusion_model.`` / ``transformer.``, HiDream's and LTX-Video's
``diffusion_model.`` files), rank 4, on every block module the layout names in the
family's tiny model, saved as a safetensors file and loaded with the family pipeline's
``load_lora_weights``:

* ``complete`` - every module, ``.alpha`` = 2 != rank where the layout carries alpha:
  valid input, must load with the reference effect; a refusal is ``REFUSED``.
* ``no-alpha`` - the same without ``.alpha`` (scale 1), where the trainers writing the
  layout leave alpha out (never for kohya-style trainers, which always save it). Valid.
* ``partial-no-<module>`` - block 0's attention group less one module (Wan ``self_attn.k``,
  Qwen-Image ``attn.to_k``, Flux2 ``img_attn.qkv``, ...): the effect of the modules present,
  or a clear refusal naming a key or module of that group.
* ``stray-key`` - complete plus a module block 0 does not have (``bogus0``):
  applied-or-reported (a warning naming it), or a clear refusal naming it.
* ``with-<group>`` (``-no-alpha``) - complete plus a group of modules outside the blocks
  the layout can carry (Wan's head / embeddings, Wan I2V's image embedder, Z-Image's
  embedders and final layer, HunyuanVideo's embedders, token refiner, final modulation).
  Valid.
* ``with-diff_b`` - every module of every group, no alpha, each with its ``.diff_b`` (a full
  bias difference): valid; the biases must move by exactly that. ``with-head-diff`` -
  complete plus Wan's ``head.head`` as a full ``.diff`` + ``.diff_b`` and no pair (Wan2.2
  distill LoRAs): valid. ``with-modulation-diff`` - complete plus a ``.diff`` for a block's
  modulation table, which no converter rule places: judged as a stray key (applied or
  reported by name, or a clear refusal naming it).

``view[<family>-<layout>-<case>]``: layouts whose converter splits a fused layer at
hard-coded real widths (HunyuanVideo's single-block ``linear1``, Lumina2's
``attention.qkv``) cannot be read for the tiny model at all: a rank-2 file at the published
widths (layer shapes from a meta-device model) goes through the pipeline's
``lora_state_dict`` and what it hands back is compared module by module
(:func:`harness.drivers.lora.judge_view`), without loading.

Oracle: each targeted module's effective weight equals base + (alpha / rank) B A, read
from the file with the layout's own table (:mod:`harness.oracles.lora_layouts`; a fused
original layer's up rows split over its diffusers modules), never by a diffusers
converter; judged by :func:`harness.drivers.lora.judge_load`. A release without the
layout's converter still gets the row (the file is what users have); the record says
whether the converter exists (``converter_in_release``).
"""

from __future__ import annotations

import pytest

from harness.drivers.lora import judge_biases, judge_load, judge_view
from harness.drivers.lora_detector import read_converted, unpack
from harness.inputs.families.layouts import LAYOUT_LIST, Layout, expand, write_layout_lora
from harness.oracles.lora_layouts import layout_reference
from harness.scenarios.families import ALPHA, converter_in_release
from harness.scenarios.lora import refuse_unfilled_layers

ROWS = [(layout, case) for layout in LAYOUT_LIST for case in layout.cases()]
VIEWS = [(layout, case) for layout in LAYOUT_LIST for case in layout.view_cases()]
ADAPTER = "style"
#: Rank of the real-width view files (small: only the shapes' widths matter there).
VIEW_RANK = 2


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
    if case == "with-diff_b":
        built, ref = scene.layout_lora(
            layout.row, alpha=None, extras=tuple(n for n, _ in layout.extras), diffs=("diff_b",)
        )
        return built, ref, True, built.names(built.modules)
    if case in layout.diff_cases():
        kind = "full" if case.endswith(f"-{layout.full_diff.split('.')[0]}-diff") else "unplaced"
        diffs = ("full", "diff_b") if kind == "full" else ("unplaced",)
        built, ref = scene.layout_lora(layout.row, diffs=diffs)
        if kind == "full":
            return built, ref, True, built.names(built.modules)
        return built, ref, False, built.names([layout.unplaced_diff])
    if case.startswith("with-"):
        group = case.removeprefix("with-").removesuffix("-no-alpha")
        alpha = None if case.endswith("-no-alpha") else ALPHA
        built, ref = scene.layout_lora(layout.row, alpha=alpha, extras=(group,))
        return built, ref, True, built.names(built.modules)
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
    refuse_unfilled_layers(compat, pipe, "the load", "after ")
    observed = scene.observe(pipe)
    comparisons = scene.compare(observed, ref)
    status = judge_load(ref, comparisons, msgs, built.stray_keys, compat, scene.classes)
    if ref.bias_modules():
        bias_status = judge_biases(compat, scene, ref, scene.observe_bias(pipe), msgs)
        status = "OK-reported" if "reported" in (status + bias_status) else status
    compat.detail(status=status)


@pytest.mark.parametrize(
    "layout,case", VIEWS, ids=[f"{layout.row}-{case}" for layout, case in VIEWS]
)
def test_view(compat, layout: Layout, case: str) -> None:
    """A real-width file of a layout whose converter splits a fused layer at hard-coded
    widths, through the pipeline's ``lora_state_dict`` (the converter's output, not
    loaded): each diffusers module it reaches must carry the table's delta, none missing."""
    compat.param(family=layout.family, layout=layout.name, kind=case, format=layout.row)
    from harness.inputs.families.real_width import real_width_layers

    layers, pipeline_cls = real_width_layers(layout)
    omit: tuple[str, ...] = ()
    if case == "complete":
        compat.valid_input(f"{layout.trainer} file for {layout.family}, real widths")
    else:
        compat.may_reject(f"{case} {layout.row} file, real widths")
        omit = (layout.pinned_partial(),)
    alpha = ALPHA if layout.alpha else None
    built = write_layout_lora(layout, layers, VIEW_RANK, alpha, omit=omit, extras=())
    ref = layout_reference(built.state_dict, layout, "transformer", layers)
    if ref.unknown_keys:  # writer and reference disagree: our bug
        raise RuntimeError(f"reference could not place: {sorted(ref.unknown_keys)[:5]}")
    names = built.names(omit or built.modules)
    compat.detail(
        n_keys=len(built.state_dict),
        modules=len(built.modules),
        converter=layout.converter,
        converter_in_release=converter_in_release(layout.converter),
    )
    with compat.library_call(names=names) as msgs:
        result = pipeline_cls.lora_state_dict(dict(built.state_dict))
    state, alphas = unpack(result)
    converted = read_converted(state, alphas, inputs=set(built.state_dict))
    if converted.unconverted:
        compat.detail(unconverted=converted.unconverted[:10])
    judge_view(compat, ref, converted, "transformer", False, list(msgs))
