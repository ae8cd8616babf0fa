"""Issue drafts: one Markdown issue per root cause of the red rows, keyed by a fingerprint.

Why per root cause (:mod:`harness.report.causes`): 130 red rows are a dozen bugs; a
maintainer reads a dozen issues, each listing every row and version it explains, and
nobody files 130. Two results share a cause when the library raised the same exception
type with the same normalised message at the same code location, or when an oracle saw
the same outcome of the same operation. A row is drafted under the cause of its newest
red result, and only while it is still red in the newest version that judged it: a row
that passes there again is "fixed in X" in the report, never an open issue.

The fingerprint is the cause's key and nothing else: messages carry addresses, shapes and
timings, and the failing rows and cells grow and shrink; none of that makes it another
bug. The rows and cells go into a separate *state* digest instead: when it changes, the
open issue gets a comment rather than a twin. Both are embedded as HTML comments,
invisible on GitHub.

A breakage red only in source cells built after the newest release (the report's
``main_vs_release``) is not in any release: its draft says so plainly and names the first
bad commit (hash, subject, PR) once ``bisect --newly-red`` has found it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.protocol import repro
from harness.report.causes import OUTCOME_TEXT, Cause, cause_of, trim_traceback
from harness.report.main_vs_release import FOUND, unreleased

#: Name prefix of source cells (``cell-src-<sha7>``): what ran a commit, not a release.
SOURCE_CELL_PREFIX = "cell-src-"

#: GitHub's limit on an issue or comment body.
MAX_BODY = 65_536

FINGERPRINT_MARK = "adapter-compat-fingerprint"
STATE_MARK = "adapter-compat-state"
_MARK_RE = {
    name: re.compile(rf"<!--\s*{name}:\s*([0-9a-f]{{8,64}})\s*-->")
    for name in (FINGERPRINT_MARK, STATE_MARK)
}

#: Placeholders filled last (random so no record text can contain them).
_SCRIPT = f"@@script-{secrets.token_hex(8)}@@"
_TRACEBACK = f"@@traceback-{secrets.token_hex(8)}@@"

#: Verdicts that judge a row: red (open) or pass (fixed).
RED = frozenset({"regression", "broken"})
JUDGED = RED | {"pass"}

#: Versions shown per cell in the issue's table, in order.
TABLE_VERSIONS = ("torch", "peft", "transformers", "huggingface_hub", "accelerate")


def fingerprint(cause: Cause) -> str:
    """Stable id of a finding: its root cause's key (never the message, rows or cells)."""
    return cause.key


def find_mark(text: str, name: str) -> str | None:
    match = _MARK_RE[name].search(text or "")
    return match.group(1) if match else None


def last_mark(texts: Sequence[str], name: str) -> str | None:
    """The newest marker among texts (issue body first, then comments oldest -> newest)."""
    found = None
    for text in texts:
        found = find_mark(text, name) or found
    return found


@dataclass
class Draft:
    fingerprint: str
    state: str
    title: str
    body: str
    #: check id -> the cells where it fails with this cause (report order)
    rows: dict[str, list[str]] = field(default_factory=dict)
    update: str = ""  # the comment posted when an open issue's state differs

    @property
    def file_name(self) -> str:
        return f"{self.fingerprint}.md"

    @property
    def check_id(self) -> str:
        """The first row (the sample the body details)."""
        return next(iter(self.rows), "")

    @property
    def cells(self) -> list[str]:
        """Every cell where some row fails with this cause, once each."""
        return list(dict.fromkeys(cell for cells in self.rows.values() for cell in cells))

    def to_index(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "state": self.state,
            "title": self.title,
            "check_id": self.check_id,
            "rows": self.rows,
            "cells": self.cells,
            "file": self.file_name,
        }


# -- building ------------------------------------------------------------------------------
@dataclass
class _Group:
    """Rows sharing one root cause, while being built."""

    cause: Cause
    rows: dict[str, list[str]] = field(default_factory=dict)  # check id -> failing cells


