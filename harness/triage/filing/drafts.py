"""Issue drafts: one Markdown issue per new regression, keyed by a stable fingerprint.

Why the fingerprint is check id + observed outcome + exception type and nothing else: the
message carries addresses, shapes and timings that change between runs, and the failing
cells grow and shrink; none of that makes it another bug. The cells and first bad version
go into a separate *state* digest instead: when it changes, the open issue gets a
comment rather than a twin. Both are embedded as HTML comments, invisible on GitHub.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.protocol import repro

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

#: Versions shown per cell in the issue's table, in order.
TABLE_VERSIONS = ("torch", "peft", "transformers", "huggingface_hub", "accelerate")


def fingerprint(check_id: str, observed: str, exc_type: str | None) -> str:
    """Stable id of a finding (never the message: it holds addresses and numbers)."""
    key = "\0".join([check_id, observed, exc_type or ""])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


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
    check_id: str
    cells: list[str] = field(default_factory=list)
    update: str = ""  # the comment posted when an open issue's state differs

    @property
    def file_name(self) -> str:
        return f"{self.fingerprint}.md"

    def to_index(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "state": self.state,
            "title": self.title,
            "check_id": self.check_id,
            "cells": self.cells,
            "file": self.file_name,
        }


# -- building ------------------------------------------------------------------------------
def regression_keys(doc: Mapping[str, Any], everything: bool = False) -> list[tuple[str, str]]:
    """(check_id, cell) pairs to file: the report's new regressions, or every regression
    when ``everything`` or when the report had no baseline (first run: all of it is new)."""
    changes = doc.get("changes")
    if not everything and isinstance(changes, Mapping):
        return [(c["check_id"], c["cell"]) for c in changes.get("new_regressions") or []]
    keys = []
    for check in doc.get("checks") or []:
        for cell, result in (check.get("results") or {}).items():
            if result.get("verdict") == "regression":
                keys.append((check["check_id"], cell))
    return keys


def build_drafts(
    doc: Mapping[str, Any],
    everything: bool = False,
    bisected: Mapping[str, str] | None = None,
) -> list[Draft]:
    """One draft per fingerprint among the regressions to file, in report order.

    ``bisected``: check id -> first bad release found by ``adapter-compat bisect``."""
    checks = {c["check_id"]: c for c in doc.get("checks") or [] if isinstance(c, Mapping)}
    cells = [c for c in doc.get("cells") or [] if isinstance(c, Mapping)]
    groups: dict[str, tuple[str, str, str | None]] = {}
    for check_id, cell in regression_keys(doc, everything):
        result = ((checks.get(check_id) or {}).get("results") or {}).get(cell)
        if not result or result.get("verdict") != "regression":
            continue
        fp = fingerprint(check_id, str(result.get("observed") or ""), result.get("exc_type"))
        groups.setdefault(fp, (check_id, str(result.get("observed") or ""), result.get("exc_type")))
    drafts = []
    for fp, (check_id, observed, exc_type) in groups.items():
        drafts.append(
            _draft(
                doc, checks[check_id], cells, fp, observed, exc_type, (bisected or {}).get(check_id)
            )
        )
    return drafts


def _same_finding(result: Mapping[str, Any], observed: str, exc_type: str | None) -> bool:
    return (
        result.get("verdict") == "regression"
        and str(result.get("observed") or "") == observed
        and (result.get("exc_type") or None) == (exc_type or None)
    )


def _draft(
    doc: Mapping[str, Any],
    check: Mapping[str, Any],
    cells: list[Mapping[str, Any]],
    fp: str,
    observed: str,
    exc_type: str | None,
    bisected: str | None,
) -> Draft:
    check_id = str(check["check_id"])
    results: Mapping[str, Any] = check.get("results") or {}
    failing = [
        c["name"] for c in cells if _same_finding(results.get(c["name"]) or {}, observed, exc_type)
    ]
    labels = {c["name"]: str(c.get("label") or c.get("diffusers") or c["name"]) for c in cells}
    sample_cell = failing[-1]
    sample = results[sample_cell]
    first_bad = check.get("first_bad")
    last_good = check.get("last_good")
    state = hashlib.sha256(
        json.dumps({"cells": failing, "first_bad": first_bad, "bisected": bisected}).encode()
    ).hexdigest()[:16]
    exc = f" ({exc_type})" if exc_type else ""
    since = bisected or first_bad or labels[failing[0]]
    title = f"[adapter-compat] {check_id}: {observed}{exc} since diffusers {since}"
    if len(title) > 250:
        title = title[:249] + "…"
    markers = f"<!-- {FINGERPRINT_MARK}: {fp} -->\n<!-- {STATE_MARK}: {state} -->\n"
    first_bad_text = _first_bad_text(check_id, first_bad, last_good, bisected, labels[failing[0]])
    versions = _versions_table(check, cells, labels)
    expected = " | ".join(sample.get("expected") or []) or "?"
    script = repro.build(check_id, sample_cell, sample)
    message = str(sample.get("message") or "(no message)")
    traceback = str(sample.get("traceback") or "")
    params = check.get("params") or {}
    parts = [
        markers,
        f"**Check** `{check_id}` (suite `{check.get('suite', '?')}`) gives **{observed}**{exc} "
        f"where **{expected}** is expected, in {len(failing)} cell(s): "
        f"{', '.join(labels[c] for c in failing)}.",
        "",
        f"**First bad version:** {first_bad_text}",
        "",
        "### Expected vs observed",
        "",
        f"- expected: `{expected}`",
        f"- observed: `{observed}`" + (f" raising `{exc_type}`" if exc_type else ""),
        f"- in `{sample_cell}`:",
        "",
        _fence(message[:4000]),
        "",
        "### Versions",
        "",
        versions,
        "",
        f"### Reproduction ({script.kind})",
        "",
        _repro_note(script),
        "",
        _SCRIPT,
        "",
    ]
    if params:
        parts += [
            "### Parameters",
            "",
            _fence(json.dumps(params, indent=2, sort_keys=True), "json"),
            "",
        ]
    if traceback:
        parts += ["<details><summary>Traceback</summary>", "", _TRACEBACK, "", "</details>", ""]
    run = doc.get("run") or "?"
    parts += [
        "---",
        f"Filed by adapter-compat {__version__} from report run `{run}` "
        f"({doc.get('generated_at', '?')}). Fingerprint `{fp}` = check id + observed outcome "
        "+ exception type: while this issue is open, later runs comment here instead of "
        "filing again.",
    ]
    body = _fit("\n".join(parts), script.script, traceback)
    update = _update_comment(doc, check_id, failing, labels, first_bad_text, state)
    return Draft(fp, state, title, body, check_id, failing, update)


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
            f"narrow it down with `adapter-compat bisect {check_id} --good {last_good} --bad {first_bad}`"
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
    check_id: str,
    failing: list[str],
    labels: Mapping[str, str],
    first_bad_text: str,
    state: str,
) -> str:
    return (
        f"<!-- {STATE_MARK}: {state} -->\n"
        f"Update from adapter-compat run `{doc.get('run') or '?'}` "
        f"({doc.get('generated_at', '?')}): `{check_id}` now fails in {len(failing)} cell(s): "
        f"{', '.join(labels[c] for c in failing)}.\n\nFirst bad version: {first_bad_text}\n"
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
