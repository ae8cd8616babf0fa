"""API drift timeline over the committed snapshots (``fixtures/api/<version>.json``).

``build_timeline()`` is the data the report's "API drift" section renders: one entry per
adjacent version pair, each change with its breaking flag, allowlist status and
``file:line`` in the newer version. Stdlib-only, reads only committed JSON.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from harness.drift.apidiff import (
    AllowEntry,
    Change,
    apply_allowlist,
    diff_snapshots,
    load_allowlist,
)
from harness.drift.snapshot import API_DIR, committed_versions, load_snapshot
from harness.errors import UsageError


def diff_versions(
    old: str,
    new: str,
    api_dir: str | os.PathLike[str] = API_DIR,
    allowlist: list[AllowEntry] | None = None,
    today: _dt.date | None = None,
) -> list[Change]:
    """Changes from committed snapshot ``old`` to ``new`` with allowlist status applied."""
    changes = diff_snapshots(load_snapshot(old, api_dir), load_snapshot(new, api_dir))
    entries = load_allowlist(Path(api_dir) / "allowlist.json") if allowlist is None else allowlist
    return apply_allowlist(changes, entries, today)


def pair_entry(old: str, new: str, changes: list[Change]) -> dict[str, Any]:
    """One timeline item: the pair, its counts by allowlist status, and the changes."""
    return {
        "from": old,
        "to": new,
        "breaking": sum(c.breaking for c in changes),
        "unacknowledged": sum(c.unacknowledged_break for c in changes),
        "allowlisted": sum(
            bool(c.allowlist and c.allowlist["status"] == "allowlisted") for c in changes
        ),
        "expired": sum(
            bool(c.allowlist and c.allowlist["status"] != "allowlisted") for c in changes
        ),
        "changes": [c.to_dict() for c in changes],
    }


def build_timeline(
    api_dir: str | os.PathLike[str] = API_DIR,
    allowlist: list[AllowEntry] | None = None,
    today: _dt.date | None = None,
    versions: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One item per adjacent pair of committed versions, oldest first::

    {"from": "0.32.2", "to": "0.33.1",
     "breaking": 3, "unacknowledged": 1, "allowlisted": 2, "expired": 0,
     "changes": [Change.to_dict(), ...]}
    """
    versions = versions or committed_versions(api_dir)
    if len(versions) < 2:
        raise UsageError(
            f"need at least two snapshots in {api_dir} for a timeline (have {len(versions)})"
        )
    entries = load_allowlist(Path(api_dir) / "allowlist.json") if allowlist is None else allowlist
    timeline = []
    for old, new in zip(versions, versions[1:], strict=False):
        timeline.append(pair_entry(old, new, diff_versions(old, new, api_dir, entries, today)))
    return timeline


def stale_allowlist_entries(entries: list[AllowEntry]) -> list[AllowEntry]:
    """Entries that matched nothing in the last build (candidates for removal)."""
    return [e for e in entries if not e.used]


def render_text(timeline: list[dict[str, Any]], only_breaking: bool = False) -> str:
    lines = []
    for step in timeline:
        lines.append(
            f"{step['from']} -> {step['to']}: {len(step['changes'])} change(s), {step['breaking']} breaking "
            f"({step['unacknowledged']} unacknowledged, {step['allowlisted']} allowlisted, {step['expired']} expired allowlist)"
        )
        for change in step["changes"]:
            if only_breaking and not change["breaking"]:
                continue
            flag = "BREAKING" if change["breaking"] else "        "
            if change["allowlist"]:
                status = change["allowlist"]["status"]
                flag += f" [{status}, expires {change['allowlist']['expires']}]"
            where = f"  ({change['file']}:{change['line']})" if change.get("file") else ""
            lines.append(f"  {flag} {change['api']}: {change['detail']}{where}")
    return "\n".join(lines)


def timeline_data(
    api_dir: str | os.PathLike[str] = API_DIR,
    today: _dt.date | None = None,
) -> dict[str, Any]:
    """Flat rows for the report's "API drift" table (one row per change, oldest pair
    first, breaking changes first within a pair) plus a one-line summary per pair::

        {"events": [{"from", "to", "api", "change", "parameter", "breaking",
                     "allowlist", "detail", "where"}, ...],
         "pairs": [{"from", "to", "changes", "breaking", "unacknowledged", ...}],
         "note": "..."}
    """
    timeline = build_timeline(api_dir, today=today)
    events = []
    for step in timeline:
        ordered = sorted(step["changes"], key=lambda c: (not c["breaking"], c["api"]))
        for change in ordered:
            status = ""
            if change["allowlist"]:
                status = (
                    f"{change['allowlist']['status']} (expires {change['allowlist']['expires']})"
                )
            events.append(
                {
                    "from": step["from"],
                    "to": step["to"],
                    "api": change["api"],
                    "change": change["change"],
                    "parameter": change["param"] or "",
                    "breaking": "BREAKING" if change["breaking"] else "",
                    "allowlist": status,
                    "detail": change["detail"],
                    "where": f"{change['file']}:{change['line']}" if change.get("file") else "",
                }
            )
    pairs = [
        {k: v for k, v in step.items() if k != "changes"} | {"changes": len(step["changes"])}
        for step in timeline
    ]
    unack = sum(p["unacknowledged"] for p in pairs)
    note = (
        f"{len(pairs)} version steps, {sum(p['changes'] for p in pairs)} API changes, "
        f"{sum(p['breaking'] for p in pairs)} breaking ({unack} unacknowledged); "
        "source: fixtures/api/<version>.json, allowlist fixtures/api/allowlist.json"
    )
    return {"events": events, "pairs": pairs, "note": note}
