"""``adapter-compat report RESULTS... [--out DIR] [--latest]``: records -> compat grid.

Thin on purpose: parsing and messages here, all work in :func:`harness.report.write_report`
(which the noxfile calls directly).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from harness.report import REPORT_FILES, write_report

DESCRIPTION = """\
Merge check records (JSON lines written by the suites in each matrix cell) into one
compatibility grid: compat.html (colour-coded, click a cell for details), compat.md (paste
into a GitHub issue) and compat.json (schema 1, for machines).

RESULTS are .jsonl files or folders (every *.jsonl below them is read). Several cells per
file and several files per cell are merged; for the same check in the same cell the record
read last wins.

Without --out the report goes to <reports-root>/runs/<UTC timestamp>/ and
<reports-root>/latest is pointed at it. With --out it goes there, and latest is only
updated when --latest is given."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="merge check records into compat.html / compat.md / compat.json",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "results",
        nargs="+",
        type=Path,
        metavar="RESULTS",
        help=".jsonl record files or folders holding them",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder to write into (default: <reports-root>/runs/<UTC YYYYmmdd-HHMMSS>/)",
    )
    parser.add_argument(
        "--latest",
        action="store_true",
        help="also point <reports-root>/latest at this report (implied without --out)",
    )
    parser.add_argument(
        "--reports-root",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="where runs/ and latest live (default: reports)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    update_latest = bool(args.latest or args.out is None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = write_report(args.results, args.out, update_latest, reports_root=args.reports_root)
    for warning in caught:
        print(f"adapter-compat: warning: {warning.message}", file=sys.stderr)
    print(f"report written to {out}/ ({', '.join(REPORT_FILES)})")
    if update_latest:
        print(f"{args.reports_root / 'latest'} -> {out}")
    return 0
