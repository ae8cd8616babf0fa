"""The lifecycle state machine as one check per architecture and rule family.

``lora``: LoRA rules only (load peft/kohya with varying rank, alpha, targets; hotswap with
and without ``enable_lora_hotswap``; set_adapters; fuse/unfuse; disable/enable; delete;
unload; set_lora_device; save + reload) on denoiser-only files. ``text-encoders``: the same
rules on files that also carry text-encoder layers. ``lora-ip`` adds IP-Adapter load / swap
/ unload (sd15, sdxl) to the denoiser-only rules. Kept apart so one broken path (an
IP-Adapter width switch, a text-encoder load) does not hide the others' findings.
See harness/scenarios/lifecycle/ for the model, semantics and reproduction scripts.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.drivers.lifecycle import available_rules, load_activates
from harness.scenarios.lifecycle import scripts
from harness.scenarios.lifecycle.machine import (
    FAMILIES,
    LoraBank,
    MachineContext,
    ip_entries,
    machine_budget,
    run_machine,
)

pytestmark = pytest.mark.filterwarnings("ignore")

CASES = [
    (arch, family)
    for arch in ("sd15", "sdxl", "flux")
    for family in FAMILIES
    if not (arch == "flux" and FAMILIES[family][1])  # no IP-Adapter rules for Flux
]


@pytest.mark.parametrize("arch,family", CASES, ids=[f"{a}-{f}" for a, f in CASES])
def test_state_machine(
    compat: Any, life_scene: Any, life_ipa: Any, device: Any, arch: str, family: str
) -> None:
    """After every step of any sequence the pipeline equals the pure model's state."""
    compat.param(arch=arch, family=family)
    scene = life_scene(arch)  # our zoo build and copy: their failures are ours
    pipe = scene.fresh()
    rules = available_rules(pipe, arch)
    compat.require(rules["load"], f"{type(pipe).__name__} has no load_lora_weights")
    if FAMILIES[family][1]:
        compat.require(rules["ip_adapter"], f"{type(pipe).__name__} has no IP-Adapter loader")
    ctx = MachineContext(
        compat=compat,
        arch=arch,
        scene=scene,
        bank=LoraBank(scene),
        rules=rules,
        device=device,
        ipa=life_ipa if FAMILIES[family][1] else None,
        family=family,
        ip_entries=ip_entries(arch) if FAMILIES[family][1] else (),
        activates=load_activates(),
    )
    compat.detail(load_activates=ctx.activates)
    run_machine(ctx, machine_budget(), scripts.script)
