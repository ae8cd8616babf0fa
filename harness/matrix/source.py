"""Source cells: diffusers built from a git tree at one commit, over a release's companions.

``adapter-compat run --source SRC`` tests what is not released yet. SRC is a local checkout
(``PATH``: its HEAD plus any uncommitted change), a ref of a local clone (``PATH@REF``) or a
git URL with a ref (``URL@REF``, cloned once into the cache). The wheel is built by uv from
an export of that commit (never from the user's own tree: no build/ or egg-info left in it)
and kept per commit under ``<cache>/source/wheels/``, so a second cell or bisect step at the
same commit costs no build. Companions come from a matrix release's committed lock (the
newest by default) with its diffusers pin taken out; torch follows the usual torch axis.

The cell is named ``cell-src-<sha7>`` and its venv carries a small JSON file naming the
commit, its date and subject and the version the tree declares; the cell runner copies it
into the cell record. Stdlib-only, like the rest of ``harness.matrix``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError
from harness.matrix import cellenv, cells
from harness.protocol.cache import cache_dir
from harness.protocol.records import SOURCE_FILE

if TYPE_CHECKING:
    from harness.matrix.runner import CellOutcome

#: Cell names of source cells start with this (the report sorts them after the releases).
CELL_PREFIX = "cell-src-"
#: Where the package lives in a diffusers tree; its absence means "not a diffusers tree".
PACKAGE_INIT = "src/diffusers/__init__.py"
#: Paths whose uncommitted changes make a checkout's build differ from its HEAD.
BUILD_INPUTS = ("src", "setup.py", "pyproject.toml", "setup.cfg", "MANIFEST.in")
_VERSION_LINE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
#: ``scheme://host/`` (``file:///path`` has an empty host) or scp-like ``user@host:``
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://[^/]*/|[\w.-]+@[\w.-]+:)", re.IGNORECASE)


class SourceBuildError(Exception):
    """The tree at this commit did not build into a wheel (a bisect step skips it)."""


@dataclass(frozen=True)
class Commit:
    """One commit of a diffusers history, as the cell record and bisect print it."""

    sha: str
    date: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class SourceTree:
    """A resolved SRC: which repository, which commit, and any uncommitted change."""

    repo: Path
    commit: Commit
    origin: str
    ref: str
    declared_version: str
    #: digest of the uncommitted build inputs of a ``PATH`` checkout (None: clean)
    dirty: str | None = None

    @property
    def key(self) -> str:
        """Wheel cache key: the commit, plus the digest of any uncommitted change."""
        return self.commit.sha + (f"-{self.dirty}" if self.dirty else "")

    @property
    def label(self) -> str:
        return self.commit.short + ("-dirty" if self.dirty else "")


# -- git -----------------------------------------------------------------------------------
def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise UsageError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git")
    return proc.stdout.strip() if proc.returncode == 0 else ""


def is_git_repo(path: Path) -> bool:
    if not path.exists():
        return False
    proc = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--git-dir"], capture_output=True, text=True
    )
    return proc.returncode == 0


def resolve_commit(repo: Path, ref: str) -> Commit:
    """``ref`` (tag, branch, sha) -> the commit; an unknown ref is one clear line."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise UsageError(f"unknown ref {ref!r} in {repo}: no such tag, branch or commit")
    return commit_info(repo, proc.stdout.strip())


def commit_info(repo: Path, sha: str) -> Commit:
    sha_, date, subject = git(repo, "log", "-1", "--format=%H%x00%cI%x00%s", sha).split("\0", 2)
    return Commit(sha_, date, subject)


