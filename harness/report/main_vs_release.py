"""The nightly's headline: "main vs the newest release: N rows newly red".

Why a headline of its own: a source cell of ``main`` is the one place a regression can be
seen before users get it. Against last night's report ("what changed") a row red on main
for a week is old news; against the newest release it is still unreleased, and still the
thing to fix before the next one. A row is *newly red* when it passes in the newest
release cell and is red (regression or broken; never unsupported, skipped or a harness
error) in a source cell built from a commit at or after that release (the tree declares
that version or a later one). Each one carries its first bad commit when
``adapter-compat bisect --newly-red`` found it: its ``bisect`` records (one JSON line per
finished bisect, kind ``bisect``, appended next to the cells' records) are read with the
grid, the last one for a (row, source commit) winning.

Only the grid's model is read here; the renderers (Markdown, HTML, JSON), the run's closing
summary and the issue drafts all take the same comparison.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.version import InvalidVersion, Version

from harness.protocol.outcomes import Verdict
from harness.report.grid import Cell, ReportModel

#: Verdicts that make a row newly red in a source cell (a red result the release lacks).
RED = frozenset({Verdict.REGRESSION.value, Verdict.BROKEN.value})

#: ``status`` of a bisect record: found a first bad commit, found none (the ends did not
#: behave: a companion, a flaky row), or stopped on an error.
FOUND = "found"
NO_ANSWER = "no-first-bad"
ERROR = "error"
#: ``status`` of a newly red row without a bisect record (over the night's limit, or the
#: step did not run).
NOT_BISECTED = "not-bisected"

#: Rows listed per comparison in the Markdown and the console before "... and N more".
MAX_LISTED = 60

_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_PR = re.compile(r"\(#(\d+)\)")


@dataclass(frozen=True)
class FirstBadCommit:
    """The commit a bisect named, as the headline and issue drafts print it."""

    sha: str
    date: str = ""
    subject: str = ""
    pr: str | None = None
    files: tuple[str, ...] = ()
    #: other commits it could be (they did not build or judge), oldest first
    could_be: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.sha[:7]

    def describe(self) -> str:
        """``abc1234 (#4242, 2026-01-02) "[LoRA] simplify loading (#4242)"``."""
        facts = [f"#{self.pr}"] if self.pr else []
        facts += [self.date[:10]] if self.date else []
        text = self.short + (f" ({', '.join(facts)})" if facts else "")
        text += f' "{self.subject}"' if self.subject else ""
        if self.could_be:
            text += f" (or one of {', '.join(s[:7] for s in self.could_be)}: untestable)"
        return text

    @classmethod
    def from_record(cls, data: Any) -> FirstBadCommit | None:
        if not isinstance(data, dict) or not data.get("sha"):
            return None
        subject = str(data.get("subject") or "")
        pr = data.get("pr") or (_PR.findall(subject)[-1:] or [None])[0]
        return cls(
            sha=str(data["sha"]),
            date=str(data.get("date") or ""),
            subject=subject,
            pr=str(pr) if pr else None,
            files=tuple(str(f) for f in data.get("files") or []),
        )


@dataclass
class NewlyRed:
    """One row green in the release and red in the source cell, with its bisect, if any."""

    check_id: str
    verdict: str
    observed: str
    message: str
    nodeid: str
    status: str = NOT_BISECTED
    first_bad: FirstBadCommit | None = None
    note: str = ""  # the bisect's error, or why it found no answer
    steps: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        """What the headline says after the row's id."""
        if self.status == FOUND and self.first_bad is not None:
            return f"first bad commit {self.first_bad.describe()}"
        if self.status == NOT_BISECTED:
            return "not bisected"
        return f"bisected, no first bad commit: {self.note or self.status}"


@dataclass
class Comparison:
    """One source cell against the newest release cell on its torch axis."""

    source: Cell
    release: Cell
    rows: list[NewlyRed] = field(default_factory=list)

    @property
    def name(self) -> str:
        """What the source is called: its branch (``main``) when the ref names one, else
        the commit."""
        ref = self.source.source.get("ref", "")
        if ref and ref != "HEAD" and not _SHA.match(ref):
            return ref
        return self.commit[:7] or self.source.name

    @property
    def commit(self) -> str:
        return self.source.source.get("commit", "")

    @property
    def release_version(self) -> str:
        return self.release.diffusers or self.release.name

    @property
    def good_ref(self) -> str:
        """The tag a commit bisect starts from (``v0.42.1``)."""
        return f"v{self.release_version}"

    def headline(self) -> str:
        """``main vs the newest release: 2 rows newly red``."""
        n = len(self.rows)
        return f"{self.name} vs the newest release: {n} row{'' if n == 1 else 's'} newly red"

    def context(self) -> str:
        """The commit and release compared, for the line under the headline:
        ``main at abc1234 (2026-11-20, "subject") in cell-src-abc1234, against diffusers
        0.42.1 in cell-0.42.1``."""
        facts = self.source.source
        short = self.commit[:7] or "?"
        details = [facts.get("date", "")[:10]] if facts.get("date") else []
        details += [f'"{facts["subject"]}"'] if facts.get("subject") else []
        text = short if self.name == short else f"{self.name} at {short}"
        text += f" ({', '.join(details)})" if details else ""
        text += (
            f" in {self.source.name}, against diffusers {self.release_version} in "
            f"{self.release.name}"
        )
        companions = facts.get("companions_of")
        if companions and companions != self.release_version:
            text += f"; the source cell ran over the companions of {companions}"
        return text

    @property
    def bisected(self) -> int:
        return sum(1 for row in self.rows if row.status != NOT_BISECTED)

    def bisect_command(self, row: NewlyRed) -> str:
        """What finds the row's first bad commit by hand."""
        repo = self.source.source.get("origin") or "PATH"
        return shlex.join(
            [
                "adapter-compat", "bisect", row.check_id, "--repo", repo,
                "--good", self.good_ref, "--bad", self.commit or self.source.name,
            ]
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "headline": self.headline(),
            "source_cell": self.source.name,
            "source": dict(self.source.source),
            "release_cell": self.release.name,
            "release": self.release_version,
            "good_ref": self.good_ref,
            "newly_red": len(self.rows),
            "bisected": self.bisected,
            "rows": [
                {
                    "check_id": row.check_id,
                    "verdict": row.verdict,
                    "observed": row.observed,
                    "message": row.message,
                    "nodeid": row.nodeid,
                    "status": row.status,
                    "first_bad_commit": _commit_dict(row.first_bad),
                    "note": row.note,
                    "steps": row.steps,
                    "seconds": row.seconds,
                    "bisect": self.bisect_command(row),
                }
                for row in self.rows
            ],
        }


def _commit_dict(commit: FirstBadCommit | None) -> dict[str, Any] | None:
    if commit is None:
        return None
    return {
        "sha": commit.sha,
        "short": commit.short,
        "date": commit.date,
        "subject": commit.subject,
        "pr": commit.pr,
        "files": list(commit.files),
        "could_be": list(commit.could_be),
    }


# -- building ---------------------------------------------------------------------------------
def newest_release(model: ReportModel, torch: str | None) -> Cell | None:
    """The newest diffusers release cell that ran (same torch as the source when one has
    it, else any torch)."""
    releases = [
        c
        for c in model.cells
        if not c.from_source and c.target == "diffusers" and not c.failed and _version(c)
    ]
    same = [c for c in releases if c.torch == torch] or releases
    return max(same, key=_version, default=None)


def _version(cell: Cell) -> Version | None:
    try:
        return Version(cell.diffusers or "")
    except InvalidVersion:
        return None


def is_after(source: Cell, release: Cell) -> bool:
    """The source tree declares the release's version or a later one (``0.43.0.dev0`` is
    after ``0.42.1``; a commit from before the release declares an older one)."""
    declared = source.source.get("declared_version") or source.diffusers or ""
    try:
        return Version(declared) >= Version(release.diffusers or "")
    except InvalidVersion:
        return False


def compare(model: ReportModel) -> list[Comparison]:
    """One comparison per source cell built at or after the newest release (newest commit
    first), each listing its newly red rows in report order."""
    found = []
    bisects = latest_bisects(model.bisections)
    for source in model.cells:
        if not source.from_source or source.failed:
            continue
        release = newest_release(model, source.torch)
        if release is None or not is_after(source, release):
            continue
        comparison = Comparison(source, release)
        for row in model.checks:
            before = row.results.get(release.name)
            after = row.results.get(source.name)
            if before is None or after is None:
                continue
            if before.verdict != Verdict.PASS.value or after.verdict not in RED:
                continue
            item = NewlyRed(
                row.check_id, after.verdict, after.observed, after.message, after.nodeid
            )
            record = bisects.get((row.check_id, comparison.commit))
            if record is not None:
                _apply(item, record)
            comparison.rows.append(item)
        found.append(comparison)
    found.sort(key=lambda c: c.source.source.get("date", ""), reverse=True)
    return found


def older_sources(model: ReportModel) -> list[tuple[Cell, Cell]]:
    """(source cell, newest release) for source cells older than that release: they are
    not compared (their changes are in a release already), and the report says so."""
    out = []
    for source in model.cells:
        if not source.from_source or source.failed:
            continue
        release = newest_release(model, source.torch)
        if release is not None and not is_after(source, release):
            out.append((source, release))
    return out


def latest_bisects(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(check id, source commit) -> the last bisect record read for it."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (str(record.get("check_id") or ""), str(record.get("source_commit") or ""))
        if all(key):
            out[key] = record
    return out


def _apply(item: NewlyRed, record: dict[str, Any]) -> None:
    status = str(record.get("status") or ERROR)
    item.status = status if status in (FOUND, NO_ANSWER, ERROR) else ERROR
    item.first_bad = FirstBadCommit.from_record(record.get("first_bad"))
    if item.first_bad is not None:
        could_be = tuple(str(s) for s in record.get("skipped_between") or [])
        item.first_bad = replace(item.first_bad, could_be=could_be)
    if item.status == FOUND and item.first_bad is None:
        item.status = ERROR
    item.note = str(record.get("error") or "")
    item.steps = int(record.get("steps") or 0)
    try:
        item.seconds = float(record.get("seconds") or 0.0)
    except (TypeError, ValueError):
        item.seconds = 0.0


# -- compat.json readers (run summary, issue drafts) ------------------------------------------
def console_lines(doc: dict[str, Any], limit: int = 10) -> list[str]:
    """The headline as plain lines for a terminal, from a compat.json document."""
    lines = []
    for comparison in doc.get("main_vs_release") or []:
        lines.append(f"{comparison['headline']} ({comparison['release']})")
        rows = comparison.get("rows") or []
        for row in rows[:limit]:
            commit = row.get("first_bad_commit")
            if row.get("status") == FOUND and commit:
                what = f"first bad commit {commit['short']}"
                what += f" (#{commit['pr']})" if commit.get("pr") else ""
            elif row.get("status") == NOT_BISECTED:
                what = "not bisected"
            else:
                what = f"no first bad commit: {row.get('note') or row.get('status')}"
            lines.append(f"  {row['check_id']}: {what}")
        if len(rows) > limit:
            lines.append(f"  ... and {len(rows) - limit} more (see compat.md)")
    return lines


def unreleased(doc: dict[str, Any], check_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(comparison, row) when ``check_id`` is newly red on a source cell of ``doc``."""
    for comparison in doc.get("main_vs_release") or []:
        for row in comparison.get("rows") or []:
            if row.get("check_id") == check_id:
                return comparison, row
    return None
