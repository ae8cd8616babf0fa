"""Call-site checker: every call in a package against its callee's signature, same version.

``scan("diffusers")`` parses the installed package (or ``path=`` an unpacked wheel / source
tree), resolves each call to a function, method or class defined in that package or in a
companion package (peft, transformers, huggingface_hub, accelerate, safetensors) and reports
every call that would raise ``TypeError`` when bound: unknown keyword, too many positionals,
multiple values, missing required argument. This is the class of break behind the ``device`` -> ``device_map`` rename
(``load_model_dict_into_meta(..., device=...)`` after ``device`` became ``device_map``).

What cannot be resolved statically is skipped and counted by reason, never guessed. Calls
under a version guard that is false for the installed companions (``if
is_peft_version(">=", "0.13"):`` with peft 0.12) and calls inside ``try/except TypeError``
are listed separately as *guarded*, not as mismatches.
"""

from __future__ import annotations

import fnmatch
import gc
import multiprocessing
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.drift.extract import summarize
from harness.drift.resolver import (
    COMPANIONS,
    Callable,
    Cls,
    External,
    Func,
    Unknown,
    World,
    bind_problems,
    iter_modules,
    render_signature,
)
from harness.drift.summaries import CallRecord, ModuleSummary
from harness.protocol.versions import version_tuple

#: ``is_<key>_version`` helper name -> distribution it tests.
VERSION_HELPERS = {
    "torch": "torch",
    "transformers": "transformers",
    "accelerate": "accelerate",
    "peft": "peft",
    "hf_hub": "huggingface_hub",
    "huggingface_hub": "huggingface_hub",
    "safetensors": "safetensors",
}
PARALLEL_MIN_FILES = 120


@dataclass
class Mismatch:
    """One call that would raise TypeError when it runs."""

    package: str
    callee_package: str
    file: str
    line: int
    col: int
    caller: str
    call: str
    callee: str
    callee_file: str
    callee_line: int
    signature: str
    problems: list[str]
    guard: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> str:
        text = f"{self.file}:{self.line}: {self.call}\n    -> {self.signature}  [{self.callee_file}:{self.callee_line}]"
        text += "\n    " + "; ".join(self.problems)
        if self.guard:
            text += f"\n    (guarded: {self.guard})"
        return text


@dataclass
class ScanResult:
    package: str
    version: str
    root: str
    companions: dict[str, str]
    files: int = 0
    calls: int = 0
    #: calls checked against a signature, by callee package.
    checked: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    dynamic: int = 0
    external: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    guarded: list[Mismatch] = field(default_factory=list)
    unparsable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def resolved(self) -> int:
        return sum(self.checked.values())

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def mismatches_for(self, callee_package: str) -> list[Mismatch]:
        return [m for m in self.mismatches if m.callee_package == callee_package]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["resolved"] = self.resolved
        out["skipped_total"] = self.skipped_total
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanResult:
        """Inverse of :meth:`to_dict` (the derived counts are recomputed)."""
        fields = {k: v for k, v in data.items() if k not in ("resolved", "skipped_total")}
        for key in ("mismatches", "guarded"):
            fields[key] = [Mismatch(**m) for m in fields.get(key, [])]
        return cls(**fields)

    def summary_line(self) -> str:
        return (
            f"{self.package} {self.version}: {self.files} files, {self.calls} calls; "
            f"checked {self.resolved} ({', '.join(f'{k} {v}' for k, v in sorted(self.checked.items()))}), "
            f"skipped {self.skipped_total}, dynamic {self.dynamic}, external {self.external}; "
            f"{len(self.mismatches)} mismatch(es), {len(self.guarded)} guarded; {self.seconds:.2f} s"
        )


# -- phase 1 -------------------------------------------------------------------------------
def _summarize_job(job: tuple[str, str, str, bool, frozenset[str]]) -> ModuleSummary:
    """One module -> its summary (run in a worker process for big packages)."""
    modname, file, relpath, is_pkg, interesting = job
    enabled = gc.isenabled()
    gc.disable()  # the AST is garbage-free until we drop it; GC passes only cost time here
    try:
        summary = summarize(
            Path(file).read_bytes(), modname, relpath, is_pkg, interesting=interesting
        )
        return summary
    finally:
        if enabled:
            gc.enable()


def default_workers() -> int:
    """Worker processes for phase 1 (env ``ADAPTER_COMPAT_DRIFT_WORKERS`` overrides)."""
    env = os.environ.get("ADAPTER_COMPAT_DRIFT_WORKERS")
    if env:
        return max(1, int(env))
    return min(os.cpu_count() or 1, 8)


