"""``adapter-compat run``: run matrix cells (in parallel) and write the report."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError
from harness.matrix import cellenv, cells
from harness.matrix.summary import closing_summary

if TYPE_CHECKING:
    from harness.matrix.runner import CellOutcome


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
        default=None,
        help="'default' (oldest, middle, newest; the default without --source), 'all', or "
        "versions/minors/ranges: 0.30.3,0.31 or 0.28-0.31",
    )
    parser.add_argument(
        "--source",
        default=None,
        metavar="SRC",
        help="also run a cell of diffusers built from source: a checkout PATH (HEAD plus "
        "uncommitted changes), PATH@REF of a local clone, or URL@REF; named cell-src-<sha7>, "
        "reported after the releases (whose last results join the report)",
    )
    parser.add_argument(
        "--companions-of",
        default=None,
        metavar="VERSION",
        help="with --source: install the companions (peft, transformers, ...) pinned for this "
        "matrix release (default: the newest)",
    )
    parser.add_argument(
        "--target",
        default="diffusers",
        help="whose loader to test: diffusers (the matrix), or a downstream app with committed "
        "releases (invokeai: fixtures/invokeai, suite suites/invokeai; --cells then names its "
        "versions, e.g. 5.4.0,5.4.1 or all)",
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
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the report into DIR (checked before any cell runs; default: "
        "<reports>/runs/<UTC timestamp>/, with <reports>/latest pointed at it)",
    )
    parser.add_argument(
        "--latest",
        action="store_true",
        help="with --out: also point <reports>/latest at DIR",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        default=bool(os.environ.get("ADAPTER_COMPAT_RERUN")),
        help="run cells again even when their last run finished with identical pins, code and args "
        "(env ADAPTER_COMPAT_RERUN=1)",
    )
    parser.add_argument(
        "--coverage",
        action="store_true",
        help="measure line/branch coverage of the installed diffusers loaders (and the peft "
        "code they call) in each cell: reports/coverage/<cell>.json and a Reach section in the "
        "report (installs coverage.py into the cell venv)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest in every cell (after --)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if shutil.which("nox") is None and not _module_available("nox"):
        raise UsageError("nox is not installed: `pip install nox uv` (cells are nox sessions)")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.out is not None and not args.no_report:
        from harness.commands.report import check_out_dir

        check_out_dir(args.out)
    if args.companions_of and not args.source:
        raise UsageError("--companions-of goes with --source (the releases bring their own)")
    pytest_args = list(args.pytest_args)
    if args.target != "diffusers":  # a downstream app's releases, its own suite
        from harness.matrix.targets import SUITES, prepare

        if args.source:
            raise UsageError("--source builds diffusers: it does not go with --target")
        chosen, install_failures = prepare(args.target, args.cells)
        pytest_args = [SUITES[args.target], *pytest_args]
    else:
        chosen = [] if args.source and args.cells is None else cells.select_cells(args.cells)
        install_failures: list[CellOutcome] = []
    from harness.matrix.interrupt import MatrixInterrupted
    from harness.matrix.runner import run_matrix

    if args.source:
        from harness.matrix.source import prepare_source_cells

        ready, install_failures = prepare_source_cells(args.source, args.companions_of)
        chosen = [*chosen, *ready]
    not_started: list[str] = []
    stopped: MatrixInterrupted | None = None
    try:
        outcomes = run_matrix(
            chosen,
            pytest_args,
            jobs=args.jobs,
            timeout=args.timeout,
            rerun=args.rerun,
            coverage=args.coverage,
        )
    except MatrixInterrupted as exc:
        stopped, outcomes, not_started = exc, exc.outcomes, exc.not_started
        print(
            f"adapter-compat: {exc}: {len(outcomes)} cell(s) recorded, "
            f"{len(not_started)} not started",
            file=sys.stderr,
            flush=True,
        )
    outcomes = [*outcomes, *install_failures]
    report_dir = None if args.no_report else _write_report(args, outcomes)
    for line in closing_summary([o.status for o in outcomes], report_dir, not_started):
        print(line)
    if stopped is not None:
        return stopped.exit_code
    failed = [o for o in outcomes if o.status not in ("ok", "empty")]
    return 1 if failed else 0


def _write_report(args: argparse.Namespace, outcomes: Sequence[CellOutcome]) -> Path | None:
    """The report of every cell that finished, was reused or was interrupted."""
    from harness.commands.bisect import cached_first_bad
    from harness.report.write import write_report

    paths = [cellenv.results_path(o.cell) for o in outcomes]
    if args.source and args.cells is None:
        # a source cell is read against the releases: their last results join the report
        paths = [*(cellenv.results_path(c) for c in cells.all_cells()), *paths]
    existing = list(dict.fromkeys(p for p in paths if p.exists()))
    if not existing:
        print("adapter-compat: no cell wrote results: no report written", file=sys.stderr)
        return None
    return write_report(
        existing,
        args.out,
        update_latest=args.out is None or args.latest,
        reports_root=cellenv.REPORTS,
        first_bad=cached_first_bad(),
    )


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
