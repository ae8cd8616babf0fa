"""``adapter-compat check FILE_OR_DIR``: which diffusers versions load *your* adapter file
correctly (format detected from its keys, reference computed from its tensors)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

from harness.byo import USER_FILE_ENV, detect_kind, find_weight_file, read_header
from harness.errors import UsageError
from harness.matrix import cellenv, cells


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check",
        help="check your own LoRA / IP-Adapter file across diffusers versions",
        description=(
            "Detect the format of a .safetensors adapter file (or the one in a hub-like "
            "folder), run the suites for that kind in the selected cells with the file, and "
            "write the grid to reports/check-<file stem>/. Example: "
            "`adapter-compat check my_lora.safetensors --cells 0.30-0.42`."
        ),
    )
    parser.add_argument(
        "path", metavar="FILE_OR_DIR", help=".safetensors file, or a folder holding one"
    )
    parser.add_argument(
        "--cells",
        default="default",
        help="'default', 'all', or versions/minors/ranges like 0.30.3,0.31 or 0.28-0.31",
    )
    parser.add_argument(
        "--jobs", "-j", type=int, default=None, help="cells at once (default: CPU count)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="wall-clock seconds per cell")
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default reports/check-<stem>)"
    )
    parser.add_argument(
        "--detect-only", action="store_true", help="print what the file is and stop"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = find_weight_file(args.path)
    user = read_header(path)
    kind = detect_kind(user)
    print(f"{path}: {kind.describe(user)}")
    if args.detect_only:
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if shutil.which("nox") is None and not _module_available("nox"):
        raise UsageError("nox is not installed: `pip install nox uv` (cells are nox sessions)")
    chosen = cells.select_cells(args.cells)
    out = args.out or cellenv.REPORTS / f"check-{_safe_stem(path)}"
    os.environ[USER_FILE_ENV] = str(path.resolve())  # the runner hands os.environ to each cell
    from harness.matrix.runner import run_matrix

    outcomes = run_matrix(chosen, list(kind.suites), jobs=args.jobs, timeout=args.timeout)
    kept = out / "results"
    kept.mkdir(parents=True, exist_ok=True)
    files = []
    for outcome in outcomes:
        source = cellenv.results_path(outcome.cell)
        if source.exists():
            target = kept / source.name
            shutil.copyfile(source, target)
            files.append(target)
    if not files:
        raise UsageError("no cell wrote results; see the logs under reports/logs/")
    from harness.commands.bisect import cached_first_bad
    from harness.report.write import write_report

    folder = write_report(files, out, update_latest=False, first_bad=cached_first_bad())
    print(f"report: {folder / 'compat.html'}")
    return 1 if any(o.status not in ("ok", "empty") for o in outcomes) else 0


def _safe_stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "file"


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
