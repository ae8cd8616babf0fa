"""First bad release of one companion package, everything else held at a cell's pins.

``adapter-compat bisect CHECK --package peft --good 0.18.1 --bad 0.19.1 [--cell 0.38.0]``

Between two adjacent cells diffusers and several companions change at once; when the
commit bisect says diffusers alone does not break a row, this names the package release
that does. One venv holds the bad cell's lock (diffusers included) and the cell's torch;
each step swaps in ``NAME==candidate`` with ``--no-deps`` (nothing else moves, torch is
never re-resolved) and runs the row's single pytest node with the cell runner and the
row's device and dtype. Candidates are the package's final releases strictly between
``--good`` and ``--bad`` from the package index JSON (cached, ``--offline`` reads the
cache only). ``pass`` is good, ``regression``/``broken`` bad; a release that does not
install, or where the check does not apply, is skipped and listed.

``--blame [--cell V]`` asks the question before that one: of the packages whose pins differ
between the cell before V and V (diffusers included), which one alone, put back to its older
pin over V's pins (the same ``--no-deps`` step), turns the row green.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from harness.errors import UsageError
from harness.matrix import cellenv, cells
from harness.matrix.source import create_venv, uv_pip_install
from harness.protocol.cache import cache_dir
from harness.triage.bisect import (
    BAD,
    GOOD,
    SKIP,
    bisect,
    pypi_json,
    read_probe,
    released_versions,
    run_node,
)
from harness.triage.commit_bisect import kind_of

#: Which packages a step swapped in this venv (restored to the lock's pin before the next
#: search, so a peft bisect never leaves peft moved under a transformers one).
SWAP_FILE = ".adapter-compat-swapped.json"
#: Verdicts that say the step could not test the row (skipped, like ``git bisect skip``).
UNTESTED = ("install-failed",)


@dataclass(frozen=True)
class Step:
    """One package release tested: the row's verdict there and what the step cost."""

    version: str
    verdict: str
    observed: str = ""
    message: str = ""
    install_s: float = 0.0
    run_s: float = 0.0
    cached: bool = False

    @property
    def kind(self) -> str:
        return SKIP if self.verdict in UNTESTED else kind_of(self.verdict, fixed=False)

    def describe(self) -> str:
        text = self.verdict + (f" ({self.observed})" if self.observed else "")
        if self.kind == SKIP and self.message:
            text += f": {self.message[:160]}"
        return text


@dataclass
class PackageBisection:
    check_id: str
    package: str
    cell: str
    versions: list[str]
    dates: dict[str, str]
    steps: list[Step] = field(default_factory=list)
    first_bad: str | None = None
    last_good: str | None = None
    skipped_between: list[str] = field(default_factory=list)
    error: str | None = None

    def lines(self) -> list[str]:
        """The closing summary the command prints."""
        out = ["", "steps (in test order):"]
        for index, step in enumerate(self.steps, 1):
            mark = {GOOD: "✓", BAD: "✗", SKIP: "?"}[step.kind]
            out.append(
                f"  {index:>2}. {mark} {self.package}=={step.version:<12} {step.describe():<28} "
                f"[install {step.install_s:.1f} s, run {step.run_s:.1f} s]"
            )
        if self.steps:
            total = sum(s.install_s + s.run_s for s in self.steps)
            out.append(f"{len(self.steps)} step(s), {total:.0f} s")
        if self.error:
            out.append(f"adapter-compat: bisect stopped: {self.error}")
            return out
        if self.first_bad is None:
            return out
        date = self.dates.get(self.first_bad, "date unknown")
        out.append(
            f"first bad {self.package} release: {self.first_bad} ({date}) over the pins of "
            f"cell {self.cell}; last good {self.last_good}"
        )
        if self.skipped_between:
            out.append(
                f"  could be any of {', '.join(self.skipped_between)} or {self.first_bad}: "
                "the others could not be tested"
            )
        skipped = [s for s in self.steps if s.kind == SKIP]
        if skipped:
            out.append("skipped (could not be installed or judged):")
            out += [f"  {self.package}=={s.version} {s.describe()}" for s in skipped]
        return out


# -- input -----------------------------------------------------------------------------------
def lock_pins(lock: Path) -> dict[str, str]:
    """Canonical package name -> pinned version of a committed lock (``name==version``)."""
    pins: dict[str, str] = {}
    for raw in lock.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        name, sep, version = line.partition("==")
        if sep and name and not line.startswith("-"):
            pins[canonicalize_name(name.split("[")[0])] = version.split(";")[0].strip()
    return pins


