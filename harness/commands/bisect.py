"""``adapter-compat bisect CHECK --good V1 --bad V2``: first bad released diffusers version.
With ``--repo PATH`` (a diffusers clone): the first bad commit between two refs.
With ``--package NAME``: the first bad release of a companion over a cell's other pins.
With ``--blame``: which package whose pin changed at the row's first bad cell, put back
alone, turns the row green.
With ``--newly-red`` (no CHECK): the first bad commit of each row the report's source cell
(main) broke since the newest release, at most ``--max-bisects K`` of them (default 3, env
ADAPTER_COMPAT_MAX_BISECTS), each result appended to <results>/bisect-<sha7>.jsonl.

Lists the released versions between V1 and V2 on PyPI (patch releases too), builds a cell
for each version it needs (the committed lock when the version is in the matrix, else
companions resolved as of that release), runs only CHECK there through the ordinary
matrix driver, and binary-searches. Verdicts and cells are cached under
.cache/adapter-compat (ADAPTER_COMPAT_CACHE), so re-running is cheap. CHECK is a check id
(``lora/formats::load[kohya]``, as in the report) or a pytest node id.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.matrix.cells import ROOT

DESCRIPTION = __doc__.split("\n", 2)[2] if __doc__ else ""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bisect",
        help="find the first released diffusers version where a check regresses",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "check", metavar="CHECK", nargs="?", default=None, help="check id or pytest node id"
    )
    parser.add_argument(
        "--good",
        default=None,
        help="a released version where it passes (with --repo: a ref, e.g. v0.37.1 or a sha)",
    )
    parser.add_argument(
        "--bad",
        default=None,
        help="a later released version where it regresses (with --repo: a later ref)",
    )
    parser.add_argument(
        "--repo",
        default=None,
        metavar="PATH",
        help="a diffusers clone: bisect its first-parent commits between --good and --bad "
        "(default: the release tags around the row's first regression in the report) and "
        "print the first bad commit, its PR and the loaders/models/utils files it touched; "
        "with --newly-red also a git URL (cloned into the cache; default: the source cell's "
        "origin)",
    )
    parser.add_argument(
        "--newly-red",
        action="store_true",
        help="no CHECK: commit-bisect the rows the report's `main vs the newest release` "
        "headline lists (green in the newest release, red in a source cell after it), "
        "between the release tag and the source commit; one root cause per row first",
    )
    parser.add_argument(
        "--max-bisects",
        default=None,
        metavar="K",
        help="with --newly-red: at most K bisects (default 3, or ADAPTER_COMPAT_MAX_BISECTS); "
        "the other rows are listed as not bisected",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --newly-red: where bisect-<sha7>.jsonl records go (default: "
        "<reports>/results, read by the next `adapter-compat report`)",
    )
    parser.add_argument(
        "--fixed",
        action="store_true",
        help="with --repo: find the first commit where a red row passes (--good is then the "
        "older, red ref and --bad the newer, passing one)",
    )
    parser.add_argument(
        "--companions-of",
        default=None,
        metavar="VERSION",
        help="with --repo: the matrix release whose companions every step installs "
        "(default: --bad's release when it is one, else the newest)",
    )
    parser.add_argument(
        "--package",
        default=None,
        metavar="NAME",
        help="bisect a companion package's releases between --good and --bad (default: its "
        "pins in the cell before --cell and in --cell) with everything else at --cell's pins",
    )
    parser.add_argument(
        "--blame",
        action="store_true",
        help="for each package whose pin differs between the cell before --cell and --cell "
        "(diffusers included), put it back alone over --cell's pins and run the row: name the "
        "package(s) that alone turn it green, or say none alone does (an interaction)",
    )
    parser.add_argument(
        "--cell",
        default=None,
        metavar="VERSION",
        help="with --package or --blame: the cell whose pins are held (default: the release of "
        "the row's first regression in the report)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="report whose records name CHECK's pytest node (default: <reports>/latest)",
    )
    parser.add_argument("--offline", action="store_true", help="use cached PyPI data only")
    parser.add_argument("--fresh", action="store_true", help="ignore cached verdicts")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per cell (default 1800)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.matrix import cellenv
    from harness.triage import bisect

    report = args.report or cellenv.REPORTS / "latest"
    report_file = report / "compat.json" if report.is_dir() else report
    if args.newly_red:
        return _newly_red(args, report_file)
    if args.max_bisects is not None or args.results is not None:
        raise UsageError("--max-bisects and --results go with --newly-red")
    if args.check is None:
        raise UsageError("CHECK is needed (a check id or pytest node id), or --newly-red")
    nodeid = bisect.nodeid_for(args.check, report_file)
    check_id = args.check if ".py::" not in args.check else _check_id_of(args.check)
    check_known(check_id, nodeid, report_file)  # before PyPI, locks or any install
    if args.blame:
        return _blame(args, check_id, nodeid, report_file)
    if args.package is not None:
        return _package_bisect(args, check_id, nodeid, report_file)
    if args.cell is not None:
        raise UsageError("--cell goes with --package or --blame")
    if args.repo is not None:
        return _commit_bisect(args, check_id, nodeid, report_file)
    if args.fixed or args.companions_of:
        raise UsageError("--fixed and --companions-of go with --repo (a commit bisect)")
    if not (args.good and args.bad):
        raise UsageError("--good and --bad are needed to bisect releases (or give --repo PATH)")
    result = bisect.run_bisect(
        check_id,
        nodeid,
        args.good,
        args.bad,
        offline=args.offline,
        fresh=args.fresh,
        timeout=args.timeout,
    )
    print()
    print("\n".join(result.table()))
    if result.error:
        print(f"adapter-compat: bisect stopped: {result.error}")
        return 1
    if result.skipped_between:
        print(
            f"first bad version: one of {', '.join(result.skipped_between)}, {result.first_bad} "
            f"(last good {result.last_good}; the others could not be tested)"
        )
    else:
        print(f"first bad version: {result.first_bad} (last good {result.last_good})")
    return 0


def _newly_red(args: argparse.Namespace, report: Path) -> int:
    """``--newly-red``: at most K commit bisects of the rows main broke since the release."""
    from harness.matrix import cellenv
    from harness.triage import newly_red_bisect

    extra = [
        flag
        for flag, given in [
            ("CHECK", args.check is not None),
            ("--good", args.good is not None),
            ("--bad", args.bad is not None),
            ("--package", args.package is not None),
            ("--blame", args.blame),
            ("--cell", args.cell is not None),
            ("--fixed", args.fixed),
            ("--companions-of", args.companions_of is not None),
        ]
        if given
    ]
    if extra:
        raise UsageError(
            f"--newly-red takes its rows and refs from the report, not {', '.join(extra)}"
        )
    limit = newly_red_bisect.max_bisects(args.max_bisects)
    doc = newly_red_bisect.read_report(report)
    if not doc.get("main_vs_release"):
        print(f"{report}: no source cell built at or after the newest release: nothing to bisect")
        return 0
    result = newly_red_bisect.run_newly_red(
        doc,
        limit,
        args.results or cellenv.RESULTS_DIR,
        repo=args.repo,
        timeout=args.timeout,
        fresh=args.fresh,
    )
    print("\n".join(result.lines()))
    return 0


def _commit_bisect(args: argparse.Namespace, check_id: str, nodeid: str, report: Path) -> int:
    """``--repo``: the first bad (or, with ``--fixed``, first fixed) commit."""
    from harness.triage import commit_bisect

    doc = _report_doc(report)
    args.repo = _local_repo(args.repo)
    good, bad = args.good, args.bad
    if (good is None) != (bad is None):
        raise UsageError("give both --good and --bad, or neither (the report's releases)")
    if good is None:
        older, newer = commit_bisect.release_refs(doc, check_id, args.fixed)
        good = commit_bisect.release_tag(args.repo, older)
        bad = commit_bisect.release_tag(args.repo, newer)
        print(f"the report shows {check_id} changing between {older} and {newer}: {good}..{bad}")
    result = commit_bisect.run_commit_bisect(
        check_id,
        nodeid,
        args.repo,
        good,
        bad,
        fixed=args.fixed,
        companions_of=args.companions_of,
        timeout=args.timeout,
        fresh=args.fresh,
        profile=_row_profile(doc, check_id),
    )
    print("\n".join(result.lines()))
    return 1 if result.error or result.first_bad is None else 0


def _package_bisect(args: argparse.Namespace, check_id: str, nodeid: str, report: Path) -> int:
    """``--package NAME``: the first bad release of one companion over a cell's pins."""
    from harness.triage import package_bisect

    if args.repo is not None or args.fixed or args.companions_of:
        raise UsageError("--package does not go with --repo, --fixed or --companions-of")
    doc = _report_doc(report)
    result = package_bisect.run_package_bisect(
        check_id,
        nodeid,
        args.package,
        args.good,
        args.bad,
        cell=args.cell,
        report=doc,
        offline=args.offline,
        timeout=args.timeout,
        profile=_row_profile(doc, check_id),
    )
    print("\n".join(result.lines()))
    return 1 if result.error or result.first_bad is None else 0


