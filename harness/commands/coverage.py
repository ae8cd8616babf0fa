"""``adapter-compat coverage SUMMARY``: print one cell's reach as a table.

The summaries come from ``adapter-compat run --coverage`` (``reports/coverage/<cell>.json``);
the report shows all cells side by side, this prints one in the terminal with its biggest
unreached functions, e.g. to pick the next inputs to write.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "coverage",
        help="print a cell's line/branch coverage of the loaders (from `run --coverage`)",
        description=(
            "Print the reach summary of one cell written by `adapter-compat run --coverage`: "
            "per measured module lines and branches covered, then the biggest functions no "
            "check entered. Example: `adapter-compat coverage reports/coverage/cell-0.42.1.json`."
        ),
    )
    parser.add_argument("summary", type=Path, help="reports/coverage/<cell>.json")
    parser.add_argument(
        "--functions", type=int, default=10, help="unreached functions to list (default 10)"
    )
    parser.add_argument(
        "--branches", action="store_true", help="also list unreached branches (target modules)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.report.coverage import load_summary, text_table

    try:
        summary = load_summary(args.summary)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read coverage summary: {exc}") from exc
    print(text_table(summary, functions=args.functions, branches=args.branches), end="")
    return 0
