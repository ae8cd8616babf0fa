"""Wan beyond text-to-video: Wan 2.2's second expert, and T2V LoRAs in the I2V model.

``load_into[wan22-<expert>]``: a tiny ``WanPipeline`` with both experts (``transformer``,
``transformer_2``, ``boundary_ratio``; :mod:`harness.scenarios.wan_experts`), the
complete diffusers/PEFT file keyed ``transformer.`` as every published Wan 2.2 expert LoRA
is (alpha 2 in the header metadata where the release reads it), loaded

* ``transformer_2`` - with ``load_into_transformer_2=True``: the reference effect on
  ``transformer_2``, ``transformer`` untouched;
* ``transformer`` - as is: the reference effect on ``transformer``, ``transformer_2``
  untouched.

Valid input: any refusal is ``REFUSED``; a LoRA in the other expert moves weights the
reference leaves alone (WRONG_RESULT). UNSUPPORTED where the Wan pipeline takes no
``transformer_2`` (before 0.35, where ``load_into_transformer_2`` arrived with it).

``t2v_into_i2v[wan-i2v-<file>]``: a Wan T2V LoRA (no image branch: nothing on
``attn2.add_k_proj`` / ``add_v_proj``) loaded into the I2V pipeline (row ``wan-i2v``), what
users do with the many T2V LoRAs; the mixin pads such a file with zero image-branch pairs
(``_maybe_expand_t2v_lora_for_i2v``). ``peft``: diffusers-named, alpha 2 in the header
where read; ``original-downup-diff_b``: original names with ``.diff_b`` biases, no alpha.
Valid: the file's effect on the modules it names (biases too), the image branch untouched.

``norm_diffs[<layout>-with-<fill>norm-diff]``: what Wan LoRA extractions ship besides the
pairs (:mod:`harness.scenarios.wan_norm_diffs`): the layout's complete file, no alpha, plus a
full difference for every norm parameter of each block (original names:
``blocks.N.norm3.diff`` / ``.diff_b``, ``self_attn.norm_q.diff``, ``norm_k``, the
cross-attention's, I2V's ``norm_k_img``), random (a trained norm) or all zero (what
diffusers' converter assumes they are). Valid: the pairs' effect, and each norm parameter at
pristine + difference; a norm left pristine is DROPPED_KEYS unless a warning named its key.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.cell.classify import Unsupported
from harness.drivers.lora import judge_biases, judge_load
from harness.inputs.families.layouts import LAYOUTS, expand
from harness.scenarios.families import load_source
from harness.scenarios.lora import refuse_unfilled_layers
from harness.scenarios.wan_norm_diffs import judge_norm_diffs, norm_diff_file, norm_params

ROWS = {"transformer_2": {"load_into_transformer_2": True}, "transformer": {}}
ADAPTER = "style"
T2V_FILES = ("peft", "original-downup-diff_b")
#: The I2V cross-attention's image projections (what a T2V file has no pair for).
IMAGE_BRANCH = (".add_k_proj", ".add_v_proj")
#: Norm-difference rows: id -> (family row, layout of the pairs, how differences are filled).
NORM_DIFF_ROWS = {
    "wan-original-downup-with-norm-diff": ("wan", "wan-original-downup", "random"),
    "wan-original-downup-with-zero-norm-diff": ("wan", "wan-original-downup", "zero"),
    "wan-i2v-original-downup-with-norm-diff": ("wan-i2v", "wan-i2v-original-downup", "random"),
}


@pytest.fixture(scope="module")
def experts(family_zoo: Any) -> Any:
    """The two-expert scene, or the reason it does not exist in this release."""
    from harness.scenarios.wan_experts import experts_scene

    try:
        return experts_scene(family_zoo)
    except Unsupported as exc:
        return exc


@pytest.mark.parametrize("expert", list(ROWS), ids=[f"wan22-{e}" for e in ROWS])
def test_load_into(compat, experts, tmp_path, expert: str) -> None:
    """The file reaches ``expert`` and only it."""
    compat.param(family="wan22", kind=f"into-{expert}", format="peft")
    if isinstance(experts, Unsupported):
        raise Unsupported(str(experts))
    compat.detail(**experts.build_info)
    compat.valid_input(f"complete transformer.-keyed Wan 2.2 LoRA for {expert}")
    built, ref = experts.lora_for(expert, seed=3)
    source, kwargs = load_source(built, tmp_path)
    compat.detail(n_keys=len(built.state_dict), alpha_in=built.header is not None)
    pipe = experts.fresh()
    with compat.library_call(names=built.stems()) as msgs:
        pipe.load_lora_weights(source, adapter_name=ADAPTER, **kwargs, **ROWS[expert])
    comparisons = experts.compare(experts.observe(pipe), ref)
    status = judge_load(ref, comparisons, msgs, [], compat, experts.classes)
    compat.detail(status=status)


def _t2v_file(scene: Any, kind: str, folder: Any) -> tuple[Any, Any, Any, dict, list[str]]:
    """A T2V-shaped file for the I2V model (every block Linear but the image branch), its
    reference, and how to load it."""
    if kind == "peft":
        image = tuple(p for p in scene.targets() if p.endswith(IMAGE_BRANCH))
        built, ref = scene.lora(seed=5, omit=image)
        source, kwargs = load_source(built, folder)
        return built, ref, source, kwargs, built.stems()
    layout = LAYOUTS["wan-original-downup"]
    image = tuple(s for s in expand(layout, scene.layout[scene.component].layers) if "_img" in s)
    built, ref = scene.layout_lora(layout.row, seed=5, alpha=None, omit=image, diffs=("diff_b",))
    path = built.save(folder)
    return built, ref, str(folder), {"weight_name": path.name}, built.names(built.modules)


@pytest.mark.parametrize("kind", T2V_FILES, ids=[f"wan-i2v-{k}" for k in T2V_FILES])
def test_t2v_into_i2v(compat, family_scene, tmp_path, kind: str) -> None:
    """A T2V LoRA acts in the I2V model as in the T2V one; the image branch stays as it was."""
    compat.param(family="wan-i2v", kind=f"t2v-{kind}", format=kind)
    scene = family_scene("wan-i2v")
    compat.detail(**scene.build_info)
    compat.valid_input(f"Wan T2V LoRA ({kind}) loaded into the I2V pipeline")
    built, ref, source, kwargs, names = _t2v_file(scene, kind, tmp_path)
    compat.detail(n_keys=len(built.state_dict))
    pipe = scene.fresh()
    with compat.library_call(names=names) as msgs:
        pipe.load_lora_weights(source, adapter_name=ADAPTER, **kwargs)
    refuse_unfilled_layers(compat, pipe, "the load", "after ")
    comparisons = scene.compare(scene.observe(pipe), ref)
    status = judge_load(ref, comparisons, msgs, [], compat, scene.classes)
    if ref.bias_modules():
        bias_status = judge_biases(compat, scene, ref, scene.observe_bias(pipe), msgs)
        status = "OK-reported" if "reported" in (status + bias_status) else status
    compat.detail(status=status)


@pytest.mark.parametrize("row", list(NORM_DIFF_ROWS))
def test_norm_diffs(compat, family_scene, tmp_path, row: str) -> None:
    """The pairs act as the reference and every norm parameter moves by its difference."""
    family, layout_row, fill = NORM_DIFF_ROWS[row]
    compat.param(family=family, kind=f"norm-diff-{fill}", format=layout_row)
    scene = family_scene(family)
    compat.detail(**scene.build_info)
    compat.valid_input(f"{layout_row} file with {fill} norm differences (Wan extractions)")
    file = norm_diff_file(scene, layout_row, fill, seed=9)
    path = file.built.save(tmp_path)
    compat.detail(n_keys=len(file.built.state_dict), norm_keys=len(file.norms.entries))
    pipe = scene.fresh()
    before = norm_params(pipe, scene, file)
    with compat.library_call(names=file.names()) as msgs:
        pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name=ADAPTER)
    refuse_unfilled_layers(compat, pipe, "the load", "after ")
    comparisons = scene.compare(scene.observe(pipe), file.ref)
    status = judge_load(file.ref, comparisons, msgs, [], compat, scene.classes)
    norm_status = judge_norm_diffs(compat, file, before, norm_params(pipe, scene, file), msgs)
    compat.detail(status="OK-reported" if "reported" in (status + norm_status) else status)
