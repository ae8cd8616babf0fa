"""MiniMax-H3's second DiT partition: a file named for ``transformer.`` reaching
``transformer_ref``.

MiniMax-H3 ships two partitions with the same module names: ``transformer`` (the ``t2va``
/ ``fl2va`` workflows) and ``transformer_ref`` (``ref2va``). Every published H3 LoRA is
keyed ``transformer.``; the mixin's documented routing sends such a file into
``transformer_ref`` when the pipeline holds that partition alone (``workflow="ref2va"``)
or when the caller passes ``load_into_transformer_ref=True``, through
``load_lora_into_transformer_ref`` with the file's prefix (``transformer``) differing
from the target.

``load_routed[minimax-h3-ref-<how>]``: the ``ref2va`` modular pipeline (tiny
``transformer_ref``), the family's complete diffusers/PEFT file written under the
``transformer.`` prefix (alpha 2 in the header metadata where the release reads it),
loaded as is (``auto``) or with ``load_into_transformer_ref=True`` (``flag``). Valid
input: the reference effect on ``transformer_ref``; any refusal is ``REFUSED``.
"""

from __future__ import annotations

import pytest

from harness.drivers.lora import judge_load
from harness.drivers.probe import accepts
from harness.inputs.families.lora_files import ADAPTER_METADATA_KEY, write_lora
from harness.oracles.lora import Reference
from harness.oracles.lora_peft import adapter_metadata, peft_reference
from harness.scenarios.families import ALPHA, RANK, load_source, reads_adapter_metadata

FAMILY = "minimax-h3-ref"
#: The prefix every published MiniMax-H3 LoRA carries (the first partition's name).
FILE_PREFIX = "transformer"
ADAPTER = "style"
HOW = {"auto": {}, "flag": {"load_into_transformer_ref": True}}


def _routed_file(scene):
    """The complete file under ``transformer.`` and its reference, re-aimed at the
    partition the scene's component is (same module names, so the same deltas)."""
    alpha = ALPHA if reads_adapter_metadata() else None
    built = write_lora(FILE_PREFIX, scene.targets(), RANK, alpha, seed=6)
    meta = adapter_metadata(built.header, ADAPTER_METADATA_KEY)
    read = peft_reference(built.state_dict, FILE_PREFIX, scene.layout[scene.component].layers, meta)
    ref = Reference(format=read.format, unknown_keys=list(read.unknown_keys))
    ref.terms = {(scene.component, path): terms for (_, path), terms in read.terms.items()}
    return built, ref


@pytest.mark.parametrize("how", list(HOW), ids=[f"{FAMILY}-{h}" for h in HOW])
def test_load_routed(compat, family_scene, tmp_path, how: str) -> None:
    """A ``transformer.``-keyed file lands on ``transformer_ref`` (and only there)."""
    compat.param(family=FAMILY, kind=f"routed-{how}", format="peft")
    scene = family_scene(FAMILY)
    compat.detail(**scene.build_info)
    compat.valid_input(f"complete {FILE_PREFIX}.-keyed MiniMax-H3 file, ref2va pipeline")
    built, ref = _routed_file(scene)
    source, kwargs = load_source(built, tmp_path)
    pipe = scene.fresh()
    if how == "flag" and not accepts(type(pipe).load_lora_weights, "load_into_transformer_ref"):
        compat.not_run("load_lora_weights takes no load_into_transformer_ref= in this release")
    compat.detail(n_keys=len(built.state_dict), alpha_in=built.header is not None)
    with compat.library_call(names=built.stems()) as msgs:
        pipe.load_lora_weights(source, adapter_name=ADAPTER, **kwargs, **HOW[how])
    comparisons = scene.compare(scene.observe(pipe), ref)
    status = judge_load(ref, comparisons, msgs, [], compat, scene.classes)
    compat.detail(status=status)
