"""Reach of the checks: line and branch coverage of the installed adapter-loading code.

Why: a green grid only says something about the code the checks entered. This measures,
per cell, how much of diffusers' ``loaders/`` (and the peft code it calls) the suites run,
and names the functions and branches no check enters, so new inputs can be aimed at them.

Three steps, all inside the cell venv: :func:`start` (in the pytest process, before the
suites import anything) measures the files in :data:`MEASURED`; forked children
(``harness.cell.forked``) keep tracing and save their own data file when they leave
through ``os._exit`` (coverage's ``_exit`` patch); :func:`write_summary` (in the cell
runner, after pytest) combines the data files and writes one JSON summary per cell.
At its time limit a measured cell gets SIGTERM (coverage saves) before SIGKILL; a forked
child killed by its own guard (SIGKILL) or by a crash saves nothing: its lines are lost.
``coverage`` is imported lazily: the outer code reads :data:`REQUIREMENT` from here.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Pinned coverage.py, installed into a cell venv only when a run asks for coverage.
REQUIREMENT = "coverage==7.16.2"
#: Set (to the folder of the summaries) by ``adapter-compat run --coverage``; the cell
#: runner, the nox cell session and the pytest process read it.
COVERAGE_DIR_ENV = "ADAPTER_COMPAT_COVERAGE_DIR"
#: Set by the cell runner for the pytest process: the data file to write (plus suffixes).
DATA_FILE_ENV = "ADAPTER_COMPAT_COVERAGE_DATA"
SUMMARY_FORMAT = 1

#: What is measured: (top-level package, glob under its folder). The diffusers loaders and
#: the peft code that loading, fusing, hot-swapping and unloading go through.
MEASURED: tuple[tuple[str, str], ...] = (
    ("diffusers", "loaders/*.py"),
    ("diffusers", "utils/peft_utils.py"),
    ("diffusers", "utils/state_dict_utils.py"),
    ("peft", "tuners/lora/*.py"),
    ("peft", "tuners/tuners_utils.py"),
    ("peft", "utils/*.py"),
)

#: Modules whose reach the project sets a target for (issue #14: >= 85 % of lines in the
#: newest cell). ``loaders/lora.py`` is where lora_pipeline/lora_base lived before 0.29.
TARGET_MODULES: tuple[str, ...] = (
    "diffusers/loaders/lora_pipeline.py",
    "diffusers/loaders/lora_base.py",
    "diffusers/loaders/lora.py",
    "diffusers/loaders/lora_conversion_utils.py",
    "diffusers/loaders/peft.py",
    "diffusers/loaders/ip_adapter.py",
    "diffusers/loaders/unet.py",
    "diffusers/utils/peft_utils.py",
)
TARGET_PERCENT = 85.0

#: Modules of which only some functions are adapter code: counted are the functions whose
#: name contains one of these words (with everything nested in them). ``attn_proc`` takes
#: in ``load_attn_procs`` / ``save_attn_procs`` / ``set_attn_processor``.
FUNCTION_FILTERS: dict[str, tuple[str, ...]] = {
    "diffusers/loaders/unet.py": ("lora", "adapter", "attn_proc"),
}


# -- measuring ------------------------------------------------------------------------------
def installed_in(venv: str | os.PathLike[str]) -> bool:
    """Whether coverage.py is installed in a venv (checked without starting its python)."""
    return any(Path(venv).glob("lib/python*/site-packages/coverage/__init__.py"))


def package_dir(package: str) -> Path | None:
    """The installed folder of a top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def measured_patterns(measured: Sequence[tuple[str, str]] = MEASURED) -> list[str]:
    """coverage.py ``include`` patterns for the installed copies of :data:`MEASURED`."""
    patterns = []
    for package, glob in measured:
        folder = package_dir(package)
        if folder is not None:
            patterns.append(str(folder / glob))
    return patterns


def measured_files(measured: Sequence[tuple[str, str]] = MEASURED) -> list[tuple[str, Path]]:
    """(label, path) of every installed file in :data:`MEASURED`, entered or not; the label
    is the path below site-packages, e.g. ``diffusers/loaders/peft.py``."""
    found: dict[str, Path] = {}
    for package, glob in measured:
        folder = package_dir(package)
        if folder is None:
            continue
        for path in sorted(folder.glob(glob)):
            label = f"{package}/{path.relative_to(folder).as_posix()}"
            found.setdefault(label, path)
    return list(found.items())


