"""First bad commit: binary search over the first-parent history of a diffusers clone.

``adapter-compat bisect CHECK --repo PATH --good REF --bad REF [--fixed]``

Releases narrow a breakage to two tags; this names the commit (and its pull request).
The candidates are the commits ``git rev-list --first-parent BAD ^GOOD`` lists: the
merges of the default branch, each a whole pull request, so every step tests a state the
branch really was in. Each step builds the commit's wheel (cached per commit by
:mod:`harness.matrix.source`), swaps it into one venv that holds the companions of a
release (``--no-deps``: only diffusers changes between steps, and torch is imported from
a venv whose bytecode is already compiled), and runs the row's single pytest node with
the ordinary cell runner. That is the floor the issue asks for: build (cached) +
install + one import + the row's checks. ``pass`` is good, ``regression``/``broken`` is
bad; a commit that does not build, install or import, or where the check does not apply
(``unsupported``, a harness error), is skipped like ``git bisect skip`` and listed.
``--fixed`` looks for the first commit where a red row passes again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.matrix import cellenv, cells
from harness.matrix.source import (
    CELL_PREFIX,
    Commit,
    SourceBuildError,
    SourceTree,
    build_wheel,
    commit_info,
    create_venv,
    declared_version,
    git,
    is_git_repo,
    require_diffusers_tree,
    resolve_commit,
    uv_pip_install,
    write_facts,
)
from harness.protocol.cache import cache_dir
from harness.protocol.records import SOURCE_FILE
from harness.triage.bisect import BAD, GOOD, SKIP, bisect, read_probe, run_node

#: Where a first bad commit's touched files are listed from (the adapter-loading code).
WATCHED_DIRS = ("src/diffusers/loaders/", "src/diffusers/models/", "src/diffusers/utils/")
_PR = re.compile(r"\(#(\d+)\)")
_IMPORT_ERROR = re.compile(r"\b(ImportError|ModuleNotFoundError|SyntaxError)\b")
#: In-cell verdicts that are red (the report turns some into ``broken``; both are bad here).
RED = frozenset({"regression", "broken"})


@dataclass(frozen=True)
class Step:
    """One commit tested: its verdict for the check and what the step cost."""

    commit: Commit
    verdict: str
    kind: str
    observed: str = ""
    message: str = ""
    build_s: float = 0.0
    install_s: float = 0.0
    run_s: float = 0.0
    cached: bool = False

    @property
    def seconds(self) -> float:
        return self.build_s + self.install_s + self.run_s

    def describe(self) -> str:
        text = self.verdict + (f" ({self.observed})" if self.observed else "")
        if self.kind == SKIP and self.message:
            text += f": {self.message[:160]}"
        return text


@dataclass
class CommitBisection:
    check_id: str
    repo: Path
    good: Commit
    bad: Commit
    candidates: list[Commit]
    fixed: bool = False
    companions_of: str = ""
    steps: list[Step] = field(default_factory=list)
    first_bad: Commit | None = None
    last_good: Commit | None = None
    skipped_between: list[Commit] = field(default_factory=list)
    error: str | None = None

    @property
    def skipped(self) -> list[Step]:
        return [s for s in self.steps if s.kind == SKIP]

    def pr_number(self) -> str | None:
        match = _PR.findall(self.first_bad.subject) if self.first_bad else []
        return match[-1] if match else None

    def touched(self) -> tuple[list[str], int]:
        """Files the first bad commit changed under the watched folders, and how many
        others (against its first parent: a merge is its whole pull request)."""
        if self.first_bad is None:
            return [], 0
        sha = self.first_bad.sha
        names = git(self.repo, "diff", "--name-only", f"{sha}^1", sha, check=False).splitlines()
        watched = [n for n in names if n.startswith(WATCHED_DIRS)]
        return watched, len(names) - len(watched)

    def lines(self) -> list[str]:
        """The closing summary the command prints."""
        event = "first fixed commit" if self.fixed else "first bad commit"
        out = ["", "steps (in test order):"]
        for index, step in enumerate(self.steps, 1):
            mark = {GOOD: "✓", BAD: "✗", SKIP: "?"}[step.kind]
            cost = (
                "cached"
                if step.cached
                else f"build {step.build_s:.1f} s, install {step.install_s:.1f} s, "
                f"run {step.run_s:.1f} s"
            )
            out.append(
                f"  {index:>2}. {mark} {step.commit.short}  {step.describe():<28} [{cost}]  "
                f"{step.commit.subject[:60]}"
            )
        run = [s for s in self.steps if not s.cached]
        if run:
            total = sum(s.seconds for s in run)
            out.append(
                f"{len(run)} step(s) run ({len(self.steps) - len(run)} cached), "
                f"{total:.0f} s, {total / len(run):.1f} s per step"
            )
        if self.error:
            out.append(f"adapter-compat: bisect stopped: {self.error}")
            return out
        if self.first_bad is None:
            return out
        commit = self.first_bad
        watched, others = self.touched()
        out += [
            f"{event}: {commit.sha}",
            f"  date:    {commit.date}",
            f"  subject: {commit.subject}",
            f"  PR:      #{self.pr_number()}" if self.pr_number() else "  PR:      (none named)",
        ]
        if watched:
            out.append("  files under loaders/, models/, utils/:")
            out += [f"    {name}" for name in watched]
        else:
            out.append("  files under loaders/, models/, utils/: none")
        if others:
            out.append(f"  ({others} other file(s) changed)")
        if self.last_good is not None:
            out.append(f"  last {'red' if self.fixed else 'good'}: {self.last_good.short}")
        if self.skipped_between:
            shown = ", ".join(c.short for c in self.skipped_between)
            out.append(
                f"  could be any of {shown} or {commit.short}: the others could not be tested"
            )
        if self.skipped:
            out.append("skipped (could not be built, installed, imported or judged):")
            out += [f"  {s.commit.short} {s.describe()}" for s in self.skipped]
        return out


# -- the refs --------------------------------------------------------------------------------
def candidates_between(repo: Path, good_ref: str, bad_ref: str) -> tuple[Commit, Commit, list]:
    """(good, bad, the first-parent commits after good up to bad, oldest first), with every
    bad input as one clear line."""
    repo = Path(repo).expanduser()
    if not repo.exists():
        raise UsageError(f"--repo {repo}: no such folder")
    if not is_git_repo(repo):
        raise UsageError(f"{repo} is not a diffusers tree: not a git clone")
    bad = resolve_commit(repo, bad_ref)
    good = resolve_commit(repo, good_ref)
    require_diffusers_tree(repo, bad.sha, f"{repo} at {bad_ref}")
    require_diffusers_tree(repo, good.sha, f"{repo} at {good_ref}")
    if good.sha == bad.sha:
        raise UsageError(f"--good {good_ref} and --bad {bad_ref} are the same commit")
    if _is_ancestor(repo, bad.sha, good.sha):
        raise UsageError(
            f"--good {good_ref} is newer than --bad {bad_ref} ({bad.short} is an ancestor of "
            f"{good.short}): give the older ref as --good"
        )
    if not _is_ancestor(repo, good.sha, bad.sha) and good.date > bad.date:
        raise UsageError(
            f"--good {good_ref} ({good.date[:10]}) is newer than --bad {bad_ref} "
            f"({bad.date[:10]}): give the older ref as --good"
        )
    listed = git(repo, "rev-list", "--first-parent", "--reverse", bad.sha, f"^{good.sha}")
    shas = [s for s in listed.splitlines() if s]
    if not shas or shas[-1] != bad.sha:
        raise UsageError(f"no first-parent history from {good_ref} to {bad_ref}")
    return good, bad, [commit_info(repo, s) for s in shas]


def _is_ancestor(repo: Path, older: str, newer: str) -> bool:
    proc = subprocess.run(
        ["git", "-C", str(repo), "merge-base", "--is-ancestor", older, newer], capture_output=True
    )
    return proc.returncode == 0


def release_refs(report: dict[str, Any], check_id: str, fixed: bool) -> tuple[str, str]:
    """(older, newer) released versions around the row's change in the report: its last
    good and first bad release, or with ``fixed`` its last red and next passing one."""
    row = next((c for c in report.get("checks") or [] if c.get("check_id") == check_id), None)
    if row is None:
        raise UsageError(f"the report has no row {check_id!r}: pass --good and --bad")
    if not fixed:
        if not (row.get("last_good") and row.get("first_bad")):
            raise UsageError(
                f"the report shows no regression between two releases for {check_id}: "
                "pass --good and --bad"
            )
        return str(row["last_good"]), str(row["first_bad"])
    versions = {c.get("name"): c.get("diffusers") for c in report.get("cells") or []}
    order = [c.get("name") for c in report.get("cells") or [] if c.get("name") in versions]
    red_seen: str | None = None
    for name in order:
        result = (row.get("results") or {}).get(name) or {}
        verdict = result.get("verdict")
        if verdict in RED:
            red_seen = versions[name]
        elif verdict == "pass" and red_seen:
            return red_seen, str(versions[name])
    raise UsageError(
        f"the report shows no red release followed by a passing one for {check_id}: "
        "pass --good and --bad"
    )


def release_tag(repo: Path, version: str) -> str:
    for tag in (f"v{version}", version):
        if git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}", check=False):
            return tag
    raise UsageError(f"unknown ref: {repo} has no tag v{version} (fetch the release tags)")


def default_companions(bad_ref: str) -> str:
    """The release whose companions the steps share: the newer ref's when it is a matrix
    release tag (the row's red cell ran with those), else the newest release."""
    version = bad_ref.removeprefix("v")
    return version if version in cells.known_versions() else cells.known_versions()[-1]


# -- one step --------------------------------------------------------------------------------
@dataclass
class Bench:
    """The shared venv and where a step's results go."""

    repo: Path
    check_id: str
    nodeid: str
    companions_of: str
    timeout: float
    env: dict[str, str]
    log: Callable[[str], None] = print

    @property
    def release_cell(self) -> cells.Cell:
        return cells.select_cells(self.companions_of)[0]

    @property
    def venv(self) -> Path:
        cell = self.release_cell
        return cellenv.envdir() / f"src-bisect-{cellenv.nox_venv_name(cell.name)}"

    @property
    def results_dir(self) -> Path:
        return cache_dir("source") / "bisect" / "results"

    def ensure_venv(self) -> float:
        """The companions of the release + torch, once (its stamp says when it is current)."""
        begin = time.perf_counter()
        cell = self.release_cell
        if (self.venv / "bin" / "python").exists() and cellenv.stamp_matches(self.venv, cell):
            return 0.0
        self.log(f"bisect: building {self.venv} (companions of {self.companions_of}) ...")
        create_venv(self.venv, cell)
        ok, reason = uv_pip_install(self.venv, cellenv.install_args(cell))
        if not ok:
            raise UsageError(f"cannot install the companions of {self.companions_of}: {reason}")
        cellenv.write_stamp(self.venv, cell)
        return time.perf_counter() - begin

    def installed_commit(self) -> str:
        try:
            return json.loads((self.venv / SOURCE_FILE).read_text(encoding="utf-8"))["commit"]
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def probe(self, commit: Commit, fixed: bool) -> Step:
        tree = SourceTree(
            repo=self.repo,
            commit=commit,
            origin=str(self.repo),
            ref=commit.sha,
            declared_version=declared_version(self.repo, commit.sha),
        )
        try:
            wheel, build_s = build_wheel(tree, self.log)
        except SourceBuildError as exc:
            return Step(commit, "build-failed", SKIP, message=str(exc))
        begin = time.perf_counter()
        if self.installed_commit() != commit.sha:
            ok, reason = uv_pip_install(self.venv, ["--no-deps", "--reinstall", str(wheel)])
            if not ok:
                return Step(commit, "install-failed", SKIP, message=reason, build_s=build_s)
            write_facts(
                self.venv,
                {
                    "commit": commit.sha,
                    "date": commit.date,
                    "subject": commit.subject,
                    "declared_version": tree.declared_version,
                    "origin": str(self.repo),
                    "ref": commit.sha,
                    "dirty": "false",
                    "companions_of": self.companions_of,
                },
            )
        install_s = time.perf_counter() - begin
        cell = f"{CELL_PREFIX}{commit.short}"
        results = self.results_dir / f"{cell}.jsonl"
        begin = time.perf_counter()
        log_file = run_node(self.venv, cell, self.nodeid, results, self.timeout, self.env)
        run_s = time.perf_counter() - begin
        got = read_probe(results, commit.sha, self.check_id)
        verdict, message = got.verdict, got.message
        if verdict in ("cell-failed", "missing") and _IMPORT_ERROR.search(_tail(log_file)):
            verdict, message = "import-failed", _import_line(log_file)
        kind = kind_of(verdict, fixed)
        return Step(commit, verdict, kind, got.observed, message, build_s, install_s, run_s)


def kind_of(verdict: str, fixed: bool) -> str:
    """GOOD / BAD / SKIP of a verdict; with ``fixed`` the pass is what is searched for."""
    if verdict == "pass":
        return BAD if fixed else GOOD
    if verdict in RED:
        return GOOD if fixed else BAD
    return SKIP


def _tail(path: Path, size: int = 20000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-size:]
    except OSError:
        return ""


def _import_line(path: Path) -> str:
    lines = [line.strip() for line in _tail(path).splitlines() if _IMPORT_ERROR.search(line)]
    return lines[-1][:200] if lines else "diffusers did not import"


# -- verdict cache ---------------------------------------------------------------------------
def _cache_file() -> Path:
    return cache_dir("source") / "bisect" / "verdicts.json"


def _load_cache() -> dict[str, Any]:
    try:
        return json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save_cache(data: dict[str, Any]) -> None:
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- the search ------------------------------------------------------------------------------
def run_commit_bisect(
    check_id: str,
    nodeid: str,
    repo: Path,
    good_ref: str,
    bad_ref: str,
    fixed: bool = False,
    companions_of: str | None = None,
    timeout: float = 1800.0,
    fresh: bool = False,
    profile: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> CommitBisection:
    """Validate the refs, then binary-search the first-parent commits between them."""
    from harness.triage.bisect import code_digest

    repo = Path(repo).expanduser().resolve()
    good, bad, candidates = candidates_between(repo, good_ref, bad_ref)
    release = companions_of or default_companions(bad_ref)
    if release not in cells.known_versions():
        raise UsageError(
            f"--companions-of {release}: not a matrix release (it has "
            f"{', '.join(cells.known_versions())})"
        )
    env = dict(os.environ)
    for name, value in (profile or {}).items():
        env.setdefault(name, value)  # the row's device / dtype unless set here
    bench = Bench(repo, check_id, nodeid, release, timeout, env, log)
    result = CommitBisection(check_id, repo, good, bad, candidates, fixed, release)
    between = max(1, len(candidates) - 1)
    log(
        f"bisecting {check_id} over {len(candidates)} first-parent commit(s) after "
        f"{good_ref} ({good.short}) up to {bad_ref} ({bad.short}): about "
        f"{between.bit_length()} step(s) besides the ends; companions of {release}"
        + ("; looking for the first commit where it passes" if fixed else "")
    )
    bench.ensure_venv()
    store = _load_cache()
    verdicts = store.setdefault("verdicts", {})
    code = code_digest()
    axis = cells.torch_axis()[0].label
    settings = cellenv.result_settings(env)
    by_sha = {c.sha: c for c in [good, *candidates]}

    def probe(sha: str) -> Step:
        commit = by_sha[sha]
        key = f"{check_id}|{sha}|{release}|torch={axis}"
        known = verdicts.get(key)
        if not fresh and known and known.get("code") == code and known.get("env") == settings:
            step = Step(
                commit,
                known["verdict"],
                kind_of(known["verdict"], fixed),
                known.get("observed", ""),
                cached=True,
            )
        else:
            step = bench.probe(commit, fixed)
            if step.verdict not in ("build-failed", "install-failed", "import-failed"):
                verdicts[key] = {"verdict": step.verdict, "observed": step.observed,
                                 "code": code, "env": settings}  # fmt: skip
                _save_cache(store)
        result.steps.append(step)
        return step

    want_old, want_new = ("red", "passing") if fixed else ("passing", "red")
    for sha, want, ref in ((bad.sha, BAD, bad_ref), (good.sha, GOOD, good_ref)):
        step = probe(sha)
        log(f"  {step.commit.short} {step.describe()}")
        if step.kind != want:
            expected = want_new if want == BAD else want_old
            result.error = f"{ref} ({step.commit.short}) is not {expected}: {step.describe()}"
            if not fixed and want == BAD and step.kind == GOOD:
                result.error += (
                    f"; with the companions of {release} the newer ref passes, so diffusers "
                    "alone does not break it here: a companion package changed with the release"
                )
            if not fixed and want == GOOD and step.kind == BAD:
                result.error += (
                    f"; with the companions of {release} the older ref is red too, so a "
                    "companion package may be what changed (try --companions-of with the "
                    "older release)"
                )
            return result
    order = [good.sha, *(c.sha for c in candidates)]
    found = bisect(check_id, order, probe, lambda line: log(_short_line(line)), verify_ends=False)
    result.first_bad = by_sha[found.first_bad] if found.first_bad else None
    result.last_good = by_sha[found.last_good] if found.last_good else None
    result.skipped_between = [by_sha[s] for s in found.skipped_between]
    return result


def _short_line(line: str) -> str:
    """``bisect``'s progress line names the full sha: shorten it to 7 characters."""
    return re.sub(r"\b([0-9a-f]{7})[0-9a-f]{33}\b", r"\1", line)
