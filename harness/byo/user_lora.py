"""In the cell: read the user's LoRA file and decide whether the checks can judge it.

Shared by every suite that checks a user's file (``suites/lora/test_byo.py``,
``suites/invokeai/test_byo.py``): NOT_RUN (via ``compat``) when none was given, when the
data cannot be read (the user's file, never our error), when it is no LoRA layout this
harness reads, a model it has no layout for, or "not understood" (no module placed, or
most keys unplaced): never a pass on nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.byo import user_file
from harness.byo.lora import Detection, detect, placement, unsupported_arch


def read_user_lora(compat: Any) -> tuple[Path, dict[str, Any], Detection]:
    """(path, state dict, detection) of a user's LoRA the checks can judge."""
    path = user_file(compat)
    from safetensors.torch import load_file

    try:
        state_dict = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged file is the user's, not our error
        compat.not_run(f"{path.name}: unreadable safetensors data ({type(exc).__name__}: {exc})")
    found = detect(list(state_dict), {k: list(v.shape) for k, v in state_dict.items()})
    if found is None:
        compat.not_run(f"{path.name} is not a LoRA layout this harness reads")
    compat.param(file=path.name, format=found.format, arch=found.arch or "?")
    compat.detail(architecture=found.evidence.summary())
    problem = unsupported_arch(found)
    if problem:
        compat.not_run(f"{path.name}: {problem}")
    placed = placement(found, list(state_dict))
    compat.detail(modules_placed=placed.modules, keys_unplaced=len(placed.unplaced))
    if not placed.understood:
        compat.not_run(f"{path.name}: {placed.verdict(found.arch)}")
    return path, state_dict, found