def _blame(args: argparse.Namespace, check_id: str, nodeid: str, report: Path) -> int:
    """``--blame``: which changed pin at the row's first bad cell flips it, alone."""
    from harness.triage import package_bisect

    extra = [
        flag
        for flag, given in [
            ("--package", args.package is not None),
            ("--repo", args.repo is not None),
            ("--good", args.good is not None),
            ("--bad", args.bad is not None),
            ("--fixed", args.fixed),
            ("--companions-of", args.companions_of is not None),
        ]
        if given
    ]
    if extra:
        raise UsageError(f"--blame takes only CHECK and --cell, not {', '.join(extra)}")
    doc = _report_doc(report)
    result = package_bisect.run_blame(
        check_id,
        nodeid,
        cell=args.cell,
        report=doc,
        timeout=args.timeout,
        profile=_row_profile(doc, check_id),
    )
    print("\n".join(result.lines()))
    return 1 if result.error else 0


def _local_repo(text: str) -> Path:
    """``--repo``: a path as given, or a git URL cloned (fetched) into the cache (the
    report prints a source cell's origin, which may be one)."""
    from harness.matrix.source import split_source

    if split_source(text)[2]:
        from harness.triage.newly_red_bisect import local_clone

        return local_clone(text)
    return Path(text)


def _report_doc(report: Path) -> dict:
    import json

    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _row_profile(doc: dict, check_id: str) -> dict[str, str]:
    """Device and dtype the row ran with in the report, as the cell plugin's variables."""
    row = next((c for c in doc.get("checks") or [] if c.get("check_id") == check_id), None)
    for result in ((row or {}).get("results") or {}).values():
        device, dtype = result.get("device"), result.get("dtype")
        if device and dtype:
            return {"ADAPTER_COMPAT_DEVICE": str(device), "ADAPTER_COMPAT_DTYPE": str(dtype)}
    return {}


