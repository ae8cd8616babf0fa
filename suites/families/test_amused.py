"""Amused: ``AmusedLoraLoaderMixin``'s classmethods, the route its users take.

No pipeline inherits the mixin in any release, so the family table (and every pipeline
row) leaves it out; diffusers' ``examples/amused/train_amused.py`` calls its classmethods on
bare models instead. These rows do the same on a tiny ``UVit2DModel`` and a tiny CLIP text
encoder (:mod:`harness.inputs.families.amused`) and judge the per-Linear effect against the
reference of the family rows (base + (alpha / rank) B A, every other Linear unmoved):

* ``load[amused-<component>]``: a diffusers/PEFT-named file (rank 4, no alpha: scale 1)
  through the example's resume hook (``lora_state_dict`` + ``load_lora_into_text_encoder`` +
  ``load_lora_into_transformer``);
* ``save_reload[amused-alpha-<eq|ne>-rank]``: both models trained-as-the-example-does
  (``add_adapter(LoraConfig(r=4, lora_alpha))``, the file's tensors as trained values), its
  checkpoint hook (``get_peft_model_state_dict`` + one ``save_lora_weights`` call), its
  resume hook into fresh models: the adapter's effect. ``alpha = rank`` checks the route;
  ``alpha != rank`` (the example trains r=16, alpha=32) whether the alpha survives it.

Every input is valid: a refusal is REFUSED. UNSUPPORTED where the mixin is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cell.classify import Finding
from harness.scenarios.amused import RANK, effect_ratio, load_hook, save_hook

COMPONENTS = ("transformer", "text_encoder")
#: row id -> the adapter's alpha (rank 4)
ALPHAS = {"alpha-eq-rank": float(RANK), "alpha-ne-rank": 2.0}


@pytest.fixture(scope="module")
def amused_scene(device: Any, dtype: Any) -> Any:
    from harness.inputs.families.amused import AmusedZoo
    from harness.scenarios.amused import amused_scene_cache

    return amused_scene_cache(AmusedZoo(device=device, dtype=dtype))


def _scene(compat: Any, amused_scene: Any) -> Any:
    scene = amused_scene()  # Unsupported (grey) without the mixin
    compat.detail(**scene.build_info)
    return scene


@pytest.mark.parametrize("component", COMPONENTS, ids=[f"amused-{c}" for c in COMPONENTS])
def test_load(compat: Any, amused_scene: Any, tmp_path: Path, component: str) -> None:
    """A file for one model through the example's resume hook: the reference effect on it,
    the other model unmoved."""
    compat.param(family="amused", component=component, format="peft")
    scene = _scene(compat, amused_scene)
    files, ref = scene.lora((component,), seed=11)
    path = files[component].save(tmp_path)
    models = scene.fresh()
    compat.valid_input(f"a complete diffusers/PEFT LoRA file for the {component}")
    with compat.library_call(names=files[component].stems()):
        load_hook(scene.mixin, models, str(tmp_path), weight_name=path.name)
    scene.expect_effect(compat, models, ref, "the resume hook's load")


@pytest.mark.parametrize("alpha", list(ALPHAS), ids=[f"amused-{a}" for a in ALPHAS])
def test_save_reload(compat: Any, amused_scene: Any, tmp_path: Path, alpha: str) -> None:
    """Trained adapters on both models -> the checkpoint hook -> the resume hook into fresh
    models: the trained adapters' effect (alpha / rank included)."""
    compat.param(family="amused", component="both", format="peft", scenario=alpha)
    scene = _scene(compat, amused_scene)
    files, ref = scene.lora(COMPONENTS, seed=13, alpha=ALPHAS[alpha])
    trained = scene.fresh()
    compat.valid_input(f"the training example's checkpoint and resume hooks ({alpha})")
    with compat.library_call():
        for component in COMPONENTS:
            scene.train_adapter(trained, component, files[component], ALPHAS[alpha])
    scene.expect_effect(compat, trained, ref, "training (add_adapter + the file's values)")
    with compat.library_call():
        save_hook(scene.mixin, trained, tmp_path)
    saved = sorted(p.name for p in tmp_path.iterdir())
    compat.detail(saved=saved)
    reloaded = scene.fresh()
    with compat.library_call():
        load_hook(scene.mixin, reloaded, str(tmp_path))
    try:
        scene.expect_effect(compat, reloaded, ref, "save_lora_weights + the resume hook")
    except Finding as exc:
        ratio = effect_ratio(scene, reloaded, ref)
        compat.detail(effect_over_trained=round(ratio, 4))
        raise Finding(exc.outcome, f"{exc} (the effect is {ratio:.3g} x the trained one)") from None
