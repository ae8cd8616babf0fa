"""First bad version: binary search over *released* diffusers versions for one check.

``adapter-compat bisect CHECK --good 0.30.3 --bad 0.33.1``

1. The released versions between good and bad (patch releases too; no pre-releases, no
   yanked files) come from PyPI's JSON API, cached for a few hours (``--offline`` uses
   the cache only).
2. Each version tested becomes a cell of a private matrix under the cache folder
   (``ADAPTER_COMPAT_MATRIX_DIR``): the committed lock when the version is in the
   matrix (byte-identical, so its nox venv is reused), else companions resolved as of
   that release with the same ``uv pip compile --exclude-newer`` recipe as
   ``harness.matrix.pins`` (cached under ``locks/``).
3. A version is tested by the ordinary driver, ``adapter-compat run --cells V --no-report
   -- <nodeid>`` in a child process whose matrix / results folders point into the cache:
   same nox session, same venv reuse, same cell records as the full matrix.
4. Verdicts are cached per (check, version, torch) while the code is unchanged (the
   runner's digest of suites/ harness/ fixtures/), so a second bisect (or a wider one)
   re-runs nothing it already knows; the cell venvs are reused in any case. pass = good, regression = bad; anything else (the
   API does not exist, cell failed to install) is skipped, like ``git bisect skip``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from harness.errors import UsageError
from harness.protocol.cache import cache_root

ROOT = Path(__file__).resolve().parents[2]

#: Where PyPI data, resolved locks, the bisect matrix and verdicts are kept.
CACHE = cache_root()

PYPI_URL = "https://pypi.org/pypi/{package}/json"
PYPI_TTL_S = 6 * 3600
PACKAGE = "diffusers"

GOOD = "good"
BAD = "bad"
SKIP = "skip"


# -- released versions --------------------------------------------------------------------
def pypi_json(package: str = PACKAGE, offline: bool = False, cache: Path = CACHE) -> dict:
    """PyPI's JSON for the package, from a cache younger than PYPI_TTL_S when possible."""
    path = cache / "pypi" / f"{package}.json"
    fresh = path.is_file() and time.time() - path.stat().st_mtime < PYPI_TTL_S
    if path.is_file() and (fresh or offline):
        return json.loads(path.read_text(encoding="utf-8"))
    if offline:
        raise UsageError(f"--offline and no cached PyPI data at {path}")
    try:
        with urllib.request.urlopen(PYPI_URL.format(package=package), timeout=30) as resp:
            data = json.loads(resp.read())
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))  # stale beats nothing
        raise UsageError(f"cannot list {package} releases from PyPI: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return data


def released_versions(data: dict) -> dict[str, str]:
    """version -> first upload time (ISO, Z), for final releases with a non-yanked file."""
    out: dict[str, str] = {}
    for version, files in (data.get("releases") or {}).items():
        try:
            parsed = Version(version)
        except InvalidVersion:
            continue
        live = [f for f in files or [] if not f.get("yanked")]
        if parsed.is_prerelease or parsed.is_devrelease or not live:
            continue
        first = min(str(f.get("upload_time_iso_8601") or f.get("upload_time") or "") for f in live)
        out[version] = first.split(".")[0].rstrip("Z") + "Z"
    return dict(sorted(out.items(), key=lambda kv: Version(kv[0])))


def span(releases: dict[str, str], good: str, bad: str) -> list[str]:
    """good, every release strictly between, bad (ascending)."""
    for name, value in (("--good", good), ("--bad", bad)):
        if value not in releases:
            near = ", ".join(v for v in releases if v.startswith(value.rsplit(".", 1)[0]))
            raise UsageError(
                f"{name} {value} is not a released {PACKAGE} version"
                + (f" (releases nearby: {near})" if near else "")
            )
    if Version(good) >= Version(bad):
        raise UsageError(f"--good {good} must be older than --bad {bad}")
    return [v for v in releases if Version(good) <= Version(v) <= Version(bad)]


# -- the private matrix ---------------------------------------------------------------------
def matrix_dir(cache: Path = CACHE) -> Path:
    return cache / "bisect" / "matrix"


def results_root(cache: Path = CACHE) -> Path:
    return cache / "bisect" / "reports"


def ensure_cell(
    version: str,
    released: str,
    cache: Path = CACHE,
    log: Callable[[str], None] = print,
    compile_lock: Callable[[str, str, Path], None] | None = None,
) -> bool:
    """Add ``version`` to the bisect matrix (cells.json + locks/<v>.txt); False when its
    companions cannot be resolved (the version is then skipped)."""
    from harness.matrix import cells

    folder = matrix_dir(cache)
    locks = folder / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = locks / f"{version}.txt"
    committed = cells.LOCK_DIR / f"{version}.txt"
    if committed.is_file():
        if not lock.is_file() or lock.read_bytes() != committed.read_bytes():
            shutil.copy2(committed, lock)  # byte-identical: the matrix venv is reused
    elif not lock.is_file():
        resolved = cache / "locks" / f"{version}.txt"
        if not resolved.is_file():
            log(f"resolving companions of {PACKAGE} {version} as of its release ({released})")
            try:
                (compile_lock or resolve_lock)(version, released, resolved)
            except UsageError as exc:
                log(f"  cannot resolve {version}: {exc}")
                return False
        shutil.copy2(resolved, lock)
    _write_cells(folder, version, released)
    return True


def _write_cells(folder: Path, version: str, released: str) -> None:
    from harness.matrix import cells

    path = folder / "cells.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
    else:
        data = {k: v for k, v in cells.matrix_data().items() if k != "cells"}
        data["_comment"] = (
            "Private matrix of `adapter-compat bisect` (generated): released versions tested "
            "while bisecting, with their locks."
        )
        data["default_cells"] = []
        data["cells"] = []
    if not any(c["diffusers"] == version for c in data["cells"]):
        data["cells"].append({"diffusers": version, "released": released})
        data["cells"].sort(key=lambda c: Version(c["diffusers"]))
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def resolve_lock(version: str, released: str, target: Path) -> None:
    """``harness.matrix.pins``' recipe (uv compile, companions as of the release) into ``target``."""
    from harness.matrix import cells, pins

    torch = cells.resolve_torch(os.environ.get(cells.TORCH_ENV, "local").split(",")[0])
    cell = cells.Cell(version, released, torch)
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.in"
        req.write_text("\n".join([f"torch=={torch.version}", *pins.requirements_for(cell)]) + "\n")
        out = Path(tmp) / "lock.txt"
        proc = subprocess.run(
            pins.compile_command(cell, torch, out, req), capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["uv pip compile failed"])[-1]
            raise UsageError(tail)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            f"# {PACKAGE} {version} companions as of {pins.cutoff_for(released)}\n"
            "# resolved by `adapter-compat bisect` (not part of the committed matrix)\n"
            + out.read_text()
        )


