"""Fresh-process half of the compile-cache check: ``python -m harness.scenarios.sharing.compile_child
DIR``. Loads ``DIR/artifacts.bin`` with ``torch.compiler.load_cache_artifacts`` into an
empty inductor cache, rebuilds the same refiner pair, compiles the shared VAE decoder the
same way, runs both pipelines and writes ``DIR/child.json`` (inductor FX-graph cache
hit/miss counters, seconds) and ``DIR/child_outputs.npz``.

Why counters: ``torch._dynamo.utils.counters["inductor"]["fxgraph_cache_hit"]`` /
``["fxgraph_cache_miss"]`` count per compiled graph whether inductor's FX-graph cache
served it (torch 2.13); with an empty ``TORCHINDUCTOR_CACHE_DIR`` only the loaded
artefacts can produce hits.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(folder: Path) -> int:
    import numpy as np
    import torch
    from torch._dynamo.utils import counters

    from harness.inputs.models.zoo import Zoo
    from harness.scenarios.sharing.pairs import build_pair, run_member

    report: dict = {"stage": "load_artifacts"}
    try:
        start = time.perf_counter()
        info = torch.compiler.load_cache_artifacts((folder / "artifacts.bin").read_bytes())
        report["load_info"] = repr(info)[:400]
        report["stage"] = "build"
        pair = build_pair(Zoo(), "refiner")
        report["stage"] = "compile_run"
        pair.a.vae.decoder.compile()
        outs = [run_member(pair.a), run_member(pair.b)]
        report["seconds"] = round(time.perf_counter() - start, 2)
        report["inductor"] = {k: int(v) for k, v in counters["inductor"].items()}
        report["stats"] = {k: int(v) for k, v in counters["stats"].items()}
        np.savez(
            folder / "child_outputs.npz", first=np.asarray(outs[0]), second=np.asarray(outs[1])
        )
        report["stage"] = "done"
    except Exception as exc:  # noqa: BLE001 - reported to the parent check
        report["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
    (folder / "child.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
