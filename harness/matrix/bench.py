"""Benchmark the matrix: per cell install / import / suite seconds and whole-matrix wall time.

    python -m harness.matrix.bench [--cells all] [--jobs 2] [--suites suites/smoke] [--fresh]

A cell's floor is one install plus one import of torch + diffusers; everything above that
is overhead (nox, pytest start-up, collection, the suite itself). ``--fresh`` deletes the
cells' nox venvs first so the install column is a real (uv-cached) install, not a no-op.
Figures go to stdout and ``reports/bench.json``; the README quotes them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from harness.matrix import cellenv, cells
from harness.matrix.runner import run_matrix
from harness.protocol.records import read_records


def cell_phases(results: Path) -> dict[str, float]:
    for record in read_records([results]) if results.exists() else []:
        if record.get("kind") == "cell":
            return {k: float(v) for k, v in record.get("phase_seconds", {}).items()}
    return {}


def checks_seconds(results: Path) -> tuple[float, int]:
    """(sum of the check records' durations, how many): what the checks themselves cost."""
    total, count = 0.0, 0
    for record in read_records([results]) if results.exists() else []:
        if record.get("kind") == "check":
            total += float(record.get("duration_s") or 0.0)
            count += 1
    return total, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.matrix.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--cells", default="all")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--suites", default="suites/smoke", help="pytest path(s) run in each cell")
    parser.add_argument(
        "--fresh", action="store_true", help="recreate each cell venv (real install)"
    )
    parser.add_argument("--out", type=Path, default=cellenv.REPORTS / "bench.json")
    args = parser.parse_args(argv)
    chosen = cells.select_cells(args.cells)
    if args.fresh:
        for cell in chosen:
            shutil.rmtree(cellenv.venv_path(cell), ignore_errors=True)
    begin = time.perf_counter()
    outcomes = run_matrix(chosen, args.suites.split(), jobs=args.jobs, rerun=True)
    wall = time.perf_counter() - begin
    rows = []
    # overhead: wall - (install + import + the checks' own durations): collection, fixtures,
    # teardown, process start. The budget (issue #19) is <= 10 s per cell.
    print(
        f"\n{'cell':<24}{'status':<10}{'install':>9}{'import':>9}{'suite':>9}{'checks':>9}"
        f"{'cell wall':>11}{'overhead s':>11}{'vs floor':>10}"
    )
    for outcome in outcomes:
        results = cellenv.results_path(outcome.cell)
        phases = cell_phases(results)
        install, imp, suite = (phases.get(k, 0.0) for k in ("install", "import", "suite"))
        checks_s, count = checks_seconds(results)
        floor = install + imp
        overhead = (outcome.seconds - floor) / floor if floor else float("nan")
        overhead_s = outcome.seconds - floor - checks_s
        rows.append(
            {"cell": outcome.cell.name, "status": outcome.status, "install_s": install, "import_s": imp,
             "suite_s": suite, "checks_s": round(checks_s, 3), "checks": count,
             "cell_wall_s": round(outcome.seconds, 3), "overhead_s": round(overhead_s, 3),
             "overhead_ratio": round(overhead, 3)}
        )  # fmt: skip
        print(
            f"{outcome.cell.name:<24}{outcome.status:<10}{install:>9.2f}{imp:>9.2f}{suite:>9.2f}"
            f"{checks_s:>9.2f}{outcome.seconds:>11.2f}{overhead_s:>11.2f}{overhead:>9.0%}"
        )
    print(f"\nwhole matrix: {len(chosen)} cells in {wall:.1f} s wall ({args.jobs or 'auto'} jobs)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"wall_s": round(wall, 2), "cells": rows, "suites": args.suites}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
