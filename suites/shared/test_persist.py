"""Saving two pipelines that share modules (the shared VAE / text encoder is written once
per pipeline) and loading them back.

Oracle: the saved files (read with safetensors) hold exactly the modules' tensors under
their plain names; each reloaded pipeline gives the original pipeline's output bit for bit
(fp32); the two reloaded pipelines share no module or tensor storage (a reload that
re-ties them would let an adapter loaded into one leak into the other).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.scenarios.sharing.pairs import PAIRS
from harness.scenarios.sharing.persist import judge_reloaded, save_and_reload

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("name", list(PAIRS))
def test_save_reload(compat: Any, world: Any, tmp_path: Any, name: str) -> None:
    """save_pretrained(safe_serialization=True) of both members, from_pretrained of each:
    files hold every tensor under its plain name; outputs equal; no accidental sharing."""
    expected = world.baseline(compat, name)
    pair = world.pair(compat, name)
    a, b = save_and_reload(compat, pair, tmp_path)
    judge_reloaded(compat, world, a, b, expected)