def start(data_file: str | os.PathLike[str], patterns: Sequence[str] | None = None) -> Any:
    """Start measuring (branch coverage, one data file per process); returns the
    ``coverage.Coverage``. Forked children inherit the tracer, and the ``_exit`` patch makes
    their ``os._exit`` (and the pytest process's) save their data first."""
    import coverage

    cov = coverage.Coverage(
        data_file=str(data_file),
        data_suffix=True,
        branch=True,
        config_file=False,
        include=list(patterns if patterns is not None else measured_patterns()),
    )
    cov.set_option("run:patch", ["_exit"])
    cov.set_option("run:sigterm", True)  # the cell runner's time limit sends SIGTERM first
    cov.start()
    return cov


def stop(cov: Any) -> None:
    cov.stop()
    cov.save()


def data_file_for(out_dir: Path, cell: str) -> Path:
    return out_dir / f"{cell}.coverage"


def clear_data(out_dir: Path, cell: str) -> None:
    """Drop a cell's data files of an earlier run (their lines would count again)."""
    base = data_file_for(out_dir, cell)
    for path in out_dir.glob(base.name + "*"):
        path.unlink()


# -- summarising ----------------------------------------------------------------------------
@dataclass
class Function:
    """A function or method: its qualified name and where it is in the installed file."""

    name: str
    start: int
    end: int
    body_start: int
    parent: str | None = None


@dataclass
class ModuleReach:
    module: str
    path: str
    lines_covered: int
    lines_total: int
    branches_covered: int
    branches_total: int
    target: bool
    only_functions_named: list[str] = field(default_factory=list)
    unreached_functions: list[dict[str, Any]] = field(default_factory=list)
    unreached_branches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lines_percent(self) -> float:
        return percent(self.lines_covered, self.lines_total)

    @property
    def branches_percent(self) -> float:
        return percent(self.branches_covered, self.branches_total)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lines_percent"] = self.lines_percent
        data["branches_percent"] = self.branches_percent
        return data


def percent(covered: int, total: int) -> float:
    return round(100.0 * covered / total, 1) if total else 100.0


