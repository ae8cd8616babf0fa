"""``adapter-compat repro ID [--run]``: print (and run) the reproduction of one result.

ID is the short id shown in the report's details panel (compat.json
``results[...].repro.id``), ``CHECK_ID@CELL``, or a check id (with ``--cell``; default the
newest cell where it does not pass). The script says in its header whether it is
``standalone`` (attached by the check: torch / diffusers only) or ``rerun`` (re-runs the
check from this checkout). ``--run`` runs it with the cell's venv interpreter
(``.nox/<cell>/bin/python``, or ``ADAPTER_COMPAT_ENVDIR``); exit status 1 means the
finding still reproduces.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.matrix import cellenv

DESCRIPTION = __doc__.split("\n", 2)[2] if __doc__ else ""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "repro",
        help="print or run the reproduction script of a non-passing result",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("id", metavar="ID", help="repro id, CHECK_ID@CELL, or a check id")
    parser.add_argument("--cell", default=None, help="cell name when ID is a check id")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="report folder or compat.json (default: <reports>/latest)",
    )
    parser.add_argument("--run", action="store_true", help="run it in the cell's environment")
    parser.add_argument(
        "--python", default=None, help="interpreter for --run (default: the cell's nox venv)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.commands.file import report_json
    from harness.protocol import repro
    from harness.report.diff import read_doc
    from harness.triage import reproduce

    source = report_json(args.report)
    found = reproduce.locate(read_doc(source), args.id, args.cell)
    script = repro.build(found.check_id, found.cell, found.result)
    if not args.run:
        print(script.script, end="")
        return 0
    python = Path(args.python) if args.python else cellenv.cell_python(found.cell)
    if not python.exists():
        raise UsageError(
            f"no interpreter at {python}: build the cell first (`nox -s {found.cell}`), or "
            "pass --python with an environment that has the cell's versions"
        )
    print(
        f"# running {script.kind} repro {script.id} of {found.check_id} "
        f"(recorded in {found.cell}) with {python}"
    )
    code = reproduce.run_script(script, python)
    verdict = "reproduces (exit 1)" if code == 1 else f"does not reproduce (exit {code})"
    print(f"# {script.id}: the finding {verdict}")
    return code
