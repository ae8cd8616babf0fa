"""``adapter-compat run``: run matrix cells (in parallel) and write the report."""

from __future__ import annotations

import argparse
import os
import shutil

from harness.errors import UsageError
from harness.matrix import cellenv, cells


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="run cells of the matrix and write reports/latest",
        description=(
            "Run the suites in each selected cell (one nox venv per cell, several cells at "
            "once) and then write the report. Arguments after `--` go to pytest, e.g. "
            "`adapter-compat run --cells 0.30-0.33 -- -k lora`."
        ),
    )
    parser.add_argument(
        "--cells",
        default="default",
        help="'default' (oldest, middle, newest), 'all', or versions/minors/ranges: 0.30.3,0.31 or 0.28-0.31",
    )
    parser.add_argument(
        "--jobs", "-j", type=int, default=None, help="cells at once (default: CPU count)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="wall-clock seconds per cell's suites (default 1800)",
    )
    parser.add_argument("--no-report", action="store_true", help="only run the cells")
    parser.add_argument(
        "--rerun",
        action="store_true",
        default=bool(os.environ.get("ADAPTER_COMPAT_RERUN")),
        help="run cells again even when their last run finished with identical pins, code and args "
        "(env ADAPTER_COMPAT_RERUN=1)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest in every cell (after --)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if shutil.which("nox") is None and not _module_available("nox"):
        raise UsageError("nox is not installed: `pip install nox uv` (cells are nox sessions)")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    chosen = cells.select_cells(args.cells)
    from harness.matrix.runner import run_matrix

    outcomes = run_matrix(
        chosen, args.pytest_args, jobs=args.jobs, timeout=args.timeout, rerun=args.rerun
    )
    if not args.no_report:
        from harness.commands.bisect import cached_first_bad
        from harness.report.write import write_report

        paths = [cellenv.results_path(o.cell) for o in outcomes]
        existing = [p for p in paths if p.exists()]
        out = write_report(
            existing,
            None,
            update_latest=True,
            reports_root=cellenv.REPORTS,
            first_bad=cached_first_bad(),
        )
        print(f"report: {out / 'compat.html'}")
    failed = [o for o in outcomes if o.status not in ("ok", "empty")]
    return 1 if failed else 0


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