def functions_of(source: str) -> list[Function]:
    """Every function and method with its span (decorators included) and the line its
    body starts at; qualified names (``Class.method``, ``outer.inner``)."""
    found: list[Function] = []

    def walk(node: ast.AST, prefix: str, parent: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                end = child.end_lineno or child.lineno
                found.append(Function(name, first, end, child.body[0].lineno, parent))
                walk(child, name + ".", name)
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.", parent)
            else:
                walk(child, prefix, parent)

    walk(ast.parse(source), "", None)
    return found


def _in_any(line: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(a <= line <= b for a, b in spans)


def summarise_file(
    label: str,
    path: Path,
    file_data: dict[str, Any],
    name_words: Sequence[str] = (),
    target: bool = False,
) -> ModuleReach:
    """One module's reach from coverage.py's JSON report entry of that file.

    With ``name_words``, only functions whose name has one of the words (and what is nested
    in them) count. A function is unreached when no line of its body ran; it is listed
    unless its enclosing function is unreached too. Missing branches are listed only in
    functions that ran (the rest is implied by the unreached functions)."""
    functions = functions_of(path.read_text(encoding="utf-8"))
    executed = set(file_data.get("executed_lines", []))
    statements = executed | set(file_data.get("missing_lines", []))
    hit_arcs = [tuple(a) for a in file_data.get("executed_branches", [])]
    missed_arcs = [tuple(a) for a in file_data.get("missing_branches", [])]
    if name_words:
        chosen = [f for f in functions if any(w in f.name.split(".")[-1] for w in name_words)]
        spans = [(f.start, f.end) for f in chosen]
        functions = [f for f in functions if _in_any(f.start, spans)]
        statements = {n for n in statements if _in_any(n, spans)}
        executed &= statements
        hit_arcs = [a for a in hit_arcs if _in_any(a[0], spans)]
        missed_arcs = [a for a in missed_arcs if _in_any(a[0], spans)]
    reached = {f.name: any(f.body_start <= n <= f.end for n in executed) for f in functions}
    # listed unless its enclosing function is listed (one not counted, e.g. filtered out,
    # does not hide it)
    unreached = [f for f in functions if not reached[f.name] and reached.get(f.parent, True)]
    dead_spans = [(f.start, f.end) for f in functions if not reached[f.name]]
    listed_arcs = [a for a in missed_arcs if not _in_any(a[0], dead_spans)]
    return ModuleReach(
        module=label,
        path=str(path),
        lines_covered=len(executed),
        lines_total=len(statements),
        branches_covered=len(hit_arcs),
        branches_total=len(hit_arcs) + len(missed_arcs),
        target=target,
        only_functions_named=list(name_words),
        unreached_functions=[
            {
                "name": f.name,
                "start": f.start,
                "end": f.end,
                "statements": sum(1 for n in statements if f.body_start <= n <= f.end),
            }
            for f in unreached
        ],
        unreached_branches=[
            {
                "from": a[0],
                "to": a[1] if a[1] > 0 else "exit",
                "function": _innermost(functions, a[0]),
            }
            for a in sorted(listed_arcs)
        ],
    )


def _innermost(functions: Sequence[Function], line: int) -> str | None:
    around = [f for f in functions if f.start <= line <= f.end]
    return min(around, key=lambda f: f.end - f.start).name if around else None


def summarise(
    data_file: Path,
    files: Sequence[tuple[str, Path]],
    filters: dict[str, tuple[str, ...]] | None = None,
    targets: Sequence[str] = TARGET_MODULES,
) -> list[ModuleReach]:
    """Combine the per-process data files next to ``data_file`` into it, then summarise
    every file in ``files`` (entered or not)."""
    import coverage

    filters = FUNCTION_FILTERS if filters is None else filters
    cov = coverage.Coverage(data_file=str(data_file), branch=True, config_file=False)
    by_path: dict[str, Any] = {}
    parts = sorted(data_file.parent.glob(data_file.name + ".*"))
    if parts:
        cov.combine([str(p) for p in parts], keep=False)
        cov.save()
    else:  # combined before (a second summary): read it; never save over it
        cov.load()
    report = data_file.with_suffix(".report.json")
    try:
        cov.json_report(morfs=[str(p) for _, p in files], outfile=str(report), ignore_errors=True)
        by_path = {
            os.path.realpath(name): data
            for name, data in json.loads(report.read_text())["files"].items()
        }
    except coverage.exceptions.NoDataError:  # pytest died before saving: nothing ran
        pass
    finally:
        report.unlink(missing_ok=True)
    modules = []
    for label, path in files:
        data = by_path.get(os.path.realpath(path), {})
        modules.append(
            summarise_file(label, path, data, filters.get(label, ()), target=label in targets)
        )
    return modules


def totals(modules: Sequence[ModuleReach]) -> dict[str, Any]:
    lines = [sum(m.lines_covered for m in modules), sum(m.lines_total for m in modules)]
    branches = [sum(m.branches_covered for m in modules), sum(m.branches_total for m in modules)]
    return {
        "lines_covered": lines[0],
        "lines_total": lines[1],
        "lines_percent": percent(*lines),
        "branches_covered": branches[0],
        "branches_total": branches[1],
        "branches_percent": percent(*branches),
    }


def write_summary(
    out_dir: Path,
    cell: str,
    started_at: float,
    versions: dict[str, str],
    files: Sequence[tuple[str, Path]] | None = None,
) -> Path:
    """``<out_dir>/<cell>.json``: per module lines / branches covered, total and percent,
    unreached functions and branches; ``started_at`` ties it to the cell record's run."""
    files = measured_files() if files is None else files
    modules = summarise(data_file_for(out_dir, cell), files)
    target_modules = [m for m in modules if m.target]
    summary = {
        "format": SUMMARY_FORMAT,
        "kind": "coverage",
        "cell": cell,
        "started_at": started_at,
        "written_at": time.time(),
        "versions": versions,
        "target_percent": TARGET_PERCENT,
        "totals": totals(modules),
        "target_totals": totals(target_modules),
        "modules": [m.to_dict() for m in modules],
    }
    out = out_dir / f"{cell}.json"
    out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return out


def write_failure(out_dir: Path, cell: str, started_at: float, error: str) -> Path:
    """A summary that says measuring failed (our bug), so the report says so instead of
    silently showing no column for the cell."""
    summary = {
        "format": SUMMARY_FORMAT,
        "kind": "coverage",
        "cell": cell,
        "started_at": started_at,
        "error": error,
        "modules": [],
    }
    out = out_dir / f"{cell}.json"
    out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return out