# -- running one version --------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """What one version gave for the check."""

    version: str
    verdict: str
    observed: str = ""
    exc_type: str | None = None
    cached: bool = False
    message: str = ""

    @property
    def kind(self) -> str:
        return {"pass": GOOD, "regression": BAD}.get(self.verdict, SKIP)

    def describe(self) -> str:
        what = self.verdict + (f" ({self.observed}" if self.observed else "")
        if self.observed:
            what += f", {self.exc_type})" if self.exc_type else ")"
        return what


def run_version(
    version: str,
    check_id: str,
    nodeid: str,
    cache: Path = CACHE,
    timeout: float = 1800.0,
    log: Callable[[str], None] = print,
) -> Probe:
    """Run the single check in the cell of ``version`` via ``adapter-compat run``."""
    env = dict(os.environ)
    env["ADAPTER_COMPAT_MATRIX_DIR"] = str(matrix_dir(cache))
    env["ADAPTER_COMPAT_REPORTS"] = str(results_root(cache))
    cell = f"cell-{version}"
    results = results_root(cache) / "results" / f"{cell}.jsonl"
    results.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "harness.cli", "run", "--cells", version, "--no-report",
        "--jobs", "1", "--timeout", str(timeout), "--", nodeid,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("["):
            log(f"    {line.strip()}")
    return read_probe(results, version, check_id)


