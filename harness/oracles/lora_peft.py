"""Reference effect of a diffusers/PEFT-named LoRA file, read from its keys and header.

For a family's denoiser file (``<component>.<path>.lora_A.weight`` / ``.lora_B.weight``):
each module's delta is ``scale * B @ A`` with ``scale = alpha / rank``, ``rank`` the row
count of ``A`` and ``alpha`` from diffusers' adapter metadata in the safetensors header
(``lora_adapter_metadata`` JSON: ``<component>.lora_alpha``, per-module overrides in
``<component>.alpha_pattern``); no metadata means ``alpha = rank`` (scale 1). A pair for a
module the model does not have, or a lone ``A`` / ``B``, goes to ``unknown_keys``.

Independent of diffusers' loaders: this parses the file the way the PEFT naming defines
it, and hands back the same :class:`Reference` the LoRA suites judge with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

import torch

from harness.oracles.lora import Reference, Term

_KEY = re.compile(r"^(?P<component>[^.]+)\.(?P<path>.+)\.(?P<role>lora_A|lora_B)\.weight$")


def adapter_metadata(header: Mapping[str, str] | None, key: str) -> dict[str, Any]:
    """The parsed ``key`` entry of a safetensors header ({} when absent)."""
    if not header or key not in header:
        return {}
    return dict(json.loads(header[key]))


def peft_reference(
    state_dict: Mapping[str, torch.Tensor],
    component: str,
    modules: Collection[str],
    metadata: Mapping[str, Any] | None = None,
) -> Reference:
    """Expected per-module terms of a PEFT-named file on ``component`` whose Linear
    modules are ``modules``; ``metadata`` is the parsed adapter metadata (or None)."""
    meta = dict(metadata or {})
    alpha = meta.get(f"{component}.lora_alpha")
    pattern = dict(meta.get(f"{component}.alpha_pattern") or {})
    pairs: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    ref = Reference(format="peft-family")
    for key, value in state_dict.items():
        match = _KEY.match(key)
        if match is None or match["component"] != component or match["path"] not in modules:
            ref.unknown_keys.append(key)
            continue
        pairs.setdefault(match["path"], {})[match["role"]] = (key, value)
    for path, roles in pairs.items():
        if set(roles) != {"lora_A", "lora_B"}:
            ref.unknown_keys += [k for k, _ in roles.values()]
            continue
        (down_key, down), (up_key, up) = roles["lora_A"], roles["lora_B"]
        rank = down.shape[0]
        module_alpha = _pattern_alpha(pattern, path)
        if module_alpha is None:
            module_alpha = float(alpha) if alpha is not None else float(rank)
        ref.terms[(component, path)] = [
            Term(
                down.detach().to("cpu", torch.float64),
                up.detach().to("cpu", torch.float64),
                module_alpha / rank,
                (down_key, up_key),
                up.dtype,
            )
        ]
    return ref


def _pattern_alpha(pattern: Mapping[str, Any], path: str) -> float | None:
    """PEFT's ``alpha_pattern``: a key matches a module path it ends (at a dot)."""
    for key, value in pattern.items():
        bare = key.lstrip("^")
        if path == bare or path.endswith("." + bare):
            return float(value)
    return None