def bad_cell(report: dict[str, Any], check_id: str, cell: str | None) -> str:
    """``--cell``, else the release of the row's first regression in the report."""
    if cell is None:
        row = next((c for c in report.get("checks") or [] if c.get("check_id") == check_id), {})
        cell = row.get("first_bad")
        if not cell:
            raise UsageError(
                f"the report shows no first regression for {check_id}: pass --cell VERSION"
            )
    cell = str(cell).removeprefix("cell-")
    if cell not in cells.known_versions():
        raise UsageError(
            f"--cell {cell}: not a matrix release (it has {', '.join(cells.known_versions())})"
        )
    return cell


def pinned_package(cell: str, package: str) -> str:
    """The canonical name of ``package`` after checking the cell's lock pins it."""
    name = canonicalize_name(package)
    pins = lock_pins(cells.LOCK_DIR / f"{cell}.txt")
    if name not in pins:
        hint = "torch is the cells' axis (ADAPTER_COMPAT_TORCH), " if name == "torch" else ""
        raise UsageError(
            f"--package {package}: not pinned in cell {cell}'s lock ({hint}its companions: "
            f"{', '.join(cells.matrix_data().get('companions') or sorted(pins))})"
        )
    return name


def default_ends(cell: str, package: str) -> tuple[str, str]:
    """(the package's pin in the cell before ``cell``, its pin in ``cell``)."""
    versions = cells.known_versions()
    index = versions.index(cell)
    if index == 0:
        raise UsageError(f"cell {cell} is the oldest: pass --good and --bad")
    older = lock_pins(cells.LOCK_DIR / f"{versions[index - 1]}.txt").get(package)
    newer = lock_pins(cells.LOCK_DIR / f"{cell}.txt")[package]
    if older is None:
        raise UsageError(f"{package} is not pinned in cell {versions[index - 1]}: pass --good")
    return older, newer


def candidates(data: dict, package: str, good: str, bad: str) -> list[str]:
    """good, the package's final releases strictly between, bad (ascending)."""
    try:
        low, high = Version(good), Version(bad)
    except InvalidVersion as exc:
        raise UsageError(f"--good/--bad: {exc}") from None
    if low >= high:
        raise UsageError(f"--good {good} must be older than --bad {bad}")
    between = [v for v in released_versions(data) if low < Version(v) < high]
    if not between:
        raise UsageError(
            f"{package} has no final release between {good} and {bad}: nothing to bisect"
        )
    return [good, *between, bad]


def release_dates(data: dict) -> dict[str, str]:
    """Every listed version (pre-releases too: a lock may pin one) -> its first upload."""
    out: dict[str, str] = {}
    for version, files in (data.get("releases") or {}).items():
        stamps = [str(f.get("upload_time_iso_8601") or f.get("upload_time") or "") for f in files]
        stamps = [s for s in stamps if s]
        if stamps:
            out[version] = min(stamps)[:10]
    return out


