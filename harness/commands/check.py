"""``adapter-compat check FILE_OR_DIR_OR_HUB_ID``: which diffusers versions load *your*
adapter file correctly (format and model detected from its keys and shapes, reference
computed from its tensors).

Everything that can be wrong with the *file* is said before any cell runs, with exit 2:
unreadable header, truncated data, a layout the checks do not read (LoKR, LoHa, ...), a
model they have no layout for, or keys that mostly place nowhere ("not understood"). A
file that gets to the cells is one the checks can judge, so the grid never passes on
nothing. Results go to the check's own folder (``<out>/results``, ``<out>/logs``) and are
reused only when everything that could change them is unchanged (see :func:`reuse_key`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

from harness.byo import (
    USER_FILE_ENV,
    content_digest,
    data_problem,
    detect_kind,
    find_weight_file,
    read_header,
    truncation,
)
from harness.byo.hub import parse_hub_id, resolve
from harness.errors import UsageError
from harness.matrix import cellenv, cells
from harness.protocol.records import read_records

#: Exit statuses (README "Checking your own file").
EXIT_ALL_PASS = 0
EXIT_NOT_ALL_PASS = 1  # a check did not pass, a cell failed, or no check passed at all
EXIT_UNUSABLE = 2  # the file (or an option) is unusable: said before any cell runs
#: Marks a folder as a check's output, so ``--out`` never writes into a stranger's folder.
MARKER = ".adapter-compat-check"
#: Non-passing results listed in the terminal summary.
SHOWN = 12


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check",
        help="check your own LoRA / IP-Adapter file across diffusers versions",
        description=(
            "Detect the format and model of a .safetensors adapter file (or the one in a "
            "hub-like folder, or org/repo[:file] from the local Hugging Face cache), run the "
            "suites for that kind in the selected cells with the file, and write the grid to "
            "reports/check-<file stem>/. Exit 0 when every check passed, 1 when any did not "
            "(or a cell failed), 2 when the file is unusable. Example: "
            "`adapter-compat check my_lora.safetensors --cells 0.30-0.42`."
        ),
    )
    parser.add_argument(
        "path",
        metavar="FILE_OR_DIR_OR_HUB_ID",
        help=".safetensors file, a folder holding one, or org/repo[@revision][:file] from the "
        "local Hugging Face cache (nothing is downloaded)",
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
    parser.add_argument(
        "--rerun",
        action="store_true",
        default=bool(os.environ.get("ADAPTER_COMPAT_RERUN")),
        help="run cells again even when their last check of this exact file finished with "
        "identical settings, code and pins (env ADAPTER_COMPAT_RERUN=1)",
    )
    parser.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 whenever the grid was written, whatever the verdicts",
    )
    parser.add_argument(
        "--target",
        default="diffusers",
        help="the loader under test: diffusers (default) or a downstream app's releases "
        "(invokeai: its Flux LoRA converters, cells from fixtures/invokeai)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest in every cell (after --)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = locate(args.path)
    user = read_header(path)
    cut = truncation(user)
    if cut:
        raise UsageError(cut)
    kind = detect_kind(user)
    print(f"{path}: {kind.describe(user)}")
    problem = kind.understand(user)
    if problem:
        raise UsageError(f"{path}: {problem}")
    if args.detect_only:
        return EXIT_ALL_PASS
    problem = data_problem(user)
    if problem:
        raise UsageError(problem)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if shutil.which("nox") is None and not _module_available("nox"):
        raise UsageError("nox is not installed: `pip install nox uv` (cells are nox sessions)")
    suites = list(kind.suites)
    if args.target != "diffusers":
        from harness.matrix.targets import SUITES, target_cells

        if kind.name != "lora":
            raise UsageError(f"--target {args.target} checks LoRA files; this is {kind.name}")
        target_cells(args.target, args.cells)  # an unknown target or version: say so now
        suites = [f"{SUITES[args.target]}/test_byo.py"]
    else:
        chosen = cells.select_cells(args.cells)
    out = prepare_out(args.out or cellenv.REPORTS / f"check-{_safe_stem(path)}", path)
    os.environ[USER_FILE_ENV] = str(path.absolute())  # the runner hands os.environ to each cell
    install_failures: list = []
    if args.target != "diffusers":
        from harness.matrix.targets import prepare

        chosen, install_failures = prepare(args.target, args.cells, reports_dir=out)
    from harness.matrix.interrupt import MatrixInterrupted
    from harness.matrix.runner import run_matrix

    stopped: MatrixInterrupted | None = None
    try:
        outcomes = run_matrix(
            chosen,
            [*suites, *args.pytest_args],
            jobs=args.jobs,
            timeout=args.timeout,
            rerun=args.rerun,
            reports_dir=out,
            fingerprint_extra=reuse_key(path),
        )
    except MatrixInterrupted as exc:  # the cells are stopped and recorded: report them
        stopped, outcomes = exc, exc.outcomes
        print(f"adapter-compat: {exc}: {len(outcomes)} cell(s) recorded", file=sys.stderr)
    outcomes = [*outcomes, *install_failures]
    files = [p for p in (cellenv.results_path(o.cell, out) for o in outcomes) if p.exists()]
    if not files:
        raise UsageError(f"no cell wrote results; see the logs under {out / 'logs'}")
    from harness.commands.bisect import cached_first_bad
    from harness.report.write import write_report

    folder = write_report(
        files, out, update_latest=False, baseline=None, first_bad=cached_first_bad()
    )
    print(f"report: {folder / 'compat.html'}")
    status = summarize(files, [o.status for o in outcomes])
    if stopped is not None:
        return stopped.exit_code
    return EXIT_ALL_PASS if args.exit_zero else status


def locate(text: str) -> Path:
    """A local file or folder wins; otherwise ``org/repo[:file]`` from the HF cache."""
    if Path(text).exists():
        return find_weight_file(text)
    hub_id = parse_hub_id(text)
    if hub_id is None:
        return find_weight_file(text)  # raises "no such file or directory"
    return find_weight_file(resolve(hub_id))


def reuse_key(path: Path) -> str:
    """What ``check`` adds to the runner's reuse fingerprint (which already covers pins,
    torch, harness code, suites + pytest args and result-changing settings such as device,
    dtype, compile, hypothesis profile, per-check timeout and the file's path): the file's
    content, so a file replaced under the same name is checked again."""
    return f"\ncheck-file-sha256={content_digest(path)}"


def prepare_out(out: Path, source: Path) -> Path:
    """Validate ``--out`` before any cell runs: a folder of its own (never the matrix's
    ``reports/``, ``results/`` or ``logs/``), new, empty or a previous check's, writable."""
    out = out.absolute()
    resolved = out.resolve()
    matrix_owned = [
        f.absolute().resolve()
        for f in (cellenv.RESULTS_DIR, cellenv.LOGS_DIR, cellenv.REPORTS / "latest")
    ]
    if resolved == cellenv.REPORTS.absolute().resolve() or any(
        resolved == f or f in resolved.parents for f in matrix_owned
    ):
        raise UsageError(
            f"--out {out}: that is the matrix's own folder; a check writes into a folder of "
            "its own (e.g. reports/check-<name>)"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UsageError(
            f"--out {out}: folder is not empty and holds no earlier check report; "
            "choose a new or empty folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text(f"{source}\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def summarize(files: list[Path], cell_statuses: list[str]) -> int:
    """Print the verdict counts and every non-passing result; the exit status they mean."""
    counts: Counter = Counter()
    problems = []
    for record in read_records(files):
        if record.get("kind") != "check":
            continue
        verdict = record.get("verdict", "?")
        counts[verdict] += 1
        if verdict != "pass":
            why = record.get("message") or (record.get("details") or {}).get("reason") or ""
            problems.append(f"  {record.get('cell')} {record.get('check_id')}: {verdict} {why}")
    failed = [s for s in cell_statuses if s not in ("ok", "empty")]
    shown = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no checks"
    print(f"check: {shown} in {len(cell_statuses)} cell(s)" + (
        f"; {len(failed)} cell(s) failed" if failed else ""
    ))  # fmt: skip
    for line in problems[:SHOWN]:
        print(line[:300])
    if len(problems) > SHOWN:
        print(f"  ... {len(problems) - SHOWN} more in the report")
    if failed or problems or not counts.get("pass"):
        print("exit 1: not every check passed (--exit-zero to exit 0 whenever the grid is written)")
        return EXIT_NOT_ALL_PASS
    return EXIT_ALL_PASS


def _safe_stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "file"


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