def new_regression_keys(doc: Mapping[str, Any]) -> set[tuple[str, str]] | None:
    """(check_id, cell) pairs that are new since the report's baseline; None when the
    report had no baseline (first run: all of it is new)."""
    changes = doc.get("changes")
    if not isinstance(changes, Mapping):
        return None
    return {(c["check_id"], c["cell"]) for c in changes.get("new_regressions") or []}


def _cause(check_id: str, result: Mapping[str, Any]) -> Cause:
    return cause_of(
        check_id,
        str(result.get("observed") or ""),
        result.get("exc_type"),
        str(result.get("message") or ""),
        str(result.get("traceback") or ""),
    )


def newest_judged(
    check: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]
) -> list[tuple[str, Mapping[str, Any]]]:
    """Per torch axis, the newest (cell, result) that passed or was red: where a row is
    judged open (red) or fixed (pass). Skipped, unsupported and missing cells say nothing."""
    results: Mapping[str, Any] = check.get("results") or {}
    newest: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for cell in cells:  # report order: ascending versions
        result = results.get(cell["name"])
        if result and result.get("verdict") in JUDGED:
            newest[str(cell.get("torch"))] = (cell["name"], result)
    return list(newest.values())


def build_drafts(
    doc: Mapping[str, Any],
    everything: bool = False,
    bisected: Mapping[str, str] | None = None,
) -> list[Draft]:
    """One draft per root cause among rows still red in the newest version that judged
    them; in report order. Without ``everything``, only causes with a new regression since
    the report's baseline (all of them when it had none).

    ``bisected``: check id -> first bad release found by ``adapter-compat bisect``."""
    checks = [c for c in doc.get("checks") or [] if isinstance(c, Mapping)]
    cells = [c for c in doc.get("cells") or [] if isinstance(c, Mapping)]
    new = None if everything else new_regression_keys(doc)
    groups: dict[str, _Group] = {}
    for check in checks:
        check_id = str(check["check_id"])
        results: Mapping[str, Any] = check.get("results") or {}
        for _cell, result in newest_judged(check, cells):
            if result.get("verdict") not in RED:
                continue  # passes in the newest version: fixed, not an open issue
            cause = _cause(check_id, result)
            failing = [
                c["name"]
                for c in cells
                if (results.get(c["name"]) or {}).get("verdict") in RED
                and _cause(check_id, results[c["name"]]).key == cause.key
            ]
            group = groups.setdefault(cause.key, _Group(cause))
            listed = group.rows.setdefault(check_id, [])
            listed.extend(c for c in failing if c not in listed)
    checks_by_id = {str(c["check_id"]): c for c in checks}
    drafts = []
    for key, group in groups.items():
        if new is not None and not any(
            (check_id, cell) in new for check_id, cells_ in group.rows.items() for cell in cells_
        ):
            continue
        drafts.append(_draft(doc, checks_by_id, cells, key, group, bisected or {}))
    return drafts


