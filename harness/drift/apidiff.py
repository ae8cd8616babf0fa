"""Diff two API contract snapshots and classify every change as breaking or not.

Classification (a caller written against the old version is the judge):

=========================  ========  =====================================================
change                     breaking  why
=========================  ========  =====================================================
api-removed                yes       ``obj.method(...)`` / ``from m import f`` fails
api-added                  no
moved                      yes/no    breaking when an old public import path stops working
param-removed              yes       unless the new signature has ``**kwargs`` (absorbed:
                                     reported, since it may now be silently ignored)
param-renamed              yes       a removed and an added parameter with similar names
                                     (``device`` -> ``device_map``); same ``**kwargs`` rule
param-added (required)     yes       old calls miss it
param-added (optional)     no
param-now-required         yes
param-now-optional         no
param-kind-changed         yes/no    to keyword-only / positional-only breaks positional /
                                     keyword callers; the reverse does not
param-order-changed        yes       positional callers bind to other parameters
var-args-removed           yes       ``*args`` / ``**kwargs`` gone
default-changed            no        same call, different behaviour: reported
method-kind-changed        yes/no    becoming or ceasing to be a property breaks calls
=========================  ========  =====================================================

Intended changes are acknowledged by entries in ``fixtures/api/allowlist.json``; each has a
reason and an expiry date. An expired entry no longer hides its change: the change is
reported as breaking again, labelled "expired allowlist entry".
"""

from __future__ import annotations

import datetime as _dt
import difflib
import fnmatch
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.drift.summaries import (
    KEYWORD_ONLY,
    POSITIONAL_ONLY,
    POSITIONAL_OR_KEYWORD,
    VAR_KEYWORD,
    VAR_POSITIONAL,
)
from harness.errors import UsageError

ALLOWLIST = Path(__file__).resolve().parents[2] / "fixtures" / "api" / "allowlist.json"
_POSITIONAL = (POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD)