def cached_first_bad() -> dict[str, str]:
    """check id -> first bad release of every bisection this machine finished (its cache),
    for the report and issue drafts. Empty when the cache is missing or broken, or the
    bisect module cannot load (no ``packaging``): that must not stop a report or filing."""
    try:
        from harness.triage.bisect import known_first_bad

        return known_first_bad()
    except Exception:  # noqa: BLE001 - a missing or broken cache must not stop a report
        return {}


def check_known(check_id: str, nodeid: str, report: Path) -> None:
    """Raise a one-line UsageError when CHECK names no test, so a typo costs nothing.

    Known: listed in the report (every check that ran there), or a test function its test
    file defines. A parameter id is checked against the report's ids for that test when
    the report has any (pytest computes ids, so the file alone cannot say)."""
    known = _report_check_ids(report)
    if check_id in known:
        return
    path, _, name = nodeid.partition("::")
    test_file = ROOT / path
    func = name.split("::")[-1].split("[")[0]
    if not test_file.is_file():
        raise UsageError(f"unknown check {check_id!r}: there is no test file {path}")
    defined = _tests_defined(test_file)
    if func not in defined:
        listed = ", ".join(sorted(defined)[:8]) + (" ..." if len(defined) > 8 else "")
        raise UsageError(
            f"unknown check {check_id!r}: {path} defines no {func} (its tests: {listed or 'none'})"
        )
    base, bracket, _ = check_id.partition("[")
    siblings = sorted(k for k in known if k.startswith(base + "["))
    if bracket and siblings:
        shown = ", ".join(s[len(base) :] for s in siblings[:6])
        raise UsageError(
            f"unknown check {check_id!r}: the report knows {base} only as {shown}"
            + (" ..." if len(siblings) > 6 else "")
        )


def _report_check_ids(report: Path) -> set[str]:
    import json

    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    checks = doc.get("checks") if isinstance(doc, dict) else None
    return {str(c.get("check_id")) for c in checks or [] if isinstance(c, dict)}


def _tests_defined(path: Path) -> set[str]:
    """Test function names a test file defines (module level or in a class)."""
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if n.startswith("test")}


def _check_id_of(nodeid: str) -> str:
    """``suites/lora/test_formats.py::test_load[x]`` -> ``lora/formats::load[x]``."""
    path, _, name = nodeid.partition("::")
    parts = Path(path).with_suffix("").parts
    if parts and parts[0] == "suites":
        parts = parts[1:]
    module = "/".join(p.removeprefix("test_") for p in parts)
    func = name.split("::")[-1].removeprefix("test_")
    return f"{module}::{func}"
