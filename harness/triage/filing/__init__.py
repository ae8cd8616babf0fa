"""Turn a report's new regressions into issue drafts, and (``--post``) into GitHub issues.

Order of work, so that nothing is ever half-filed: build every draft and write them to
``<report>/issues/``; then (posting) check the token and read every open issue and its
comments *before* the first write; only then create issues / add comments. A 401 at any
read stops with one line and nothing written to GitHub. See :mod:`.drafts` for the
fingerprint that keeps the same finding from being filed twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.triage.filing.drafts import (
    FINGERPRINT_MARK,
    STATE_MARK,
    Draft,
    build_drafts,
    find_mark,
    last_mark,
    write_drafts,
)
from harness.triage.filing.github import ApiError, AuthError, GitHub

__all__ = [
    "Action",
    "ApiError",
    "AuthError",
    "DEFAULT_LABEL",
    "Draft",
    "GitHub",
    "build_drafts",
    "execute",
    "plan",
    "write_drafts",
]

#: Label every filed issue carries; open issues with it are searched for fingerprints.
DEFAULT_LABEL = "adapter-compat"

CREATE = "create"
COMMENT = "comment"
UNCHANGED = "unchanged"


@dataclass
class Action:
    kind: str
    draft: Draft
    number: int | None = None
    url: str | None = None
    done: bool = False

    def line(self) -> str:
        title = self.draft.title
        if self.kind == CREATE:
            where = f" #{self.number}" if self.done else ""
            verb = "created" if self.done else "would create"
            return f"{verb}{where}: {title}"
        if self.kind == COMMENT:
            verb = "commented on" if self.done else "would comment on"
            return f"{verb} #{self.number} (failing cells or first bad version changed): {title}"
        return f"unchanged #{self.number}: {title}"


def plan(client: GitHub, drafts: Sequence[Draft], label: str = DEFAULT_LABEL) -> list[Action]:
    """Read-only: match drafts to open issues by fingerprint, compare state markers."""
    client.check_access()
    by_fingerprint: dict[str, dict[str, Any]] = {}
    for issue in client.open_issues(label):
        fp = find_mark(str(issue.get("body") or ""), FINGERPRINT_MARK)
        if fp and fp not in by_fingerprint:
            by_fingerprint[fp] = issue
    actions = []
    for draft in drafts:
        issue = by_fingerprint.get(draft.fingerprint)
        if issue is None:
            actions.append(Action(CREATE, draft))
            continue
        number = int(issue["number"])
        texts = [str(issue.get("body") or "")]
        texts += [str(c.get("body") or "") for c in client.comments(number)]
        state = last_mark(texts, STATE_MARK)
        kind = UNCHANGED if state == draft.state else COMMENT
        actions.append(Action(kind, draft, number, issue.get("html_url")))
    return actions


def execute(
    client: GitHub,
    actions: Sequence[Action],
    label: str = DEFAULT_LABEL,
    log: Callable[[str], None] = print,
) -> None:
    """Perform the writes in order; an ApiError propagates after logging what was done."""
    for action in actions:
        if action.kind == CREATE:
            created = client.create_issue(action.draft.title, action.draft.body, [label])
            action.number = int(created.get("number") or 0) or None
            action.url = created.get("html_url")
        elif action.kind == COMMENT:
            assert action.number is not None
            client.comment(action.number, action.draft.update)
        else:
            continue
        action.done = True
        log(action.line())


def record_filed(folder: Path, actions: Sequence[Action], repo: str) -> Path:
    """``issues/filed.json``: what happened on GitHub, for the next run and for people."""
    path = folder / "filed.json"
    data: list[Mapping[str, Any]] = [
        {
            "fingerprint": a.draft.fingerprint,
            "action": a.kind,
            "done": a.done,
            "issue": a.number,
            "url": a.url,
            "title": a.draft.title,
        }
        for a in actions
    ]
    path.write_text(json.dumps({"repo": repo, "actions": data}, indent=1) + "\n", encoding="utf-8")
    return path