def _single_threaded() -> bool:
    """True when forking is safe: this process runs no other (native) thread. Importing
    torch starts threads, so a suite process that loaded torch is not forked."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return threading.active_count() == 1 and "torch" not in sys.modules


def _pool_context() -> multiprocessing.context.BaseContext | None:
    """fork when safe; else spawn when the parent's ``__main__`` can be re-imported by the
    children (not for ``python - < script``); else None (run serially)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and _single_threaded():
        return multiprocessing.get_context("fork")
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is None or os.path.exists(main_file):
        return multiprocessing.get_context("spawn")
    return None


def summarize_package(
    world: World,
    package: str,
    workers: int | None = None,
    exclude: Iterable[str] = (),
) -> list[ModuleSummary]:
    """Phase 1 over every module of ``package`` (minus files matching an ``exclude`` glob);
    in worker processes for big packages."""
    interesting = frozenset(world.packages)
    exclude = tuple(exclude)
    jobs = [
        (modname, str(file), world.relpath(modname, file), is_pkg, interesting)
        for modname, file, is_pkg in iter_modules(package, world.packages[package])
    ]
    if exclude:
        jobs = [job for job in jobs if not any(fnmatch.fnmatchcase(job[2], pat) for pat in exclude)]
    # No on-disk cache on purpose: it would have to be a pickle, and the harness never
    # unpickles files (tests/suites/test_no_unpickling.py). A cold scan is a few seconds.
    if workers is None:
        workers = default_workers()
    ctx = _pool_context() if workers > 1 and len(jobs) >= PARALLEL_MIN_FILES else None
    if ctx is not None:
        chunk = max(4, len(jobs) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            summaries = list(pool.map(_summarize_job, jobs, chunksize=chunk))
    else:
        summaries = [_summarize_job(job) for job in jobs]
    for summary in summaries:
        world.put(summary)
    return summaries


# -- phase 2 -------------------------------------------------------------------------------
def _eval(cond: tuple, versions: dict[str, str]) -> bool | None:
    tag = cond[0]
    if tag == "ver":
        dist = VERSION_HELPERS.get(cond[1])
        have = versions.get(dist) if dist else None
        if not have or have == "unknown":
            return None
        a, b = version_tuple(have), version_tuple(cond[3])
        return {
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
            "==": a == b,
            "!=": a != b,
        }[cond[2]]
    if tag == "not":
        inner = _eval(cond[1], versions)
        return None if inner is None else not inner
    if tag in ("and", "or"):
        values = [_eval(c, versions) for c in cond[1]]
        if tag == "and":
            return False if False in values else (True if all(v is True for v in values) else None)
        return True if True in values else (False if all(v is False for v in values) else None)
    return None


def _render_cond(cond: tuple) -> str:
    tag = cond[0]
    if tag == "ver":
        return f"is_{cond[1]}_version({cond[2]!r}, {cond[3]!r})"
    if tag == "not":
        return f"not {_render_cond(cond[1])}"
    if tag in ("and", "or"):
        return "(" + f" {tag} ".join(_render_cond(c) for c in cond[1]) + ")"
    return "..."


def dead_guard(record: CallRecord, versions: dict[str, str]) -> str | None:
    """The guard that is false for the installed versions (the call never runs), if any."""
    for cond in record.guards:
        if _eval(cond, versions) is False:
            return _render_cond(cond)
    return None


class _Lines:
    def __init__(self, world: World) -> None:
        self.world = world
        self.cache: dict[str, list[str]] = {}
        self.full: dict[str, ModuleSummary] = {}

    def full_params(self, callee: Callable) -> tuple:
        """Parameters with default source text (phase 1 keeps only their presence)."""
        found = self.world.module_file(callee.module)
        if found is None:
            return callee.full_params
        if callee.module not in self.full:
            file, is_pkg = found
            self.full[callee.module] = summarize(
                file.read_bytes(), callee.module, "", is_pkg, calls=False, full=True
            )
        summary = self.full[callee.module]
        for info in summary.functions.values():
            if info.lineno == callee.lineno:
                return info.params
        for cls in summary.classes.values():
            if cls.lineno == callee.lineno and cls.fields:
                return tuple(p for p in callee.full_params)
        return callee.full_params

    def call_text(self, modname: str, record: CallRecord) -> str:
        found = self.world.module_file(modname)
        if found is None:
            return ".".join(record.chain) + "(...)"
        key = str(found[0])
        if key not in self.cache:
            self.cache[key] = found[0].read_text(encoding="utf-8", errors="replace").splitlines()
        lines = self.cache[key][record.lineno - 1 : record.end_lineno]
        if not lines:
            return ".".join(record.chain) + "(...)"
        lines[0] = lines[0][record.col :]
        text = " ".join(line.strip() for line in lines)
        return text if len(text) <= 240 else text[:237] + "..."


def targets_of(world: World, summary: ModuleSummary, record: CallRecord) -> tuple:
    if record.kind == "localdef":
        return (Func(summary.name, record.localdef),)  # type: ignore[arg-type]
    if record.kind == "name":
        return world.resolve(summary.name, record.chain, record.local)
    cls = world.class_by_qualname(summary.name, record.ctx_class or "")
    if cls is None:
        return (Unknown("enclosing class not found"),)
    access = record.access or "instance"
    if record.kind == "super":
        after = cls
        if record.super_of is not None:
            named = [
                t
                for t in world.resolve(summary.name, record.super_of)
                if not isinstance(t, Unknown)
            ]
            if len(named) != 1 or not isinstance(named[0], Cls):
                return (Unknown("super() of a class without source"),)
            after = named[0]
        return world.class_attr(cls, record.chain[0], access, after=after)
    targets = world.class_attr(cls, record.chain[0], access)
    for attr in record.chain[1:]:
        targets = tuple(t for target in targets for t in world.getattr(target, attr))
    return targets


def check_record(world: World, summary: ModuleSummary, record: CallRecord) -> tuple[str, Any]:
    """("ok", callee_pkg) | ("mismatch", (Callable, problems)) | ("skip", reason) | ("external", None)."""
    targets = targets_of(world, summary, record)
    if not targets:
        return "skip", "bound to None only"
    accepted = None
    rejected = None
    unknown = None
    external = False
    for target in targets:
        callee = world.callable_of(target)
        if isinstance(callee, Callable):
            problems = bind_problems(
                callee.params, record.npos, record.star, record.keywords, record.dstar
            )
            if problems:
                rejected = rejected or (callee, problems)
            else:
                accepted = accepted or callee
        elif isinstance(callee, External):
            external = True
        elif isinstance(callee, Unknown):
            unknown = unknown or callee.reason
        else:
            unknown = unknown or "not callable"
    if accepted is not None:
        return "ok", world.top_of(accepted.module)
    if unknown is not None:
        return "skip", unknown
    if external:
        return "external", None
    return "mismatch", rejected


def scan(
    package: str = "diffusers",
    path: str | os.PathLike[str] | None = None,
    companions: Iterable[str] = COMPANIONS,
    workers: int | None = None,
    world: World | None = None,
    exclude: Iterable[str] = (),
) -> ScanResult:
    """Check every call site of ``package`` (installed, or under ``path``). ``exclude``:
    globs over ``<package>/...`` paths of files not to scan (e.g. transformers'
    ``transformers/models/*/modular_*.py`` code-generation templates)."""
    start = time.perf_counter()
    world = world or World.for_package(package, path, companions)
    result = ScanResult(
        package=package,
        version=world.versions.get(package, "unknown"),
        root=str(world.packages[package]),
        companions={k: v for k, v in world.versions.items() if k != package},
    )
    summaries = summarize_package(world, package, workers, exclude)
    lines = _Lines(world)
    checked: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for summary in summaries:
            result.files += 1
            if summary.error:
                result.unparsable.append(f"{summary.relpath}: {summary.error}")
                continue
            result.calls += summary.counts.get("calls", 0)
            result.dynamic += summary.counts.get("dynamic", 0)
            result.external += summary.counts.get("external", 0)
            skipped["unbound name"] += summary.counts.get("unbound", 0)
            for record in summary.calls:
                status, info = check_record(world, summary, record)
                if status == "ok":
                    checked[info] += 1
                elif status == "skip":
                    skipped[info] += 1
                elif status == "external":
                    result.external += 1
                else:
                    callee, problems = info
                    callee_pkg = world.top_of(callee.module)
                    checked[callee_pkg] += 1
                    file = world.module_file(callee.module)
                    mismatch = Mismatch(
                        package=package,
                        callee_package=callee_pkg,
                        file=summary.relpath,
                        line=record.lineno,
                        col=record.col,
                        caller=f"{summary.name}.{record.caller}",
                        call=lines.call_text(summary.name, record),
                        callee=callee.qualname,
                        callee_file=world.relpath(callee.module, file[0])
                        if file
                        else callee.module,
                        callee_line=callee.lineno,
                        signature=render_signature(
                            callee.qualname.split(" ")[0].rsplit(".", 1)[-1],
                            lines.full_params(callee),
                        ),
                        problems=problems,
                    )
                    guard = dead_guard(record, world.versions)
                    if guard:
                        mismatch.guard = f"dead for installed versions: {guard}"
                    elif record.handled == "TypeError":
                        mismatch.guard = "inside try/except TypeError"
                    (result.guarded if mismatch.guard else result.mismatches).append(mismatch)
    finally:
        if enabled:
            gc.enable()
    result.checked = dict(sorted(checked.items()))
    result.skipped = {reason: n for reason, n in skipped.most_common() if n}
    result.mismatches.sort(key=lambda m: (m.file, m.line))
    result.seconds = round(time.perf_counter() - start, 3)
    return result
