"""``adapter-compat`` console script: a thin dispatcher over ``harness/commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from harness import __version__
from harness.commands import COMMANDS
from harness.errors import UsageError
from harness.matrix.interrupt import MatrixInterrupted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adapter-compat",
        description=(
            "Compatibility regression harness for LoRA / IP-Adapter checkpoints across "
            "diffusers x torch versions. Typical use: `nox` runs the default cells and "
            "writes reports/latest/compat.html."
        ),
    )
    parser.add_argument("--version", action="version", version=f"adapter-compat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"harness.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"adapter-compat: error: {exc}", file=sys.stderr)
        return 2
    except MatrixInterrupted as exc:  # a command that did not handle the stop itself
        print(f"adapter-compat: {exc}; results written so far are kept", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("adapter-compat: interrupted; results written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
