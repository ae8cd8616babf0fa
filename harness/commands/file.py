"""``adapter-compat file [REPORT] [--post]``: issue drafts for new regressions, and filing.

Dry-run by default: writes ``<report>/issues/<fingerprint>.md`` (one per root cause: the
non-passing rows that share an exception type + normalised message + library function, or
an outcome on one operation, listed with their versions; never a breakage the newest cell
passes) and ``index.json``, and prints what it would do. ``--post`` with
``GITHUB_TOKEN`` creates the issues, or comments on the open issue carrying the same
fingerprint when its failing cells / first bad version changed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from harness.errors import UsageError

DESCRIPTION = __doc__.split("\n", 2)[2] if __doc__ else ""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "file",
        help="write issue drafts for new regressions; --post files them on GitHub",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "report",
        nargs="?",
        type=Path,
        default=None,
        metavar="REPORT",
        help="report folder or its compat.json (default: <reports>/latest)",
    )
    parser.add_argument(
        "--all",
        dest="everything",
        action="store_true",
        help="every regression in the report, not only those new since its baseline",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="drafts folder (default: REPORT/issues)"
    )
    parser.add_argument("--post", action="store_true", help="file on GitHub (needs GITHUB_TOKEN)")
    parser.add_argument(
        "--repo",
        default=os.environ.get("GITHUB_REPOSITORY"),
        help="owner/name to file in (default: $GITHUB_REPOSITORY)",
    )
    parser.add_argument(
        "--api-url",
        default=os.environ.get("GITHUB_API_URL", "https://api.github.com"),
        help="REST API root (default: $GITHUB_API_URL or https://api.github.com)",
    )
    parser.add_argument(
        "--label", default=None, help="label of filed issues (default: adapter-compat)"
    )
    parser.set_defaults(func=run)


def report_json(path: Path | None) -> Path:
    if path is None:
        from harness.matrix import cellenv

        path = cellenv.REPORTS / "latest"
    candidate = path / "compat.json" if path.is_dir() else path
    if not candidate.is_file():
        raise UsageError(
            f"no report at {str(path)!r}: pass a report folder (reports/runs/<ts>) or its "
            "compat.json; `adapter-compat report` writes one"
        )
    return candidate


def run(args: argparse.Namespace) -> int:
    from harness.commands.bisect import cached_first_bad
    from harness.report.diff import read_doc
    from harness.triage import filing

    source = report_json(args.report)
    doc = read_doc(source)
    label = args.label or filing.DEFAULT_LABEL
    token = os.environ.get("GITHUB_TOKEN", "")
    if args.post and not token:
        raise UsageError("--post needs a token in GITHUB_TOKEN (issues:write on the repository)")
    if args.post and not args.repo:
        raise UsageError("--post needs --repo owner/name (or GITHUB_REPOSITORY)")
    try:
        client = filing.GitHub(args.repo, token, args.api_url) if args.post else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    drafts = filing.build_drafts(doc, everything=args.everything, bisected=cached_first_bad())
    folder = args.out or source.parent / "issues"
    filing.write_drafts(drafts, folder)
    scope = "every open breakage" if args.everything else "breakages new since the baseline"
    print(f"{len(drafts)} issue draft(s), one per root cause, for {scope}, written to {folder}/")
    for draft in drafts:
        print(f"  {draft.fingerprint}  {draft.title}")
    if client is None:
        if drafts:
            print("dry run: nothing filed (add --post with GITHUB_TOKEN and --repo to file)")
        return 0
    try:
        actions = filing.plan(client, drafts, label)  # every read before the first write
    except filing.ApiError as exc:
        print(f"adapter-compat: error: {exc}; nothing was filed", file=sys.stderr)
        return 1
    for action in actions:
        if action.kind == filing.UNCHANGED:
            print(action.line())
    try:
        filing.execute(client, actions, label)
    except filing.ApiError as exc:
        done = sum(1 for a in actions if a.done)
        filing.record_filed(folder, actions, args.repo)
        print(f"adapter-compat: error: {exc}; {done} action(s) done before it", file=sys.stderr)
        return 1
    filing.record_filed(folder, actions, args.repo)
    created = sum(1 for a in actions if a.kind == filing.CREATE)
    commented = sum(1 for a in actions if a.kind == filing.COMMENT)
    print(f"{created} issue(s) created, {commented} comment(s) added on {args.repo}")
    return 0
