"""``adapter-compat bisect --newly-red [--max-bisects K]``: the first bad commit of each row
that main broke since the newest release, at most K commit bisects a night.

The report's ``main_vs_release`` (:mod:`harness.report.main_vs_release`) lists the rows
green in the newest release cell and red in a source cell built after it. This step runs
the ordinary commit bisect (:mod:`harness.triage.commit_bisect`: same venv, same cached
wheels and verdicts, the row's device and dtype) between the release tag (``v0.42.1``)
and the source cell's commit, for at most K of them: a bisect costs minutes per step, and
one row per root cause usually names the commit behind its siblings, so distinct root
causes go first and the rest wait for a later night (listed as not bisected). Rows whose
bisect the report already shows are not run again (``--fresh`` does).

Each finished bisect is one JSON line (kind ``bisect``) appended to
``<results>/bisect-<sha7>.jsonl`` as soon as it ends, next to the cells' records: the
next ``adapter-compat report`` over that folder reads them, shows the first bad commit in
the headline, and the issue drafts name it. Records are never rewritten; the report reads
the last one for a (row, commit).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.protocol.records import append_line
from harness.report.causes import cause_of
from harness.report.grid import KIND_BISECT
from harness.report.main_vs_release import ERROR, FOUND, NO_ANSWER, NOT_BISECTED

#: Bisects a night when neither ``--max-bisects`` nor the environment says otherwise.
DEFAULT_MAX_BISECTS = 3
#: Environment variable read when ``--max-bisects`` is not given (the nightly sets it).
MAX_BISECTS_ENV = "ADAPTER_COMPAT_MAX_BISECTS"
#: Record files are ``<results>/bisect-<sha7>.jsonl``.
RECORD_PREFIX = "bisect-"
RECORD_SCHEMA = 1


def max_bisects(flag: str | None, env: Mapping[str, str] | None = None) -> int:
    """K from ``--max-bisects`` (or the environment, or the default), as one clear line
    when it is not a whole number of bisects, 0 or more."""
    env = os.environ if env is None else env
    if flag is not None:
        where, text = "--max-bisects", flag
    else:
        where, text = MAX_BISECTS_ENV, env.get(MAX_BISECTS_ENV) or ""
        if not text.strip():
            return DEFAULT_MAX_BISECTS
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(
            f"{where} {text!r}: give a whole number of bisects, 0 or more "
            f"(default {DEFAULT_MAX_BISECTS})"
        )
    return value


@dataclass(frozen=True)
class Pick:
    """One newly red row of one comparison (both as compat.json writes them)."""

    comparison: Mapping[str, Any]
    row: Mapping[str, Any]

    @property
    def check_id(self) -> str:
        return str(self.row["check_id"])

    @property
    def commit(self) -> str:
        return str((self.comparison.get("source") or {}).get("commit") or "")


@dataclass
class Plan:
    """Which newly red rows tonight bisects, which the report already shows bisected, and
    which wait for a later night."""

    limit: int
    chosen: list[Pick] = field(default_factory=list)
    done: list[Pick] = field(default_factory=list)
    left: list[Pick] = field(default_factory=list)


def plan(doc: Mapping[str, Any], limit: int, fresh: bool = False) -> Plan:
    """At most ``limit`` rows to bisect: one per root cause first (report order), then the
    others; rows with a bisect in the report are done unless ``fresh``."""
    causes = _causes(doc)
    result = Plan(limit)
    waiting: list[Pick] = []
    for comparison in doc.get("main_vs_release") or []:
        for row in comparison.get("rows") or []:
            pick = Pick(comparison, row)
            if row.get("status") != NOT_BISECTED and not fresh:
                result.done.append(pick)
            else:
                waiting.append(pick)
    seen: set[tuple[str, str]] = set()
    first, rest = [], []
    for pick in waiting:
        key = (pick.commit, causes.get((pick.check_id, _source_cell(pick)), pick.check_id))
        (rest if key in seen else first).append(pick)
        seen.add(key)
    ordered = first + rest
    result.chosen, result.left = ordered[:limit], ordered[limit:]
    return result


def _source_cell(pick: Pick) -> str:
    return str(pick.comparison.get("source_cell") or "")


def _causes(doc: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(check id, cell) -> root cause key of every red result in the report."""
    out = {}
    for check in doc.get("checks") or []:
        for cell, result in (check.get("results") or {}).items():
            if result.get("verdict") in ("regression", "broken"):
                cause = cause_of(
                    str(check["check_id"]),
                    str(result.get("observed") or ""),
                    result.get("exc_type"),
                    str(result.get("message") or ""),
                    str(result.get("traceback") or ""),
                )
                out[(str(check["check_id"]), cell)] = cause.key
    return out