def run_node(
    venv: Path, cell: str, nodeid: str, results: Path, timeout: float, env: dict[str, str]
) -> Path:
    """Run one pytest node with ``venv``'s cell runner into ``results`` (what every bisect
    step of a commit or a package does); returns the step's log file."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.unlink(missing_ok=True)
    log_file = results.with_suffix(".log")
    env = {**env, "VIRTUAL_ENV": str(venv)}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    with open(log_file, "w", encoding="utf-8") as handle:
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "harness.cell.run",
             "--cell", cell, "--results", str(results), "--timeout", str(timeout),
             "--", nodeid],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return log_file


def read_probe(results: Path, version: str, check_id: str) -> Probe:
    from harness.protocol.records import read_records

    if not results.is_file():
        return Probe(version, "cell-failed", message="no results file was written")
    cell_status, cell_message = "", ""
    found = None
    for record in read_records([results]):
        if record.get("kind") == "cell":
            cell_status, cell_message = str(record.get("status")), str(record.get("message") or "")
        elif record.get("check_id") == check_id:
            found = record
    if found is None:
        return Probe(
            version, "cell-failed" if cell_status != "ok" else "missing", message=cell_message
        )
    return Probe(
        version,
        str(found.get("verdict")),
        str(found.get("observed") or ""),
        found.get("exc_type") or None,
        message=str(found.get("message") or "")[:300],
    )


# -- verdict cache ---------------------------------------------------------------------------
def _cache_file(cache: Path) -> Path:
    return cache / "bisect" / "verdicts.json"


def load_cache(cache: Path = CACHE) -> dict[str, Any]:
    path = _cache_file(cache)
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}
    return {}


def save_cache(data: dict[str, Any], cache: Path = CACHE) -> None:
    path = _cache_file(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def code_digest() -> str:
    """The runner's digest of suites/ harness/ fixtures/: a cached verdict is reused only
    while the checks (and what they import) are byte-identical."""
    from harness.matrix.runner import code_digest as digest

    return digest()


def torch_label() -> str:
    return os.environ.get("ADAPTER_COMPAT_TORCH", "local").split(",")[0].strip() or "local"


def known_first_bad(cache: Path | None = None) -> dict[str, str]:
    """check id -> first bad version of every finished bisection (reports, issue drafts)."""
    found = load_cache(cache or CACHE).get("first_bad", {})
    return {
        k: v["first_bad"] for k, v in found.items() if isinstance(v, dict) and v.get("first_bad")
    }


# -- the search -----------------------------------------------------------------------------
@dataclass
class Bisection:
    check_id: str
    versions: list[str]
    probes: dict[str, Probe] = field(default_factory=dict)
    last_good: str | None = None
    first_bad: str | None = None
    skipped_between: list[str] = field(default_factory=list)
    error: str | None = None

    def table(self) -> list[str]:
        lines = []
        for version in self.versions:
            probe = self.probes.get(version)
            if probe is None:
                mark, text = " ", "not tested"
            else:
                mark = {GOOD: "✓", BAD: "✗", SKIP: "?"}[probe.kind]
                text = probe.describe() + (" (cached)" if probe.cached else "")
            arrow = "  <- first bad" if version == self.first_bad else ""
            lines.append(f"  {mark} {version:<10} {text}{arrow}")
        return lines


def bisect(
    check_id: str,
    versions: Sequence[str],
    probe: Callable[[str], Probe],
    log: Callable[[str], None] = print,
    verify_ends: bool = True,
) -> Bisection:
    """Binary search for the first version whose probe is BAD after a GOOD one.

    ``versions``: ascending, first is good, last is bad. Untestable versions (SKIP) are
    stepped around; when some remain between the answer's neighbours they are listed."""
    result = Bisection(check_id, list(versions))

    def test(index: int) -> str:
        version = versions[index]
        if version not in result.probes:
            result.probes[version] = probe(version)
            p = result.probes[version]
            log(f"  {version:<10} {p.describe()}{' (cached)' if p.cached else ''}")
        return result.probes[version].kind

    lo, hi = 0, len(versions) - 1
    if verify_ends:
        if test(lo) != GOOD:
            result.error = (
                f"--good {versions[lo]} does not pass: {result.probes[versions[lo]].describe()}"
            )
            return result
        if test(hi) != BAD:
            result.error = f"--bad {versions[hi]} is not a regression: {result.probes[versions[hi]].describe()}"
            return result
    skipped: set[int] = set()
    while hi - lo > 1:
        open_ = [i for i in range(lo + 1, hi) if i not in skipped]
        if not open_:
            break
        middle = (lo + hi) / 2
        index = min(open_, key=lambda i: (abs(i - middle), i))
        kind = test(index)
        if kind == GOOD:
            lo = index
        elif kind == BAD:
            hi = index
        else:
            skipped.add(index)
    result.last_good, result.first_bad = versions[lo], versions[hi]
    result.skipped_between = [versions[i] for i in range(lo + 1, hi)]
    return result


