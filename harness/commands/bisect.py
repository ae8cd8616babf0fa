"""``adapter-compat bisect CHECK --good V1 --bad V2``: first bad released diffusers version.

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

DESCRIPTION = __doc__.split("\n", 2)[2] if __doc__ else ""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bisect",
        help="find the first released diffusers version where a check regresses",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("check", metavar="CHECK", help="check id or pytest node id")
    parser.add_argument("--good", required=True, help="a released version where it passes")
    parser.add_argument("--bad", required=True, help="a later released version where it regresses")
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
    nodeid = bisect.nodeid_for(args.check, report_file)
    check_id = args.check if ".py::" not in args.check else _check_id_of(args.check)
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


def cached_first_bad() -> dict[str, str]:
    """check id -> first bad release of every bisection this machine finished (its cache),
    for the report and issue drafts. Empty when the cache is missing or broken, or the
    bisect module cannot load (no ``packaging``): that must not stop a report or filing."""
    try:
        from harness.triage.bisect import known_first_bad

        return known_first_bad()
    except Exception:  # noqa: BLE001 - a missing or broken cache must not stop a report
        return {}


def _check_id_of(nodeid: str) -> str:
    """``suites/lora/test_formats.py::test_load[x]`` -> ``lora/formats::load[x]``."""
    path, _, name = nodeid.partition("::")
    parts = Path(path).with_suffix("").parts
    if parts and parts[0] == "suites":
        parts = parts[1:]
    module = "/".join(p.removeprefix("test_") for p in parts)
    func = name.split("::")[-1].removeprefix("test_")
    return f"{module}::{func}"