def require_diffusers_tree(repo: Path, sha: str, what: str) -> None:
    """A tree without ``src/diffusers/__init__.py`` is not something we can build."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{sha}:{PACKAGE_INIT}"], capture_output=True
    )
    if proc.returncode != 0:
        raise UsageError(f"{what} is not a diffusers tree: it has no {PACKAGE_INIT}")


def declared_version(repo: Path, sha: str) -> str:
    """The ``__version__`` the tree declares (``0.38.0.dev0`` between releases)."""
    text = git(repo, "show", f"{sha}:{PACKAGE_INIT}", check=False)
    match = _VERSION_LINE.search(text)
    return match.group(1) if match else "unknown"


# -- SRC -> tree -----------------------------------------------------------------------------
def split_source(text: str) -> tuple[str, str | None, bool]:
    """``SRC`` -> (location, ref or None, is_url). ``PATH@REF``'s ``@`` is the last one;
    a path that exists as written (an ``@`` in a folder name) is taken whole."""
    text = text.strip()
    if not text:
        raise UsageError("--source is empty: give PATH, PATH@REF or URL@REF")
    is_url = bool(_URL.match(text))
    if not is_url and Path(text).expanduser().exists():
        return text, None, False
    if "@" in text:
        location, ref = text.rsplit("@", 1)
        if is_url and not _URL.match(location):  # the @ was the URL's user part
            return text, None, True
        return location, ref or None, is_url
    return text, None, is_url


def resolve_source(text: str, log: Callable[[str], None] = print) -> SourceTree:
    """Turn ``SRC`` into a tree at a commit, with every bad input as one clear line."""
    location, ref, is_url = split_source(text)
    if is_url:
        if ref is None:
            raise UsageError(f"--source {text}: a git URL needs a ref (URL@REF, e.g. @main)")
        repo = clone_url(location, log)
    else:
        repo = Path(location).expanduser().resolve()
        if not repo.exists():
            raise UsageError(f"--source {location}: no such folder")
        if not is_git_repo(repo):
            raise UsageError(
                f"{repo} is not a git checkout: a source cell needs a clone of diffusers "
                "(its commit names the cell)"
            )
    commit = resolve_commit(repo, ref or "HEAD")
    require_diffusers_tree(repo, commit.sha, str(repo))
    dirty = None
    if ref is None and not is_url and not _is_bare(repo):
        dirty = _uncommitted_digest(repo)
    return SourceTree(
        repo=repo,
        commit=commit,
        origin=location,
        ref=ref or "HEAD",
        declared_version=declared_version(repo, commit.sha),
        dirty=dirty,
    )


def clone_url(url: str, log: Callable[[str], None] = print) -> Path:
    """A bare clone of ``url`` in the cache, fetched again when it exists (offline: as is)."""
    folder = cache_dir("source") / "clones" / hashlib.sha256(url.encode()).hexdigest()[:16]
    if folder.exists():
        proc = subprocess.run(
            ["git", "-C", str(folder), "fetch", "--quiet", "--tags", "origin",
             "+refs/heads/*:refs/heads/*"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            log(f"source: cannot fetch {url} (offline?): using the clone in {folder}")
        return folder
    log(f"source: cloning {url} into {folder}")
    proc = subprocess.run(
        ["git", "clone", "--quiet", "--bare", url, str(folder)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        tail = (proc.stderr.strip().splitlines() or ["git clone failed"])[-1]
        raise UsageError(f"cannot clone {url}: {tail}")
    return folder


def _is_bare(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-bare-repository", check=False) == "true"


def _changed_files(repo: Path) -> tuple[list[str], list[str]]:
    """(modified or untracked, deleted) build inputs of a checkout, relative paths."""
    changed = git(
        repo, "ls-files", "-z", "-m", "-o", "--exclude-standard", "--", *BUILD_INPUTS,
        check=False,
    )  # fmt: skip
    deleted = git(repo, "ls-files", "-z", "-d", "--", *BUILD_INPUTS, check=False)
    gone = sorted(set(filter(None, deleted.split("\0"))))
    present = sorted(p for p in set(filter(None, changed.split("\0"))) if p not in gone)
    return present, gone


def _uncommitted_digest(repo: Path) -> str | None:
    present, gone = _changed_files(repo)
    if not present and not gone:
        return None
    digest = hashlib.sha256()
    for rel in present:
        digest.update(rel.encode() + b"\0")
        path = repo / rel
        if path.is_file():
            digest.update(path.read_bytes())
    for rel in gone:
        digest.update(b"deleted\0" + rel.encode())
    return digest.hexdigest()[:12]


# -- wheel -----------------------------------------------------------------------------------
def wheel_dir(tree: SourceTree) -> Path:
    return cache_dir("source") / "wheels" / tree.key


def cached_wheel(tree: SourceTree) -> Path | None:
    found = sorted(wheel_dir(tree).glob("diffusers-*.whl"))
    return found[0] if found else None


def export_tree(tree: SourceTree, dest: Path) -> None:
    """The commit's files (``git archive``), plus a checkout's uncommitted changes."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["git", "-C", str(tree.repo), "archive", "--format=tar", tree.commit.sha],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
        archive.extractall(dest, filter="data")
    if proc.wait() != 0:
        raise SourceBuildError(f"git archive {tree.commit.short} failed")
    if tree.dirty:
        present, gone = _changed_files(tree.repo)
        for rel in present:
            source = tree.repo / rel
            if source.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / rel)
        for rel in gone:
            (dest / rel).unlink(missing_ok=True)