def run_bisect(
    check_id: str,
    nodeid: str,
    good: str,
    bad: str,
    offline: bool = False,
    fresh: bool = False,
    timeout: float = 1800.0,
    cache: Path = CACHE,
    log: Callable[[str], None] = print,
) -> Bisection:
    """The whole command: versions from PyPI, cells on demand, cached verdicts."""
    releases = released_versions(pypi_json(offline=offline, cache=cache))
    versions = span(releases, good, bad)
    between = len(versions) - 2
    steps = max(1, between).bit_length()
    log(
        f"bisecting {check_id} over {len(versions)} released {PACKAGE} versions "
        f"({', '.join(versions)}): about {steps} cell run(s) besides the ends"
    )
    store = load_cache(cache)
    axis = torch_label()
    verdicts = store.setdefault("verdicts", {}).setdefault(check_id, {})
    code = code_digest()

    def probe(version: str) -> Probe:
        key = f"{version}|torch={axis}"
        known = verdicts.get(key)
        if not fresh and known and known.get("code") == code:
            return Probe(
                version,
                known["verdict"],
                known.get("observed", ""),
                known.get("exc_type"),
                cached=True,
            )
        if not ensure_cell(version, releases[version], cache, log):
            return Probe(version, "install-failed", message="companions could not be resolved")
        log(f"  running {check_id} in cell-{version} ...")
        got = run_version(version, check_id, nodeid, cache, timeout, log)
        if got.kind != SKIP or got.verdict in ("unsupported", "skipped"):
            verdicts[key] = {
                "verdict": got.verdict,
                "observed": got.observed,
                "exc_type": got.exc_type,
                "code": code,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            save_cache(store, cache)
        return got

    result = bisect(check_id, versions, probe, log)
    if result.first_bad and not result.error:
        store.setdefault("first_bad", {})[check_id] = {
            "first_bad": result.first_bad,
            "last_good": result.last_good,
            "skipped_between": result.skipped_between,
            "torch": axis,
        }
        save_cache(store, cache)
    return result


# -- check id -> pytest node ----------------------------------------------------------------
def nodeid_for(check_id: str, report: Path | None = None, root: Path = ROOT) -> str:
    """The pytest node of a check id: from a report's records when available, else by
    undoing ``plugin.check_identity`` (``lora/formats::load[x]`` ->
    ``suites/lora/test_formats.py::test_load[x]``). A node id passes through."""
    if ".py::" in check_id:
        return check_id
    if report is not None and report.is_file():
        try:
            doc = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            doc = {}
        for check in doc.get("checks") or []:
            if check.get("check_id") == check_id:
                for result in (check.get("results") or {}).values():
                    if result.get("nodeid"):
                        return str(result["nodeid"])
    module, sep, name = check_id.partition("::")
    if not sep:
        raise UsageError(f"{check_id!r} is not a check id (suite/module::name[params])")
    parts = module.split("/")
    func, bracket, params = name.partition("[")
    tail = f"test_{func}" + (f"[{params}" if bracket else "")
    folder = root / "suites" / Path(*parts[:-1])
    for candidate in (f"test_{parts[-1]}.py", f"{parts[-1]}.py"):
        path = folder / candidate
        if path.is_file():
            return f"{path.relative_to(root).as_posix()}::{tail}"
    raise UsageError(
        f"cannot find the test file of {check_id!r} under suites/ (tried "
        f"{(folder / f'test_{parts[-1]}.py').relative_to(root)}); pass the pytest node id"
    )
