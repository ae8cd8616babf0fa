"""``adapter-compat report RESULTS... [--out DIR] [--latest]``: records -> compat grid.

Thin on purpose: parsing and messages here, all work in
:func:`harness.report.write.write_report`. First bad releases already found by
``adapter-compat bisect`` are read here and handed to the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from harness.commands.bisect import cached_first_bad
from harness.errors import UsageError
from harness.report.write import AUTO, REPORT_FILES, write_report

DESCRIPTION = """\
Merge check records (JSON lines written by the suites in each matrix cell) into one
compatibility grid: compat.html (colour-coded heatmap with filters, click a cell for
details), compat.md (paste into a GitHub issue), compat.json (schema 2, for machines),
junit/<cell>.xml (CI test views) and repro/<id>.py (one script per non-passing result).

Every report opens with what changed since a baseline: by default the previous run under
<reports-root>/runs/, or the compat.json given with --baseline (e.g. last night's).

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
    base = parser.add_mutually_exclusive_group()
    base.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="PATH",
        help="compat.json (or report folder) to compare with (default: previous run)",
    )
    base.add_argument(
        "--no-baseline", action="store_true", help="no comparison (no 'what changed' headline)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_out_dir(args.out)
    update_latest = bool(args.latest or args.out is None)
    baseline = None if args.no_baseline else (args.baseline or AUTO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = write_report(
            args.results,
            args.out,
            update_latest,
            reports_root=args.reports_root,
            baseline=baseline,
            first_bad=cached_first_bad(),
        )
    for warning in caught:
        print(f"adapter-compat: warning: {warning.message}", file=sys.stderr)
    print(f"report written to {out}/ ({', '.join(REPORT_FILES)}, junit/, repro/)")
    headline = _headline(out / "compat.json")
    if headline:
        print(headline)
    if update_latest:
        print(f"{args.reports_root / 'latest'} -> {out}")
    return 0


def check_out_dir(path: Path) -> None:
    """Fail now, in one line, when ``--out`` cannot become a report folder: before any
    record is read or any cell runs (``run --out``), not after an hour of matrix."""
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"--out {str(path)!r} is a file, not a folder; pass --out with a folder path"
        )
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(
            f"--out {str(path)!r} cannot be created: {str(existing)!r} is a file; pass --out "
            "with a folder path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"--out {str(path)!r} is not writable (no write permission on {str(existing)!r}); "
            "pass --out with a folder you can write to"
        )


def _headline(path: Path) -> str:
    """One line: what changed since the baseline (read back from the written JSON)."""
    import json

    try:
        changes = json.loads(path.read_text(encoding="utf-8")).get("changes")
    except (OSError, ValueError):
        return ""
    if not changes:
        return "no baseline: first stored run (nothing to compare with)"
    text = f"since {changes.get('baseline_run') or changes.get('baseline')}: {changes['summary']}"
    for change in changes.get("new_regressions", [])[:10]:
        text += f"\n  new regression: {change['check_id']} @ {change['label']}"
    for change in changes.get("fixes", [])[:10]:
        text += f"\n  fixed: {change['check_id']} @ {change['label']}"
    return text
