"""torch.compile on a module two pipelines share (base + refiner compiled, their
graphs saved and loaded). Marked ``compile``: each check compiles one tiny module on the
CPU inductor (about a minute on 2 cores; ``compile_seconds`` in the record).

* ``compiled_save_reload``: the shared ``text_encoder_2`` wrapped with ``torch.compile``
  (``OptimizedModule``) and set on both pipelines, both run (compiled), then
  ``save_pretrained`` + ``from_pretrained``: no key may carry ``_orig_mod.``, outputs equal
  the eager originals exactly (the compiled run within fp tolerance).
* ``cache_artifacts``: the shared VAE's decoder compiled in place (``Module.compile``),
  both pipelines run, ``torch.compiler.save_cache_artifacts()``; a FRESH process with an
  empty inductor cache loads them (``load_cache_artifacts``), compiles the same way and
  must be served from them (inductor FX-graph cache: hits, no misses) with outputs equal
  to the first process's compiled outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.cell import compiling
from harness.oracles.compare import outputs_close
from harness.protocol.outcomes import Outcome
from harness.scenarios.sharing.pairs import run_member
from harness.scenarios.sharing.persist import judge_reloaded, save_and_reload

pytestmark = [pytest.mark.compile, pytest.mark.filterwarnings("ignore")]

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 420


@pytest.fixture
def fresh_inductor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty inductor cache and reset dynamo state, so this check compiles cold."""
    cache = tmp_path / "inductor-cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    return cache


def test_compiled_save_reload(
    compat: Any, world: Any, device: Any, tmp_path: Path, fresh_inductor: Path
) -> None:
    """Compiled shared text_encoder_2 in base and refiner; save both, reload, compare.
    The ``_orig_mod.`` wrapper question does not depend on the backend: the CPU default is
    ``aot_eager`` (harness.cell.compiling)."""
    backend = compiling.backend_for(device)
    compat.detail(compile_backend=backend)
    missing = compiling.missing(backend)
    if missing:
        compat.not_run(missing)
    expected = world.baseline(compat, "refiner")
    pair = world.pair(compat, "refiner")
    start = time.perf_counter()
    with compat.library_call():
        compiled = torch.compile(pair.a.text_encoder_2, backend=backend)
        pair.a.text_encoder_2 = compiled
        pair.b.text_encoder_2 = compiled
        got = (run_member(pair.a), run_member(pair.b))
    compat.detail(compile_seconds=round(time.perf_counter() - start, 2))
    deltas = [outputs_close(g, e, world.dtype)[1] for g, e in zip(got, expected, strict=True)]
    compat.detail(compiled_vs_eager=deltas)
    if not all(outputs_close(g, e, world.dtype)[0] for g, e in zip(got, expected, strict=True)):
        compat.finding(Outcome.WRONG_RESULT, f"compiled outputs differ from eager: {deltas}")
    a, b = save_and_reload(compat, pair, tmp_path)
    judge_reloaded(compat, world, a, b, expected)


def test_cache_artifacts(compat: Any, world: Any, tmp_path: Path, fresh_inductor: Path) -> None:
    """save_cache_artifacts after compiling the shared VAE decoder; a fresh process that
    loads them compiles from the cache (hits, no misses) and gives equal outputs."""
    compat.param(pair="refiner", module="vae.decoder")
    compat.require(
        callable(getattr(torch.compiler, "save_cache_artifacts", None)),
        f"torch {torch.__version__} has no torch.compiler.save_cache_artifacts",
    )
    missing = compiling.missing("inductor")  # the artefacts are inductor's caches
    if missing:
        compat.not_run(missing)
    pair = world.pair(compat, "refiner")
    start = time.perf_counter()
    with compat.library_call():
        pair.a.vae.decoder.compile()  # the shared VAE: both pipelines use this decoder
        got = (run_member(pair.a), run_member(pair.b))
    compat.detail(compile_seconds=round(time.perf_counter() - start, 2))
    with compat.library_call():
        saved = torch.compiler.save_cache_artifacts()
    if not saved:
        compat.finding(Outcome.SILENT_NOOP, "save_cache_artifacts returned nothing after a compile")
    blob, info = saved
    compat.detail(artifact_bytes=len(blob), artifacts=repr(info)[:300])
    (tmp_path / "artifacts.bin").write_bytes(blob)
    env = dict(os.environ)
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "child-cache")  # empty: only artefacts hit
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.scenarios.sharing.compile_child", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    compat.detail(reload_process_seconds=round(time.perf_counter() - start, 2))
    report_path = tmp_path / "child.json"
    if not report_path.exists():
        raise RuntimeError(
            f"compile child wrote no report (rc {proc.returncode}): {proc.stderr[-600:]}"
        )
    report = json.loads(report_path.read_text())
    compat.detail(child=report)
    if report.get("error"):
        if report["stage"] == "build":
            raise RuntimeError(f"compile child could not build the pair: {report['error']}")
        compat.finding(Outcome.CRASH, f"fresh process, {report['stage']}: {report['error']}")
    hits = report["inductor"].get("fxgraph_cache_hit", 0)
    misses = report["inductor"].get("fxgraph_cache_miss", 0)
    if hits == 0 or misses:
        compat.finding(
            Outcome.SILENT_NOOP,
            f"the fresh process did not reuse the artefacts: {hits} FX-graph cache hit(s), {misses} miss(es)",
        )
    child = np.load(tmp_path / "child_outputs.npz")
    deltas = []
    for key, want in zip(("first", "second"), got, strict=True):
        same, delta = outputs_close(child[key], want, world.dtype, exact=True)
        deltas.append(delta)
    compat.detail(child_output_diff=deltas)
    if any(d != 0.0 for d in deltas):
        compat.finding(
            Outcome.WRONG_RESULT, f"outputs from the reloaded artefacts differ: {deltas}"
        )