def build_wheel(tree: SourceTree, log: Callable[[str], None] = print) -> tuple[Path, float]:
    """The commit's wheel (cached per commit) and the seconds spent building it (0: cached).

    uv builds offline first (the build backend from uv's cache), then with the index."""
    wheel = cached_wheel(tree)
    if wheel is not None:
        return wheel, 0.0
    uv = _uv()
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="adapter-compat-src-") as tmp:
        src, out = Path(tmp) / "tree", Path(tmp) / "dist"
        export_tree(tree, src)
        error = ""
        for offline in (["--offline"], []):
            proc = subprocess.run(
                [uv, "build", "--wheel", "--quiet", *offline, "-o", str(out), str(src)],
                capture_output=True,
                text=True,
            )
            built = sorted(out.glob("diffusers-*.whl"))
            if proc.returncode == 0 and built:
                target = wheel_dir(tree)
                target.mkdir(parents=True, exist_ok=True)
                final = target / built[0].name
                partial = final.with_suffix(f".{os.getpid()}.tmp")  # two builders never share it
                shutil.copy2(built[0], partial)
                os.replace(partial, final)
                seconds = time.perf_counter() - begin
                log(f"source: built {final.name} at {tree.label} in {seconds:.1f} s")
                return final, seconds
            error = _last_error(proc.stderr) or f"uv build exited with {proc.returncode}"
    raise SourceBuildError(f"building {tree.label} failed: {error}")


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1][:300]


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise UsageError("uv is not installed: `pip install uv` (source cells are built with uv)")
    return uv


# -- the cell --------------------------------------------------------------------------------
def newest_release() -> str:
    return cells.known_versions()[-1]


def companions_lock(release: str) -> Path:
    """The release's committed lock without its diffusers pin (what a source cell installs)."""
    lock = cells.LOCK_DIR / f"{release}.txt"
    if release not in cells.known_versions() or not lock.is_file():
        raise UsageError(
            f"--companions-of {release}: not a matrix release (it has "
            f"{', '.join(cells.known_versions())})"
        )
    kept = [
        line
        for line in lock.read_text(encoding="utf-8").splitlines()
        if not re.match(r"^diffusers\s*[=<>~!]", line)
    ]
    text = f"# companions of diffusers {release} (its lock without diffusers)\n" + "\n".join(kept)
    target = cache_dir("source") / "companions" / f"{release}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_text(encoding="utf-8") != text + "\n":
        target.write_text(text + "\n", encoding="utf-8")
    return target


@dataclass(frozen=True)
class SourceCell(cells.Cell):
    """A diffusers tree at one commit, over a release's companions and one torch spec.

    ``diffusers`` holds the version the tree declares and ``released`` the commit date,
    so everything that reads a cell (runner, records, report) reads sensible values."""

    commit: Commit = field(default_factory=lambda: Commit("", "", ""))
    label: str = ""
    companions_of: str = ""
    wheel: str = ""
    origin: str = ""
    ref: str = ""

    @property
    def name(self) -> str:
        base = f"{CELL_PREFIX}{self.label}"
        return base if self.default_torch else f"{base}-torch{self.torch.label}"

    @property
    def lock_file(self) -> Path:
        return companions_lock(self.companions_of)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(super().fingerprint().encode())
        digest.update(f"{self.label}\0{self.commit.sha}\0{Path(self.wheel).name}".encode())
        return digest.hexdigest()[:16]

    def facts(self) -> dict[str, str]:
        """What the cell record carries about the tree (written into the venv)."""
        return {
            "commit": self.commit.sha,
            "date": self.commit.date,
            "subject": self.commit.subject,
            "declared_version": self.diffusers,
            "origin": self.origin,
            "ref": self.ref,
            "dirty": str(self.label.endswith("-dirty")).lower(),
            "companions_of": self.companions_of,
        }


