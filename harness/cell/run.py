"""Run the suites of one cell in a child process and record how the cell ended.

``python -m harness.cell.run --cell NAME --results PATH [--timeout S] -- [pytest args]``

Runs inside the cell's venv. pytest gets its own process group so a hang can be killed
whole; a signal death (segfault, abort, OOM kill) becomes a ``crashed`` cell record and a
wall-clock overrun a ``timeout`` one, while every check record written before that stays
in the results file. Stdlib-only: importing torch here would double the cell's floor.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.cell import coverage as coverage_data
from harness.protocol.records import SOURCE_FILE, CellRecord, read_records, write_record
from harness.protocol.versions import installed_versions

ROOT = Path(__file__).resolve().parents[2]
FINGERPRINT_ENV = "ADAPTER_COMPAT_RUN_FINGERPRINT"
DEFAULT_TIMEOUT = float(os.environ.get("ADAPTER_COMPAT_CELL_TIMEOUT", "1800"))
#: Seconds a measured pytest gets after SIGTERM (at its time limit) to save coverage data.
COVERAGE_SAVE_GRACE_S = 30.0

#: pytest exit codes (ExitCode) -> cell status. 1 means "some check is red": that is data.
PYTEST_STATUS = {0: "ok", 1: "ok", 2: "crashed", 3: "crashed", 4: "crashed", 5: "empty"}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        split = argv.index("--")
        argv, pytest_args = argv[:split], argv[split + 1 :]
    else:
        pytest_args = []
    parser = argparse.ArgumentParser(prog="python -m harness.cell.run")
    parser.add_argument("--cell", required=True)
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--install-seconds", type=float, default=0.0)
    parser.add_argument("--keep", action="store_true", help="append instead of starting fresh")
    parser.add_argument(
        "--coverage",
        type=Path,
        default=os.environ.get(coverage_data.COVERAGE_DIR_ENV) or None,
        metavar="DIR",
        help="measure the loaders' line/branch coverage; writes DIR/<cell>.json",
    )
    return parser.parse_args(argv), pytest_args


def _selects(arg: str) -> bool:
    """``arg`` names what to run: a path or node id, or pytest's ``@file`` of them (one per
    line, e.g. the rows of an earlier run), so ``suites`` is not added to it."""
    if arg.startswith("@"):
        return Path(arg[1:]).is_file()
    return not arg.startswith("-") and Path(arg.split("::")[0]).exists()


def pytest_command(args: argparse.Namespace, pytest_args: list[str]) -> list[str]:
    has_path = any(_selects(a) for a in pytest_args)
    return [
        sys.executable, "-m", "harness.cell.pytest_main",
        *([] if has_path else ["suites"]),
        "-p", "no:cacheprovider",
        # its end-of-session gc.collect() passes walk every torch/diffusers object: ~0.8 s
        "-p", "no:unraisableexception",
        "--compat-results", str(args.results),
        "--compat-cell", args.cell,
        *_traceback_style(pytest_args),
        *pytest_args,
    ]  # fmt: skip


def _traceback_style(pytest_args: list[str]) -> list[str]:
    """One line per red check unless the caller chose a style: the record already holds the
    traceback, and pytest's long style re-parses the source of every frame (0.3 s a red
    row, a third of the LoRA formats file's wall time in a cell with many red rows)."""
    chosen = any(a.startswith("--tb") or a == "--full-trace" for a in pytest_args)
    return [] if chosen else ["--tb=line"]


def run_cell(args: argparse.Namespace, pytest_args: list[str]) -> CellRecord:
    results: Path = args.results
    results.parent.mkdir(parents=True, exist_ok=True)
    if not args.keep and results.exists():
        results.unlink()
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Venvs are reused, so let the first run write bytecode: with PYTHONDONTWRITEBYTECODE
    # (set on many CI images) every cell process recompiles torch + diffusers and the
    # import floor triples.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # Zoo models are tiny: one intra-op thread is faster than two fighting over a core,
    # and parallelism comes from running cells side by side. Override with OMP_NUM_THREADS.
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if args.coverage:
        args.coverage = args.coverage.resolve()  # pytest and the summary agree on it
        args.coverage.mkdir(parents=True, exist_ok=True)
        coverage_data.clear_data(args.coverage, args.cell)
        data_file = coverage_data.data_file_for(args.coverage, args.cell)
        env[coverage_data.DATA_FILE_ENV] = str(data_file)
    start = time.time()
    proc = subprocess.Popen(
        pytest_command(args, pytest_args), cwd=ROOT, env=env, start_new_session=True
    )
    status, message, code = "ok", "", None
    try:
        code = proc.wait(timeout=args.timeout if args.timeout > 0 else None)
    except subprocess.TimeoutExpired:
        _kill_group(proc, grace_s=COVERAGE_SAVE_GRACE_S if args.coverage else 0.0)
        status, message = "timeout", f"cell exceeded {args.timeout:g} s and was killed"
    except KeyboardInterrupt:
        _kill_group(proc)
        status, message = "crashed", "interrupted by the user"
    if status == "ok" and code is not None:
        if code < 0:
            name = (
                signal.Signals(-code).name
                if -code in signal.Signals._value2member_map_
                else str(-code)
            )
            status, message = "crashed", f"pytest died from signal {name}"
            if -code == signal.SIGKILL:
                message += " (often the out-of-memory killer)"
        else:
            status = PYTEST_STATUS.get(code, "crashed")
            if status != "ok":
                message = f"pytest exited with code {code}"
    elapsed = time.time() - start
    session = _session_timings(results)
    return CellRecord(
        cell=args.cell,
        status=status,
        message=message,
        versions=installed_versions(),
        duration_s=round(elapsed + args.install_seconds, 3),
        exit_code=code,
        phase_seconds={
            "install": round(args.install_seconds, 3),
            "pytest": round(elapsed, 3),
            **session,
        },
        started_at=start,
        fingerprint=os.environ.get(FINGERPRINT_ENV, ""),
        source=_source_facts(),
    )


def _source_facts() -> dict[str, str]:
    """The commit a source cell's venv was built from (empty for a released diffusers)."""
    path = Path(sys.prefix) / SOURCE_FILE
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in facts.items()} if isinstance(facts, dict) else {}


def _session_timings(results: Path) -> dict[str, float]:
    """Import / suite seconds the plugin wrote at session end (absent after a crash)."""
    if not results.exists():
        return {}
    found: dict[str, float] = {}
    for record in read_records([results]):
        if record.get("kind") == "session":
            for key in ("import", "suite"):
                if key in record:
                    found[key] = found.get(key, 0.0) + float(record[key])
    return found


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float = 0.0) -> None:
    """SIGKILL the pytest group; with ``grace_s``, SIGTERM first (coverage saves on it)."""
    if grace_s > 0:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    args, pytest_args = parse_args(list(sys.argv[1:] if argv is None else argv))
    record = run_cell(args, pytest_args)
    write_record(args.results, record)
    if args.coverage:
        try:
            path = coverage_data.write_summary(
                args.coverage, args.cell, record.started_at, record.versions
            )
        except Exception as exc:  # noqa: BLE001 - ours; the report names it, the cell stands
            error = f"{type(exc).__name__}: {exc}"
            path = coverage_data.write_failure(args.coverage, args.cell, record.started_at, error)
        print(f"coverage: {path}")
    print(json.dumps({"cell": record.cell, "status": record.status, "message": record.message}))
    return 0 if record.status in ("ok", "empty") else 1


if __name__ == "__main__":
    sys.exit(main())
