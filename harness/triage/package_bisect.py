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
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from harness.errors import UsageError
from harness.matrix import cellenv, cells
from harness.matrix.source import create_venv, uv_pip_install
from harness.protocol.cache import cache_dir
from harness.triage.bisect import BAD, GOOD, SKIP, bisect, pypi_json, read_probe, released_versions
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
        pins = lock_pins(cell.lock_file)
        for name, version in self._swapped().items():
            if name != self.package and version != pins.get(name):
                self.log(f"bisect: putting {name} back to {pins[name]} (a former search moved it)")
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
        results.parent.mkdir(parents=True, exist_ok=True)
        results.unlink(missing_ok=True)
        env = dict(self.env)
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        with open(results.with_suffix(".log"), "w", encoding="utf-8") as handle:
            subprocess.run(
                [str(self.venv / "bin" / "python"), "-m", "harness.cell.run",
                 "--cell", cell, "--results", str(results), "--timeout", str(self.timeout),
                 "--", self.nodeid],
                cwd=cellenv.ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
            )  # fmt: skip
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