# -- the bench -------------------------------------------------------------------------------
@dataclass
class PackageBench:
    """One venv of the bad cell's pins; a step swaps the package and runs the row."""

    check_id: str
    nodeid: str
    package: str
    cell_version: str
    timeout: float
    env: dict[str, str]
    log: Callable[[str], None] = print

    @property
    def cell(self) -> cells.Cell:
        return cells.select_cells(self.cell_version)[0]

    @property
    def venv(self) -> Path:
        return cellenv.envdir() / f"pkg-bisect-{cellenv.nox_venv_name(self.cell.name)}"

    @property
    def results_dir(self) -> Path:
        return cache_dir("source") / "package-bisect" / "results"

    def index_args(self) -> list[str]:
        """The cell's index options (find-links, offline wheelhouse) without its pins."""
        args = cellenv.install_args(self.cell)
        return [a for i, a in enumerate(args) if i >= 2 and not a.startswith("torch==")]

    def ensure_venv(self) -> None:
        """The cell's lock + torch, once; packages a former search swapped are put back."""
        cell = self.cell
        if not ((self.venv / "bin" / "python").exists() and cellenv.stamp_matches(self.venv, cell)):
            self.log(f"bisect: building {self.venv} (pins of cell {self.cell_version}) ...")
            create_venv(self.venv, cell)
            ok, reason = uv_pip_install(self.venv, cellenv.install_args(cell))
            if not ok:
                raise UsageError(f"cannot install the pins of cell {self.cell_version}: {reason}")
            cellenv.write_stamp(self.venv, cell)
            self._write_swapped({})
        self.restore_pins(keep=self.package)

    def restore_pins(self, keep: str = "") -> None:
        """Put every package a step moved back to the cell's pin (``keep`` stays as it is)."""
        pins = lock_pins(self.cell.lock_file)
        for name, version in self._swapped().items():
            if name != keep and name in pins and version != pins[name]:
                self.log(f"bisect: putting {name} back to {pins[name]} (a former step moved it)")
                self.install(name, pins[name])

    def install(self, name: str, version: str) -> tuple[bool, str]:
        args = ["--no-deps", "--reinstall-package", name, f"{name}=={version}"]
        ok, reason = uv_pip_install(self.venv, [*args, *self.index_args()])
        if ok:
            self._write_swapped({**self._swapped(), name: version})
        return ok, reason

    def _swapped(self) -> dict[str, str]:
        try:
            return json.loads((self.venv / SWAP_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _write_swapped(self, data: dict[str, str]) -> None:
        (self.venv / SWAP_FILE).write_text(json.dumps(data) + "\n", encoding="utf-8")

    def probe(self, version: str) -> Step:
        begin = time.perf_counter()
        ok, reason = self.install(self.package, version)
        install_s = time.perf_counter() - begin
        if not ok:
            return Step(version, "install-failed", message=reason, install_s=install_s)
        begin = time.perf_counter()
        verdict, observed, message = self.run_row(version)
        return Step(version, verdict, observed, message, install_s, time.perf_counter() - begin)

    def run_row(self, version: str) -> tuple[str, str, str]:
        """(verdict, observed, message) of the row's single node in the venv as it is now."""
        cell = f"{self.cell.name}+{self.package}-{version}"
        results = self.results_dir / f"{cell}.jsonl"
        run_node(self.venv, cell, self.nodeid, results, self.timeout, self.env)
        got = read_probe(results, version, self.check_id)
        return got.verdict, got.observed, got.message


# -- the search ------------------------------------------------------------------------------
def run_package_bisect(
    check_id: str,
    nodeid: str,
    package: str,
    good: str | None,
    bad: str | None,
    cell: str | None = None,
    report: dict[str, Any] | None = None,
    offline: bool = False,
    timeout: float = 1800.0,
    profile: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> PackageBisection:
    """Validate the input (one line each), then binary-search the package's releases."""
    release = bad_cell(report or {}, check_id, cell)
    name = pinned_package(release, package)
    if (good is None) != (bad is None):
        raise UsageError("give both --good and --bad, or neither (the pins of the two cells)")
    if good is None or bad is None:
        good, bad = default_ends(release, name)
    if Version(good) >= Version(bad):
        raise UsageError(f"--good {good} must be older than --bad {bad}")
    data = pypi_json(name, offline=offline)
    versions = candidates(data, name, good, bad)
    env = dict(os.environ)
    for key, value in (profile or {}).items():
        env.setdefault(key, value)  # the row's device / dtype unless set here
    bench = PackageBench(check_id, nodeid, name, release, timeout, env, log)
    result = PackageBisection(check_id, name, release, versions, release_dates(data))
    log(
        f"bisecting {check_id} over {len(versions)} {name} release(s) {good}..{bad} "
        f"({', '.join(versions[1:-1])} between) over the pins of cell {release}: about "
        f"{max(1, len(versions) - 2).bit_length()} step(s) besides the ends"
    )
    bench.ensure_venv()

    def probe(version: str) -> Step:
        step = bench.probe(version)
        result.steps.append(step)
        return step

    try:
        found = bisect(check_id, versions, probe, log)
    finally:
        pin = lock_pins(bench.cell.lock_file)[name]
        swapped = [s.version for s in result.steps if s.verdict not in UNTESTED]
        if swapped and swapped[-1] != pin:
            bench.install(name, pin)  # leave the venv as the cell pins it
    result.error = found.error
    if not found.error:
        result.first_bad, result.last_good = found.first_bad, found.last_good
        result.skipped_between = found.skipped_between
    return result


# -- blame: which changed pin flips the row ---------------------------------------------------
@dataclass(frozen=True)
class PinChange:
    """A package whose pin differs between two adjacent cells (None: not in that lock)."""

    package: str
    good: str | None
    bad: str | None


@dataclass
class Blame:
    """The row over the bad cell's pins with one changed package at a time put back."""

    check_id: str
    cell: str
    previous: str
    changes: list[PinChange]
    baseline: Step | None = None
    steps: dict[str, Step] = field(default_factory=dict)
    error: str | None = None

    @property
    def blamed(self) -> list[str]:
        """Packages that alone, put back to the older cell's pin, turn the row green."""
        return [name for name, step in self.steps.items() if step.kind == GOOD]

    def lines(self) -> list[str]:
        """The table and closing verdict the command prints."""
        out = [""]
        if self.baseline is not None:
            out.append(
                f"over the pins of cell {self.cell} the row is {self.baseline.describe()} "
                f"[run {self.baseline.run_s:.1f} s]"
            )
        if self.steps or not self.error:
            out.append(f"  {'package':<22} {self.previous + ' → ' + self.cell:<28} row put back")
        for change in self.changes:
            step = self.steps.get(change.package)
            span = f"{change.good or '(absent)'} → {change.bad or '(absent)'}"
            if step is None:
                result = "not tried" if change.good and change.bad else "cannot be put back alone"
            else:
                mark = {GOOD: "✓", BAD: "✗", SKIP: "?"}[step.kind]
                result = f"{mark} {step.describe()} [{step.install_s + step.run_s:.0f} s]"
            out.append(f"  {change.package:<22} {span:<28} {result}")
        if self.error:
            out.append(f"adapter-compat: bisect stopped: {self.error}")
            return out
        untested = [
            c.package
            for c in self.changes
            if (step := self.steps.get(c.package)) is None or step.kind == SKIP
        ]
        if self.blamed:
            out.append(f"blame: {', '.join(self.blamed)} (alone, put back, turns the row green)")
        else:
            out.append(
                "blame: none alone: no single changed package put back turns the row green "
                "(an interaction of several)"
            )
        if untested:
            out.append(f"  untested (could not be put back or judged): {', '.join(untested)}")
        return out


def changed_pins(cell: str) -> tuple[str, list[PinChange]]:
    """(the cell before ``cell``, the packages whose pins differ), diffusers and the matrix
    companions first (the likely culprits are tried first), then the rest by name."""
    versions = cells.known_versions()
    index = versions.index(cell)
    if index == 0:
        raise UsageError(f"cell {cell} is the oldest: there is no previous cell to blame against")
    previous = versions[index - 1]
    older = lock_pins(cells.LOCK_DIR / f"{previous}.txt")
    newer = lock_pins(cells.LOCK_DIR / f"{cell}.txt")
    first = ["diffusers", *map(canonicalize_name, cells.matrix_data().get("companions") or [])]
    names = [n for n in sorted(set(older) | set(newer)) if older.get(n) != newer.get(n)]
    names.sort(key=lambda n: (first.index(n) if n in first else len(first), n))
    return previous, [PinChange(n, older.get(n), newer.get(n)) for n in names]


def run_blame(
    check_id: str,
    nodeid: str,
    cell: str | None = None,
    report: dict[str, Any] | None = None,
    timeout: float = 1800.0,
    profile: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> Blame:
    """Over the bad cell's pins, put each changed package back alone and run the row.

    The row must be red over the bad cell's pins first (else nothing is there to blame);
    every step swaps one package with ``--no-deps`` and swaps it back before the next."""
    release = bad_cell(report or {}, check_id, cell)
    previous, changes = changed_pins(release)
    env = dict(os.environ)
    for key, value in (profile or {}).items():
        env.setdefault(key, value)
    bench = PackageBench(check_id, nodeid, "", release, timeout, env, log)
    result = Blame(check_id, release, previous, changes)
    log(
        f"blaming {check_id} at {previous} → {release}: {len(changes)} changed pin(s) "
        f"({', '.join(c.package for c in changes)}), one row run each plus one over the pins"
    )
    bench.ensure_venv()  # package "" : whatever a former search moved is put back
    pins = lock_pins(bench.cell.lock_file)
    begin = time.perf_counter()
    verdict, observed, message = replace(bench, package="diffusers").run_row(pins["diffusers"])
    run_s = time.perf_counter() - begin
    result.baseline = Step(pins["diffusers"], verdict, observed, message, run_s=run_s)
    if result.baseline.kind != BAD:
        result.error = (
            f"the row is {result.baseline.describe()} over the pins of cell {release}, "
            "not red: nothing to blame"
        )
        return result
    try:
        for change in changes:
            if change.good is None or change.bad is None:
                continue  # added or dropped with the release: no older pin to put back alone
            log(f"blame: {change.package} {change.bad} → {change.good} ...")
            step = replace(bench, package=change.package).probe(change.good)
            result.steps[change.package] = step
            log(f"blame: {change.package}=={change.good}: {step.describe()}")
            if step.verdict not in UNTESTED:
                bench.install(change.package, change.bad)  # back to the bad cell's pin
    finally:
        bench.restore_pins()  # an interrupted step leaves nothing moved either
    return result
