"""What ``save_pretrained`` wrote: every component's safetensors keys and tensors, read
with safetensors (never unpickled), to compare against the modules that were saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.scenarios.sharing.pairs import modules

#: Prefix torch.compile's OptimizedModule puts in front of every state-dict key.
COMPILED_PREFIX = "_orig_mod."

#: Files a safetensors save must not write.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def saved_tensors(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """component -> {key: tensor} from ``folder/<component>/*.safetensors``."""
    from safetensors.torch import load_file

    out: dict[str, dict[str, torch.Tensor]] = {}
    for path in sorted(folder.glob("*/*.safetensors")):
        out.setdefault(path.parent.name, {}).update(load_file(str(path)))
    return out


def pickle_files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES
    )


def unwrap(module: Any) -> Any:
    """The module behind a ``torch.compile`` wrapper (``OptimizedModule._orig_mod``)."""
    return getattr(module, "_orig_mod", module)


def save_problems(pipe: Any, folder: Path) -> dict[str, list[str]]:
    """Compare what was saved with the pipeline's modules: ``prefixed`` keys carrying
    ``_orig_mod.``, ``missing`` (in the module, not in the file), ``extra``, ``changed``
    values, ``pickles`` written despite safe serialization. Tied tensors that transformers
    de-duplicates on save count as present when a tensor with the same storage is saved."""
    saved = saved_tensors(folder)
    out: dict[str, list[str]] = {"prefixed": [], "missing": [], "extra": [], "changed": []}
    out["pickles"] = pickle_files(folder)
    for comp, module in modules(pipe).items():
        module = unwrap(module)
        file = saved.get(comp, {})
        out["prefixed"] += [f"{comp}/{k}" for k in file if COMPILED_PREFIX in k][:5]
        plain = {k.replace(COMPILED_PREFIX, ""): v for k, v in file.items()}
        state = module.state_dict()
        by_storage: dict[int, list[str]] = {}
        for k, v in state.items():
            by_storage.setdefault(v.untyped_storage().data_ptr(), []).append(k)
        for key, value in state.items():
            aliases = by_storage[value.untyped_storage().data_ptr()]
            hit = next((a for a in aliases if a in plain), None)
            if hit is None:
                out["missing"].append(f"{comp}/{key}")
            elif plain[hit].shape != value.shape or not torch.equal(plain[hit], value.cpu()):
                out["changed"].append(f"{comp}/{key}")
        out["extra"] += [f"{comp}/{k}" for k in plain if k not in state][:5]
    return out