def source_cells(
    tree: SourceTree,
    wheel: Path,
    companions_of: str | None = None,
    torch_value: str | None = None,
) -> list[SourceCell]:
    """One source cell per torch spec on the axis (the first is the default one)."""
    release = companions_of or newest_release()
    companions_lock(release)  # a bad --companions-of fails before any install
    return [
        SourceCell(
            diffusers=tree.declared_version,
            released=tree.commit.date,
            torch=spec,
            default_torch=index == 0,
            commit=tree.commit,
            label=tree.label,
            companions_of=release,
            wheel=str(wheel),
            origin=tree.origin,
            ref=tree.ref,
        )
        for index, spec in enumerate(cells.torch_axis(torch_value))
    ]


# -- install ---------------------------------------------------------------------------------
def create_venv(venv: Path, cell: cells.Cell) -> None:
    python = cells.matrix_data()["python"]
    cmd = [_uv(), "venv", "--quiet", "--clear", "--python", python, *cellenv.venv_params(cell)]
    proc = subprocess.run([*cmd, str(venv)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SourceBuildError(f"creating {venv} failed: {_last_error(proc.stderr)}")


def uv_pip_install(venv: Path, args: list[str]) -> tuple[bool, str]:
    """``uv pip install`` into ``venv``; (ok, uv's reason when not)."""
    from harness.matrix.install_errors import uv_reason

    proc = subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode == 0:
        return True, ""
    text = proc.stdout + proc.stderr
    return False, uv_reason(text) or _last_error(text) or f"uv exited with {proc.returncode}"


def write_facts(venv: Path, facts: dict[str, str]) -> None:
    (venv / SOURCE_FILE).write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")


def install_cell(cell: SourceCell) -> tuple[str | None, float]:
    """Build the cell's venv (companions + torch + the commit's wheel) unless its stamp is
    current. Returns (uv's reason when the install failed, seconds spent)."""
    begin = time.perf_counter()
    venv = cellenv.venv_path(cell)
    if (venv / "bin" / "python").exists() and cellenv.stamp_matches(venv, cell):
        return None, time.perf_counter() - begin
    try:
        create_venv(venv, cell)
    except SourceBuildError as exc:
        return str(exc), time.perf_counter() - begin
    ok, reason = uv_pip_install(venv, [*cellenv.install_args(cell), cell.wheel])
    if not ok:
        return reason, time.perf_counter() - begin
    write_facts(venv, cell.facts())
    cellenv.write_stamp(venv, cell)
    return None, time.perf_counter() - begin


def install_failed_record(cell: SourceCell, reason: str, seconds: float) -> None:
    """What the report shows for a source cell that could not be installed."""
    from harness.protocol.records import CellRecord, write_record

    results = cellenv.results_path(cell)
    results.unlink(missing_ok=True)
    write_record(
        results,
        CellRecord(
            cell=cell.name,
            status="install_failed",
            message=f"installing {cell.label} over the companions of {cell.companions_of} "
            f"failed: {reason}",
            versions={"diffusers": cell.diffusers, "torch": cell.torch.version},
            duration_s=round(seconds, 3),
            started_at=time.time(),
            source=cell.facts(),
        ),
    )


def prepare_source_cells(
    text: str, companions_of: str | None = None, log: Callable[[str], None] = print
) -> tuple[list[SourceCell], list[CellOutcome]]:
    """``--source SRC`` -> cells whose venvs are built and current (the driver runs them
    directly), and an ``install_failed`` outcome for each one that could not be built."""
    from harness.matrix.runner import CellOutcome

    tree = resolve_source(text, log)
    log(
        f"source: {tree.label} {tree.commit.date[:10]} {tree.commit.subject!r} "
        f"(declares diffusers {tree.declared_version}) from {tree.origin}"
    )
    release = companions_of or newest_release()
    companions_lock(release)
    try:
        wheel, _ = build_wheel(tree, log)
    except SourceBuildError as exc:
        failed = source_cells(tree, Path("unbuilt.whl"), release)
        for cell in failed:
            install_failed_record(cell, str(exc), 0.0)
        return [], [CellOutcome(c, "install_failed", 0.0, message=str(exc)) for c in failed]
    ready: list[SourceCell] = []
    failures: list[CellOutcome] = []
    for cell in source_cells(tree, wheel, release):
        log(f"source: installing {cell.name} over the companions of {release} ...")
        reason, seconds = install_cell(cell)
        if reason is None:
            log(f"source: {cell.name} ready ({seconds:.1f} s)")
            ready.append(cell)
        else:
            install_failed_record(cell, reason, seconds)
            failures.append(CellOutcome(cell, "install_failed", seconds, message=reason))
    return ready, failures