def _draft(
    doc: Mapping[str, Any],
    checks: Mapping[str, Mapping[str, Any]],
    cells: list[Mapping[str, Any]],
    fp: str,
    group: _Group,
    bisected: Mapping[str, str],
) -> Draft:
    labels = {c["name"]: str(c.get("label") or c.get("diffusers") or c["name"]) for c in cells}
    cause = group.cause
    sample_id = next(iter(group.rows))
    check = checks[sample_id]
    results: Mapping[str, Any] = check.get("results") or {}
    sample_cell = group.rows[sample_id][-1]
    sample = results[sample_cell]
    observed = str(sample.get("observed") or "")
    first_bad = check.get("first_bad")
    last_good = check.get("last_good")
    main_only = _main_only(doc, group)
    facts: dict[str, Any] = {
        "rows": {
            check_id: [_state_cell(c) for c in cells_] for check_id, cells_ in group.rows.items()
        },
        "first_bad": {c: checks[c].get("first_bad") for c in group.rows},
        "bisected": {c: bisected.get(c) for c in group.rows},
    }
    if main_only is not None:  # a first bad commit found later is news for the open issue
        facts["commit"] = {c: _found_commit(main_only, c) for c in group.rows}
    state = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
    since = _since(group, checks, bisected, labels)
    if main_only is not None:
        since = _since_commit(main_only, group)
    n_rows = len(group.rows)
    what = f"{cause.exc_type} in {cause.where}" if cause.raised else f"{observed} on {cause.where}"
    title = f"[adapter-compat] {what}: {n_rows} row(s) fail {since}"
    if len(title) > 250:
        title = title[:249] + "…"
    markers = f"<!-- {FINGERPRINT_MARK}: {fp} -->\n<!-- {STATE_MARK}: {state} -->\n"
    first_bad_text = _first_bad_text(
        sample_id, first_bad, last_good, bisected.get(sample_id), labels[group.rows[sample_id][0]]
    )
    if main_only is not None:
        first_bad_text = _unreleased_text(main_only, sample_id)
    expected = " | ".join(sample.get("expected") or []) or "?"
    script = repro.build(sample_id, sample_cell, sample)
    message = str(sample.get("message") or "(no message)")
    traceback = trim_traceback(str(sample.get("traceback") or ""))
    params = check.get("params") or {}
    exc = f" raising `{cause.exc_type}`" if cause.raised else ""
    parts = [
        markers,
        f"**Root cause:** {_root_cause_text(cause)}",
        "",
        *(
            [f"**Unreleased:** {_unreleased_text(main_only, sample_id)}", ""]
            if main_only is not None
            else []
        ),
        f"It explains **{n_rows} red row(s)**; each is still red in the newest version "
        "that judged it.",
        "",
        "### Affected rows",
        "",
        _rows_table(group, checks, labels, bisected),
        "",
        f"### Sample: `{sample_id}` in {labels[sample_cell]}",
        "",
        f"**First bad version:** {first_bad_text}",
        "",
        f"- expected: `{expected}`",
        f"- observed: `{observed}` ({OUTCOME_TEXT.get(observed, 'see the report')}){exc}",
        "",
        _fence(message[:4000]),
        "",
        "#### Versions",
        "",
        _versions_table(check, cells, labels),
        "",
        f"#### Reproduction ({script.kind})",
        "",
        _repro_note(script),
        "",
        _SCRIPT,
        "",
    ]
    if params:
        parts += [
            "#### Parameters",
            "",
            _fence(json.dumps(params, indent=2, sort_keys=True), "json"),
            "",
        ]
    if traceback:
        parts += [
            "<details><summary>Traceback (test-runner frames hidden)</summary>",
            "",
            _TRACEBACK,
            "",
            "</details>",
            "",
        ]
    run = doc.get("run") or "?"
    parts += [
        "---",
        f"Filed by adapter-compat {__version__} from report run `{run}` "
        f"({doc.get('generated_at', '?')}). Fingerprint `{fp}` = root cause (exception type, "
        "normalised message and code location, or outcome and operation): while this issue is "
        "open, later runs comment here instead of filing again.",
    ]
    body = _fit("\n".join(parts), script.script, traceback)
    update = _update_comment(doc, group, labels, first_bad_text, state)
    return Draft(fp, state, title, body, dict(group.rows), update)


def _state_cell(cell: str) -> str:
    """A cell as the state digest sees it: every source cell is one column (main moves to
    a new ``cell-src-<sha7>`` each night; that alone is no news for an open issue)."""
    return SOURCE_CELL_PREFIX if cell.startswith(SOURCE_CELL_PREFIX) else cell


def _main_only(doc: Mapping[str, Any], group: _Group) -> dict[str, Any] | None:
    """check id -> (comparison, row) of the report's ``main_vs_release`` when every row
    of the group is red only in source cells and newly red there (passes in the newest
    release): a breakage no release has. None otherwise."""
    cells = [cell for failing in group.rows.values() for cell in failing]
    if not cells or not all(cell.startswith(SOURCE_CELL_PREFIX) for cell in cells):
        return None
    found = {check_id: unreleased(doc, check_id) for check_id in group.rows}
    if any(item is None for item in found.values()):
        return None
    return found


