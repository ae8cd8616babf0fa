"""What ``save_pretrained`` wrote: every component's safetensors keys and tensors, read
with safetensors (never unpickled), to compare against the modules that were saved; and the
save -> reload round trip of a pair, judged (shared by the persistence and compile checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.oracles.compare import outputs_close
from harness.protocol.outcomes import Outcome
from harness.scenarios.sharing.pairs import modules, run_member
from harness.scenarios.sharing.state import storage_overlap

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


def judge_saved(compat: Any, label: str, pipe: Any, folder: Any) -> None:
    """Findings for a save that lost, renamed, changed or pickled tensors."""
    problems = save_problems(pipe, folder)
    compat.detail(**{f"{label}_saved": {k: v[:8] for k, v in problems.items() if v}})
    if problems["prefixed"]:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"{label}: saved keys carry the torch.compile prefix: {problems['prefixed'][:3]}",
        )
    if problems["missing"]:
        compat.finding(
            Outcome.DROPPED_KEYS, f"{label}: tensors not saved: {problems['missing'][:4]}"
        )
    if problems["changed"] or problems["extra"]:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"{label}: saved tensors differ: {(problems['changed'] + problems['extra'])[:4]}",
        )
    if problems["pickles"]:
        compat.finding(
            Outcome.WRONG_RESULT,
            f"{label}: safe_serialization=True wrote pickle files {problems['pickles'][:3]}",
        )


def save_and_reload(compat: Any, pair: Any, root: Any) -> tuple[Any, Any]:
    """save_pretrained both members (safetensors), judge the files, load both back."""
    loaded = []
    for label, pipe in (("first", pair.a), ("second", pair.b)):
        folder = root / label
        with compat.library_call():
            pipe.save_pretrained(str(folder), safe_serialization=True)
        judge_saved(compat, label, pipe, folder)
        with compat.library_call():
            again = type(pipe).from_pretrained(str(folder))
            again.set_progress_bar_config(disable=True)
        loaded.append(again)
    return loaded[0], loaded[1]


def judge_reloaded(compat: Any, world: Any, a: Any, b: Any, expected: tuple[Any, Any]) -> None:
    overlap = storage_overlap(a, b)
    compat.detail(reloaded_overlap=overlap[:8])
    if overlap:
        compat.finding(Outcome.STALE_STATE, f"the reloaded pipelines share state: {overlap[:3]}")
    with compat.library_call():
        got = (run_member(a), run_member(b))
    deltas = []
    for got_x, want in zip(got, expected, strict=True):
        same, delta = outputs_close(got_x, want, world.dtype, exact=True)
        deltas.append(delta)
    compat.detail(reload_output_diff=deltas)
    if any(d != 0.0 for d in deltas):
        compat.finding(
            Outcome.WRONG_RESULT,
            f"reloaded outputs differ from the originals (first {deltas[0]:.3g}, second {deltas[1]:.3g})",
        )
