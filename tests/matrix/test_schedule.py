"""Cells start longest first (by their last recorded wall time), unknown ones before all,
so the two workers of a matrix finish together."""

from __future__ import annotations

import json
from pathlib import Path

from harness.matrix import cells as matrix_cells
from harness.matrix.runner import last_seconds, longest_first


def _write(results: Path, seconds: float) -> None:
    results.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {"kind": "check", "check_id": "x", "duration_s": 999.0},
        {"kind": "cell", "cell": results.stem, "duration_s": seconds},
    ]
    results.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "cell", tor')


def test_longest_first_unknown_before_all(tmp_path: Path) -> None:
    chosen = matrix_cells.select_cells("0.40.0,0.41.0,0.42.1")
    by_name = {c.diffusers: c for c in chosen}
    _write(tmp_path / "results" / f"{by_name['0.40.0'].name}.jsonl", 90.0)
    _write(tmp_path / "results" / f"{by_name['0.42.1'].name}.jsonl", 170.0)
    order = [c.diffusers for c in longest_first(chosen, tmp_path)]
    assert order == ["0.41.0", "0.42.1", "0.40.0"]
    # the torn last line is skipped, the check record's duration is not the cell's
    assert last_seconds(tmp_path / "results" / f"{by_name['0.42.1'].name}.jsonl") == 170.0
    assert last_seconds(tmp_path / "results" / "absent.jsonl") is None
