"""``adapter-compat wheelhouse DIR``: download every wheel the chosen cells need."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.errors import UsageError
from harness.matrix import cells


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "wheelhouse",
        help="download all wheels the chosen cells need (for offline / air-gapped runners)",
        description=(
            "Download the pinned wheels of the chosen cells (and torch, unless the torch axis is "
            "'system', and the outer tools nox/uv/jinja2) into DIR. On the offline machine: "
            "ADAPTER_COMPAT_WHEELHOUSE=DIR nox."
        ),
    )
    parser.add_argument("dir", type=Path, help="folder to fill with wheels")
    parser.add_argument("cells", nargs="?", default="all", help="cells to cover (default: all)")
    parser.add_argument(
        "--python-version", default=cells.matrix_data()["python"], help="target Python, e.g. 3.12"
    )
    parser.add_argument(
        "--platform",
        action="append",
        default=[],
        help="target platform tag(s), e.g. manylinux_2_28_x86_64",
    )
    parser.add_argument(
        "--torch", default=None, help="torch axis for the target (local, system or a version)"
    )
    parser.add_argument("--no-tools", action="store_true", help="skip nox / uv / jinja2")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target: Path = args.dir
    if target.exists() and not target.is_dir():
        raise UsageError(
            f"{target} exists and is not a folder: pass a folder path for the wheelhouse"
        )
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create {target}: {exc.strerror}; choose a writable folder"
        ) from exc
    if not os.access(target, os.W_OK):
        raise UsageError(f"{target} is not writable; choose a writable folder")
    from harness.matrix.wheelhouse import build

    chosen = cells.select_cells(args.cells, args.torch)
    errors = build(target, chosen, args.python_version, args.platform, with_tools=not args.no_tools)
    for line in errors:
        print(f"adapter-compat: could not download {line}")
    return 1 if errors else 0