@dataclass
class Change:
    api: str
    change: str
    breaking: bool
    detail: str
    param: str | None = None
    old: Any = None
    new: Any = None
    file: str | None = None
    line: int | None = None
    from_version: str = ""
    to_version: str = ""
    #: None, or {"status": "allowlisted" | "expired allowlist entry", "reason", "expires"}.
    allowlist: dict[str, Any] | None = None

    @property
    def public(self) -> bool:
        """The API is public: no part of its dotted name is private (``_convert_...``,
        ``Mixin._maybe_expand_...``). Only public breaks are findings; private churn is
        listed for information."""
        return not any(part.startswith("_") for part in self.api.split("."))

    @property
    def unacknowledged_break(self) -> bool:
        return (
            self.breaking
            and self.public
            and not (self.allowlist and self.allowlist.get("status") == "allowlisted")
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unacknowledged_break"] = self.unacknowledged_break
        return out

    def headline(self) -> str:
        flag = "BREAKING" if self.breaking else "change"
        if self.allowlist:
            flag += f" ({self.allowlist['status']}: {self.allowlist.get('reason', '')}; expires {self.allowlist.get('expires')})"
        where = f"  [{self.file}:{self.line}]" if self.file else ""
        return f"{flag}: {self.api}: {self.detail}{where}"


# -- parameter-level diff ------------------------------------------------------------------
def _has(params: list[dict[str, Any]], kind: str) -> bool:
    return any(p["kind"] == kind for p in params)


def _similar(a: str, b: str) -> float:
    if a.startswith(b + "_") or b.startswith(a + "_") or a.endswith("_" + b) or b.endswith("_" + a):
        return 1.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def _named(params: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in params if p["kind"] not in (VAR_POSITIONAL, VAR_KEYWORD)}


def diff_params(api: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Changes between two entries of the same API."""
    out: list[Change] = []
    old_p: list[dict[str, Any]] = old.get("params", [])
    new_p: list[dict[str, Any]] = new.get("params", [])
    old_named, new_named = _named(old_p), _named(new_p)
    absorbs = _has(new_p, VAR_KEYWORD)

    removed = [n for n in old_named if n not in new_named]
    added = [n for n in new_named if n not in old_named]

    # renames: pair each removed name with the most similar added one (>= 0.6)
    renames: dict[str, str] = {}
    for name in removed:
        best = max(
            ((a, _similar(name, a)) for a in added if a not in renames.values()),
            key=lambda t: t[1],
            default=None,
        )
        if best and best[1] >= 0.6:
            renames[name] = best[0]
    for name in removed:
        param = old_named[name]
        kw_reachable = param["kind"] != POSITIONAL_ONLY
        if name in renames:
            new_name = renames[name]
            out.append(
                Change(
                    api,
                    "param-renamed",
                    breaking=kw_reachable and not absorbs,
                    detail=f"parameter {name!r} renamed to {new_name!r}"
                    + (" (old keyword now lands in **kwargs)" if absorbs else ""),
                    param=name,
                    old=name,
                    new=new_name,
                )
            )
        else:
            breaking = not absorbs or not kw_reachable
            out.append(
                Change(
                    api,
                    "param-removed",
                    breaking=breaking,
                    detail=f"parameter {name!r} removed"
                    + (
                        ""
                        if breaking
                        else " (absorbed by **kwargs: check it is not silently ignored)"
                    ),
                    param=name,
                    old=param,
                )
            )
    renamed_to = set(renames.values())
    for name in added:
        if name in renamed_to:
            continue
        param = new_named[name]
        required = "default" not in param
        out.append(
            Change(
                api,
                "param-added",
                breaking=required,
                detail=f"{'new required' if required else 'new optional'} parameter {name!r}",
                param=name,
                new=param,
            )
        )
    for name, param in old_named.items():
        if name not in new_named:
            continue
        now = new_named[name]
        if param["kind"] != now["kind"]:
            before, after = param["kind"], now["kind"]
            breaking = (after == KEYWORD_ONLY and before in _POSITIONAL) or (
                after == POSITIONAL_ONLY and before != POSITIONAL_ONLY
            )
            out.append(
                Change(
                    api,
                    "param-kind-changed",
                    breaking,
                    f"parameter {name!r}: {before} -> {after}",
                    name,
                    before,
                    after,
                )
            )
        had, has = "default" in param, "default" in now
        if had and not has:
            out.append(
                Change(
                    api,
                    "param-now-required",
                    True,
                    f"parameter {name!r} lost its default",
                    name,
                    param["default"],
                    None,
                )
            )
        elif has and not had:
            out.append(
                Change(
                    api,
                    "param-now-optional",
                    False,
                    f"parameter {name!r} gained default {now['default']}",
                    name,
                    None,
                    now["default"],
                )
            )
        elif had and has and param["default"] != now["default"]:
            out.append(
                Change(
                    api,
                    "default-changed",
                    False,
                    f"default of {name!r} changed {param['default']} -> {now['default']}",
                    name,
                    param["default"],
                    now["default"],
                )
            )
    # positional order among parameters present in both
    old_pos = [p["name"] for p in old_p if p["kind"] in _POSITIONAL and p["name"] in new_named]
    old_index = {p["name"]: i for i, p in enumerate(q for q in old_p if q["kind"] in _POSITIONAL)}
    new_index = {p["name"]: i for i, p in enumerate(q for q in new_p if q["kind"] in _POSITIONAL)}
    shifted = [n for n in old_pos if n in new_index and old_index[n] != new_index[n]]
    if shifted:
        out.append(
            Change(
                api,
                "param-order-changed",
                True,
                "positional index changed for "
                + ", ".join(f"{n} {old_index[n]}->{new_index[n]}" for n in shifted),
                None,
                [old_index[n] for n in shifted],
                [new_index[n] for n in shifted],
            )
        )
    for kind, label in ((VAR_POSITIONAL, "*args"), (VAR_KEYWORD, "**kwargs")):
        if _has(old_p, kind) and not _has(new_p, kind):
            out.append(Change(api, "var-args-removed", True, f"{label} removed", None, label, None))
    return out


# -- snapshot-level diff -------------------------------------------------------------------
def diff_snapshots(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every change from snapshot ``old`` to snapshot ``new``, in API-name order."""
    changes: list[Change] = []
    old_api, new_api = old.get("api", {}), new.get("api", {})
    for cls, info in sorted(old.get("classes", {}).items()):
        now = new.get("classes", {}).get(cls)
        if now is None:
            changes.append(
                Change(
                    cls,
                    "api-removed",
                    True,
                    f"class {cls} removed",
                    old=info["module"],
                    file=info["file"],
                    line=info["line"],
                )
            )
            continue
        changes.extend(_moved(cls, "class", info, now))
    for cls, info in sorted(new.get("classes", {}).items()):
        if cls not in old.get("classes", {}):
            changes.append(
                Change(
                    cls,
                    "api-added",
                    False,
                    f"class {cls} added",
                    new=info["module"],
                    file=info["file"],
                    line=info["line"],
                )
            )
    removed_classes = set(old.get("classes", {})) - set(new.get("classes", {}))
    for name in sorted(set(old_api) | set(new_api)):
        before, after = old_api.get(name), new_api.get(name)
        if after is None:
            if name.split(".")[0] in removed_classes:
                continue  # reported once, as the class
            changes.append(
                Change(
                    name,
                    "api-removed",
                    True,
                    f"{_what(before)} removed",
                    old=before.get("module"),
                    file=before.get("file"),
                    line=before.get("line"),
                )
            )
            continue
        where = {"file": after.get("file"), "line": after.get("line")}
        if before is None:
            changes.append(
                Change(
                    name,
                    "api-added",
                    False,
                    f"{_what(after)} added",
                    new=after.get("module"),
                    **where,
                )
            )
            continue
        if before.get("kind") != after.get("kind"):
            breaking = "property" in (before.get("kind"), after.get("kind"))
            changes.append(
                Change(
                    name,
                    "method-kind-changed",
                    breaking,
                    f"{before.get('kind')} -> {after.get('kind')}",
                    None,
                    before.get("kind"),
                    after.get("kind"),
                    **where,
                )
            )
        if "." not in name:
            changes.extend(_moved(name, "function", before, after))
        for change in diff_params(name, before, after):
            change.file, change.line = where["file"], where["line"]
            changes.append(change)
    for change in changes:
        change.from_version, change.to_version = old.get("version", ""), new.get("version", "")
    return changes


def _what(entry: dict[str, Any]) -> str:
    return entry.get("kind", "api") if entry else "api"


def _moved(name: str, what: str, before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    if before.get("module") == after.get("module"):
        return []
    lost = [
        m for m in before.get("importable_from", []) if m not in after.get("importable_from", [])
    ]
    detail = f"{what} moved {before.get('module')} -> {after.get('module')}"
    if lost:
        detail += "; no longer importable from " + ", ".join(lost)
    else:
        detail += " (old import paths still work)"
    return [
        Change(
            name,
            "moved",
            bool(lost),
            detail,
            None,
            before.get("module"),
            after.get("module"),
            after.get("file"),
            after.get("line"),
        )
    ]


# -- allowlist -----------------------------------------------------------------------------
@dataclass
class AllowEntry:
    api: str
    change: str
    reason: str
    expires: str
    param: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    used: int = field(default=0, compare=False)

    def matches(self, change: Change) -> bool:
        if not fnmatch.fnmatchcase(change.api, self.api):
            return False
        if self.change not in ("*", change.change):
            return False
        if self.param is not None and self.param != change.param:
            return False
        if self.from_version is not None and self.from_version != change.from_version:
            return False
        return not (self.to_version is not None and self.to_version != change.to_version)

    def expired(self, today: _dt.date) -> bool:
        return _dt.date.fromisoformat(self.expires) < today


def load_allowlist(path: str | os.PathLike[str] | None = None) -> list[AllowEntry]:
    path = Path(path) if path is not None else ALLOWLIST
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"allowlist {path} is not valid JSON ({exc}); fix the file") from None
    entries = []
    for i, raw in enumerate(data.get("entries", [])):
        missing = [k for k in ("api", "change", "reason", "expires") if not raw.get(k)]
        if missing:
            raise UsageError(
                f"allowlist {path} entry {i} lacks {', '.join(missing)}; every entry needs api, change, reason and expires"
            )
        try:
            _dt.date.fromisoformat(raw["expires"])
        except ValueError:
            raise UsageError(
                f"allowlist {path} entry {i}: expires {raw['expires']!r} is not YYYY-MM-DD"
            ) from None
        entries.append(
            AllowEntry(
                api=raw["api"],
                change=raw["change"],
                reason=raw["reason"],
                expires=raw["expires"],
                param=raw.get("param"),
                from_version=raw.get("from"),
                to_version=raw.get("to"),
            )
        )
    return entries


def apply_allowlist(
    changes: list[Change], entries: list[AllowEntry], today: _dt.date | None = None
) -> list[Change]:
    """Mark each change an entry matches: "allowlisted" hides a break, an expired entry
    does not (and says so)."""
    today = today or _dt.date.today()
    for change in changes:
        for entry in entries:
            if entry.matches(change):
                entry.used += 1
                status = "expired allowlist entry" if entry.expired(today) else "allowlisted"
                change.allowlist = {
                    "status": status,
                    "reason": entry.reason,
                    "expires": entry.expires,
                }
                break
    return changes