def _found_commit(main_only: Mapping[str, Any], check_id: str) -> str | None:
    _comparison, row = main_only[check_id]
    commit = row.get("first_bad_commit") if row.get("status") == FOUND else None
    return str(commit["sha"]) if commit else None


def _since_commit(main_only: Mapping[str, Any], group: _Group) -> str:
    """``on main since abc1234 (unreleased)``, or ``on main at def5678 (unreleased)``
    while no bisect has named the commit."""
    comparison, _row = next(iter(main_only.values()))
    name = comparison.get("name") or "main"
    for check_id in group.rows:
        sha = _found_commit(main_only, check_id)
        if sha:
            return f"on {name} since {sha[:7]} (unreleased)"
    commit = str((comparison.get("source") or {}).get("commit") or "")[:7]
    return f"on {name} at {commit or '?'} (unreleased)"


def _unreleased_text(main_only: Mapping[str, Any], check_id: str) -> str:
    """Plain words: not in any release; the commit that introduced it when known."""
    comparison, row = main_only[check_id]
    name = comparison.get("name") or "main"
    release = comparison.get("release") or "?"
    commit = row.get("first_bad_commit") if row.get("status") == FOUND else None
    if commit:
        facts = [f"#{commit['pr']}"] if commit.get("pr") else []
        facts += [str(commit.get("date") or "")[:10]] if commit.get("date") else []
        text = (
            f"not in any release; introduced on {name} by `{commit['sha']}` "
            f'"{_inline(str(commit.get("subject") or ""))}"'
            + (f" ({', '.join(facts)})" if facts else "")
        )
        if commit.get("could_be"):
            text += (
                f" (or one of {', '.join(str(s)[:7] for s in commit['could_be'])}, which could "
                "not be tested)"
            )
        return text + f". It passes in the newest release, {release}."
    source = comparison.get("source") or {}
    text = (
        f"not in any release; red on {name} at `{str(source.get('commit') or '?')[:7]}`"
        + (f" ({str(source.get('date'))[:10]})" if source.get("date") else "")
        + f" and passing in the newest release, {release}. "
    )
    if row.get("status") in (None, "not-bisected"):
        return text + f"The first bad commit is not bisected yet: `{row.get('bisect')}`"
    return text + f"A bisect found no first bad commit: {row.get('note') or row.get('status')}"


def _since(
    group: _Group,
    checks: Mapping[str, Mapping[str, Any]],
    bisected: Mapping[str, str],
    labels: Mapping[str, str],
) -> str:
    """``since diffusers X`` (the earliest first bad version of the rows, bisected where
    known), or ``in every tested version`` when none of them ever passed."""
    found = []
    for check_id in group.rows:
        first = bisected.get(check_id) or checks[check_id].get("first_bad")
        if first:
            found.append(str(first))
    if not found:
        firsts = [labels[cells[0]] for cells in group.rows.values() if cells]
        return f"in every tested version from {min(firsts, key=_version_key)} on"
    return f"since diffusers {min(found, key=_version_key)}"


def _version_key(text: str) -> tuple[int, Any]:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def _root_cause_text(cause: Cause) -> str:
    if cause.raised:
        text = f"`{cause.exc_type}` raised in `{cause.where}`"
        return text + (f" with a message like `{_inline(cause.message)}`" if cause.message else "")
    return (
        f"`{cause.observed}` ({OUTCOME_TEXT.get(cause.observed, 'see the report')}) "
        f"on `{cause.where}`"
    )


def _inline(text: str) -> str:
    return text.replace("`", "'")


def _rows_table(
    group: _Group,
    checks: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str],
    bisected: Mapping[str, str],
) -> str:
    lines = [
        "| row | fails in | last good → first bad | bisected |",
        "|---|---|---|---|",
    ]
    for check_id, failing in group.rows.items():
        check = checks[check_id]
        step = (
            f"{check.get('last_good')} → {check.get('first_bad')}"
            if check.get("first_bad")
            else "never passed"
        )
        versions = ", ".join(labels[c] for c in failing)
        lines.append(
            f"| `{_cell_text(check_id)}` | {_cell_text(versions)} | {step} | "
            f"{bisected.get(check_id) or '—'} |"
        )
    return "\n".join(lines)


