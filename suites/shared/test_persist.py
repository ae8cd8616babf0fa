"""Saving two pipelines that share modules (the shared VAE / text encoder is written once
per pipeline) and loading them back (seed 001).

Oracle: the saved files (read with safetensors) hold exactly the modules' tensors under
their plain names; each reloaded pipeline gives the original pipeline's output bit for bit
(fp32); the two reloaded pipelines share no module or tensor storage (a reload that
re-ties them would let an adapter loaded into one leak into the other).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.oracles.compare import outputs_close
from harness.protocol.outcomes import Outcome
from harness.scenarios.sharing.pairs import PAIRS, run_member
from harness.scenarios.sharing.persist import save_problems
from harness.scenarios.sharing.state import storage_overlap

pytestmark = pytest.mark.filterwarnings("ignore")


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


@pytest.mark.parametrize("name", list(PAIRS))
def test_save_reload(compat: Any, world: Any, tmp_path: Any, name: str) -> None:
    """save_pretrained(safe_serialization=True) of both members, from_pretrained of each:
    files hold every tensor under its plain name; outputs equal; no accidental sharing."""
    expected = world.baseline(compat, name)
    pair = world.pair(compat, name)
    a, b = save_and_reload(compat, pair, tmp_path)
    judge_reloaded(compat, world, a, b, expected)
