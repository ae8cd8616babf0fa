"""CLI subcommands. Each module defines ``register(subparsers)`` which adds one subparser
and sets ``func=<callable(args) -> int>`` on it. Add a module name to ``COMMANDS`` to
expose it; the order here is the order in ``adapter-compat --help``."""

COMMANDS = (
    "run",
    "report",
    "matrix",
    "wheelhouse",
    "check",
    "convert_ip_adapter",
    "drift",
    "bisect",
    "repro",
    "file",
    "coverage",
)