def _first_bad_text(
    check_id: str, first_bad: str | None, last_good: str | None, bisected: str | None, earliest: str
) -> str:
    if bisected:
        text = f"**{bisected}** (bisected over released versions"
        text += f"; matrix: last good {last_good}, first bad {first_bad})" if first_bad else ")"
        return text
    if first_bad:
        return (
            f"between **{last_good}** (last good in the matrix) and **{first_bad}** (first bad); "
            f"narrow it down with `{shlex.join(['adapter-compat', 'bisect', check_id, '--good', str(last_good), '--bad', str(first_bad)])}`"
        )
    return f"fails in every tested version from {earliest} on (no passing version before it)"


def _versions_table(
    check: Mapping[str, Any], cells: list[Mapping[str, Any]], labels: Mapping[str, str]
) -> str:
    results: Mapping[str, Any] = check.get("results") or {}
    head = ["diffusers", *TABLE_VERSIONS, "verdict", "observed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        result = results.get(cell["name"])
        if result is None:
            continue
        versions = result.get("versions") or cell.get("versions") or {}
        mark = {"pass": "✅", "regression": "❌", "broken": "⛔"}.get(result.get("verdict"), "➖")
        row = [labels[cell["name"]]] + [str(versions.get(k, "?")) for k in TABLE_VERSIONS]
        row += [f"{mark} {result.get('verdict')}", f"`{result.get('observed')}`"]
        lines.append("| " + " | ".join(_cell_text(x) for x in row) + " |")
    return "\n".join(lines)


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _repro_note(script: repro.Repro) -> str:
    if script.kind == repro.STANDALONE:
        return (
            "Standalone: needs only the packages in its header (tiny models built in the "
            "script). Exits 1 while the bug reproduces."
        )
    return (
        "No standalone script was attached by this check: this one re-runs the check from "
        "an adapter-compat checkout (`ADAPTER_COMPAT_REPO=/path/to/checkout python repro.py`). "
        "Exits 1 while the bug reproduces."
    )


def _update_comment(
    doc: Mapping[str, Any],
    group: _Group,
    labels: Mapping[str, str],
    first_bad_text: str,
    state: str,
) -> str:
    rows = "\n".join(
        f"- `{check_id}`: {', '.join(labels[c] for c in cells)}"
        for check_id, cells in group.rows.items()
    )
    return (
        f"<!-- {STATE_MARK}: {state} -->\n"
        f"Update from adapter-compat run `{doc.get('run') or '?'}` "
        f"({doc.get('generated_at', '?')}): {len(group.rows)} row(s) now fail with this root "
        f"cause:\n\n{rows}\n\nFirst bad version (first row): {first_bad_text}\n"
    )


def _fence(text: str, lang: str = "") -> str:
    """A fenced block that the text itself cannot close."""
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _fit(template: str, script: str, traceback: str) -> str:
    """Fill script and traceback, shortening them (never the rest) to fit GitHub's limit."""
    room = MAX_BODY - len(template) - 200
    script_room = max(1000, room * 2 // 3) if traceback else room
    if len(script) > script_room:
        script = script[: script_room - 80] + "\n# … script cut to fit the issue; see the report\n"
    trace_room = max(0, room - len(script))
    if len(traceback) > trace_room:
        traceback = "…\n" + traceback[-max(0, trace_room - 10) :]
    body = template.replace(_SCRIPT, _fence(script, "python"), 1)
    return body.replace(_TRACEBACK, _fence(traceback), 1)[:MAX_BODY]


# -- writing -------------------------------------------------------------------------------
def write_drafts(drafts: Sequence[Draft], folder: Path) -> list[Path]:
    """``<folder>/<fingerprint>.md`` (title as the first heading) plus ``index.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for draft in drafts:
        path = folder / draft.file_name
        path.write_text(f"# {draft.title}\n\n{draft.body}\n", encoding="utf-8")
        written.append(path)
    index = folder / "index.json"
    index.write_text(json.dumps([d.to_index() for d in drafts], indent=1) + "\n", encoding="utf-8")
    return written