def _profile(doc: Mapping[str, Any], pick: Pick) -> dict[str, str]:
    """Device and dtype the row ran with in the source cell (the bisect steps use them)."""
    for check in doc.get("checks") or []:
        if check.get("check_id") == pick.check_id:
            result = (check.get("results") or {}).get(_source_cell(pick)) or {}
            if result.get("device") and result.get("dtype"):
                return {
                    "ADAPTER_COMPAT_DEVICE": str(result["device"]),
                    "ADAPTER_COMPAT_DTYPE": str(result["dtype"]),
                }
    return {}


# -- the clone -------------------------------------------------------------------------------
def local_clone(location: str, log: Callable[[str], None] = print) -> Path:
    """A local clone for ``location``: a path as is, a git URL cloned (or fetched) into the
    cache like a ``URL@REF`` source cell's."""
    from harness.matrix.source import clone_url, is_git_repo, split_source

    if not location:
        raise UsageError("the source cell records no origin: pass --repo with a clone of diffusers")
    _where, _ref, is_url = split_source(location)
    if is_url:
        return clone_url(location, log)
    repo = Path(location).expanduser()
    if not repo.exists():
        raise UsageError(
            f"--repo {location}: no such folder (pass --repo with a clone of diffusers that "
            "holds the source cell's commit)"
        )
    if not is_git_repo(repo):
        raise UsageError(f"{repo} is not a diffusers tree: not a git clone")
    return repo.resolve()


@dataclass(frozen=True)
class Ends:
    """The refs one comparison's bisects run between, checked once for all its rows."""

    repo: Path
    good_ref: str
    good_commit: str
    bad_commit: str
    companions_of: str


def ends_of(comparison: Mapping[str, Any], repo_text: str | None, log: Callable) -> Ends:
    """The release tag and the source commit in the clone, as one clear line when the
    clone lacks either (a mirror not yet fetched, a shallow clone without tags)."""
    from harness.matrix.source import resolve_commit
    from harness.triage.commit_bisect import release_tag

    source = comparison.get("source") or {}
    repo = local_clone(repo_text or str(source.get("origin") or ""), log)
    good_ref = release_tag(repo, str(comparison["release"]))
    commit = str(source.get("commit") or "")
    try:
        bad = resolve_commit(repo, commit)
    except UsageError:
        raise UsageError(
            f"{repo} does not hold the source cell's commit {commit[:7] or '?'} "
            f"({comparison.get('source_cell')}): fetch it, or pass --repo with a clone that does"
        ) from None
    good = resolve_commit(repo, good_ref)
    companions = str(source.get("companions_of") or comparison["release"])
    return Ends(repo, good_ref, good.sha, bad.sha, companions)


# -- records ---------------------------------------------------------------------------------
def record_path(results: Path, commit: str) -> Path:
    return results / f"{RECORD_PREFIX}{commit[:7]}.jsonl"


def bisect_record(pick: Pick, ends: Ends, result: Any, begin: float) -> dict[str, Any]:
    """The JSON line of one finished commit bisect (``result``: a CommitBisection)."""
    status = ERROR if result.error else FOUND if result.first_bad is not None else NO_ANSWER
    first_bad = None
    if result.first_bad is not None and not result.error:
        watched, _others = result.touched()
        first_bad = {
            "sha": result.first_bad.sha,
            "date": result.first_bad.date,
            "subject": result.first_bad.subject,
            "pr": result.pr_number(),
            "files": watched,
        }
    run = [s for s in result.steps if not s.cached]
    return {
        **_base(pick, ends, begin),
        "status": status,
        "first_bad": first_bad,
        "last_good": result.last_good.sha if result.last_good else None,
        "skipped_between": [c.sha for c in result.skipped_between],
        "skipped": [s.commit.sha for s in result.skipped],
        "steps": len(result.steps),
        "steps_run": len(run),
        "seconds": round(sum(s.seconds for s in run), 1),
        "error": result.error,
    }


def error_record(pick: Pick, ends: Ends, message: str, begin: float) -> dict[str, Any]:
    return {**_base(pick, ends, begin), "status": ERROR, "first_bad": None, "error": message}


def _base(pick: Pick, ends: Ends, begin: float) -> dict[str, Any]:
    return {
        "kind": KIND_BISECT,
        "schema": RECORD_SCHEMA,
        "check_id": pick.check_id,
        "nodeid": str(pick.row.get("nodeid") or ""),
        "source_cell": _source_cell(pick),
        "source_commit": ends.bad_commit,
        "release": str(pick.comparison.get("release") or ""),
        "good_ref": ends.good_ref,
        "good_commit": ends.good_commit,
        "companions_of": ends.companions_of,
        "repo": str(ends.repo),
        "started_at": begin,
        "finished_at": time.time(),
    }


# -- the step --------------------------------------------------------------------------------
@dataclass
class NightlyBisect:
    """What the step did, for its closing lines."""

    plan: Plan
    records: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [""]
        total = len(self.plan.chosen) + len(self.plan.done) + len(self.plan.left)
        out.append(
            f"newly red rows: {total}; bisected now: {len(self.records)} (limit "
            f"{self.plan.limit}), already bisected: {len(self.plan.done)}, not bisected: "
            f"{len(self.plan.left)}"
        )
        for record in self.records:
            commit = record.get("first_bad")
            if record["status"] == FOUND and commit:
                pr = f" (#{commit['pr']})" if commit.get("pr") else ""
                what = f"first bad commit {commit['sha'][:7]}{pr} {commit['subject']!r}"
            else:
                what = f"no first bad commit: {record.get('error') or record['status']}"
            out.append(f"  {record['check_id']}: {what}")
        for pick in self.plan.left:
            out.append(
                f"  {pick.check_id}: not bisected (over tonight's limit of {self.plan.limit})"
            )
        for path in self.files:
            out.append(f"records: {path}")
        return out


def run_newly_red(
    doc: Mapping[str, Any],
    limit: int,
    results: Path,
    repo: str | None = None,
    timeout: float = 1800.0,
    fresh: bool = False,
    log: Callable[[str], None] = print,
    bisect: Callable[..., Any] | None = None,
) -> NightlyBisect:
    """Bisect at most ``limit`` newly red rows of ``doc`` (a compat.json document) and
    append one record per finished bisect under ``results``. ``bisect``: the commit bisect
    (:func:`harness.triage.commit_bisect.run_commit_bisect` unless a test hands another)."""
    from harness.triage.bisect import nodeid_for

    if bisect is None:
        from harness.triage.commit_bisect import run_commit_bisect as bisect
    chosen = plan(doc, limit, fresh)
    outcome = NightlyBisect(chosen)
    ends: dict[str, Ends] = {}
    for pick in chosen.chosen:  # every clone and ref checked before the first build
        if pick.commit not in ends:
            ends[pick.commit] = ends_of(pick.comparison, repo, log)
    for index, pick in enumerate(chosen.chosen, 1):
        end = ends[pick.commit]
        log(
            f"[{index}/{len(chosen.chosen)}] {pick.check_id}: first bad commit between "
            f"{end.good_ref} and {end.bad_commit[:7]} ({pick.comparison.get('source_cell')})"
        )
        begin = time.time()
        try:
            nodeid = str(pick.row.get("nodeid") or "") or nodeid_for(pick.check_id)
            result = bisect(
                pick.check_id,
                nodeid,
                end.repo,
                end.good_ref,
                end.bad_commit,
                companions_of=end.companions_of,
                timeout=timeout,
                fresh=fresh,
                profile=_profile(doc, pick),
                log=log,
            )
            record = bisect_record(pick, end, result, begin)
            for line in result.lines():
                log(line)
        except UsageError as exc:
            record = error_record(pick, end, str(exc), begin)
            log(f"adapter-compat: bisect of {pick.check_id} stopped: {exc}")
        path = record_path(results, end.bad_commit)
        append_line(path, json.dumps(record, sort_keys=True))
        outcome.records.append(record)
        if path not in outcome.files:
            outcome.files.append(path)
    return outcome


def read_report(path: Path) -> dict[str, Any]:
    """compat.json (or its folder) as a dict; one clear line when there is none."""
    file = path / "compat.json" if path.is_dir() else path
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except OSError:
        raise UsageError(
            f"no report at {file}: write one first (`adapter-compat report RESULTS --out DIR`)"
        ) from None
    except ValueError:
        raise UsageError(f"{file} is not a compat.json report (not JSON)") from None
    if not isinstance(doc, dict) or "checks" not in doc:
        raise UsageError(f"{file} is not a compat.json report")
    return doc
