"""The report's "API drift" section, from the drift tool's timeline when it exists.

The timeline (``harness.drift.timeline``, built from ``fixtures/api/*.json``) is produced
by another part of the harness; it is imported defensively so a report never fails
because that tool is absent, broken, or has no snapshots yet: the section is then omitted.
Whatever shape the timeline has, it is reduced here to a table of plain rows.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Functions tried on ``harness.drift.timeline``, first found wins; called with no arguments.
ENTRY_POINTS = ("timeline_data", "build_timeline", "timeline", "load_timeline")

#: Columns shown first when present; others follow in first-seen order.
PREFERRED_COLUMNS = (
    "version",
    "from",
    "to",
    "breaking",
    "api",
    "symbol",
    "name",
    "kind",
    "change",
    "detail",
    "details",
    "parameter",
    "allowlist",
    "where",
)

#: Truthy text in this column marks a row as a breaking change (shown first / alone in
#: the Markdown, where space is short).
BREAKING_KEY = "breaking"

MAX_ROWS = 400


@dataclass
class DriftSection:
    columns: list[str]
    rows: list[dict[str, str]]
    source: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def breaking_rows(self) -> list[dict[str, str]]:
        return [r for r in self.rows if r.get(BREAKING_KEY, "").strip()]

    @property
    def has_breaking_column(self) -> bool:
        return BREAKING_KEY in self.columns

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "columns": self.columns,
            "rows": self.rows,
            "note": self.note,
        }


def load_drift(module: str = "harness.drift.timeline") -> DriftSection | None:
    """The section, or None when the timeline tool or its data is unavailable."""
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - absent or broken: omit the section
        return None
    memo = _MEMO.get(module)
    if memo is None or memo[0] is not mod:  # committed files: once per process is enough
        memo = _MEMO[module] = (mod, _call(mod, module))
    return memo[1]


#: module name -> (the module object the section came from, the section).
_MEMO: dict[str, tuple[Any, DriftSection | None]] = {}


def _call(mod: Any, module: str) -> DriftSection | None:
    for name in ENTRY_POINTS:
        fn = getattr(mod, name, None)
        if not callable(fn):
            continue
        try:
            data = fn()
        except Exception as exc:  # noqa: BLE001 - the report must not fail on the drift tool
            return DriftSection([], [], f"{module}.{name}", note=f"timeline unavailable: {exc}")
        return to_section(data, f"{module}.{name}")
    return None


def to_section(data: Any, source: str) -> DriftSection | None:
    """Reduce a timeline (list of events, or a mapping holding one) to table rows."""
    if data is None:
        return None
    if hasattr(data, "to_dict") and callable(data.to_dict):
        data = data.to_dict()
    events: Sequence[Any] | None = None
    note = ""
    if isinstance(data, Mapping):
        for key in ("events", "entries", "changes", "rows", "timeline"):
            if isinstance(data.get(key), Sequence) and not isinstance(data.get(key), str):
                events = data[key]
                break
        if events is None:  # {version: [changes]} layout
            events = [
                {"version": k, **(e if isinstance(e, Mapping) else {"change": e})}
                for k, v in data.items()
                if isinstance(v, Sequence) and not isinstance(v, str)
                for e in v
            ]
        note = str(data.get("note") or data.get("summary") or "")
    elif isinstance(data, Sequence) and not isinstance(data, str):
        events = data
    if events is None:
        return None
    rows: list[dict[str, str]] = []
    for event in events:
        if hasattr(event, "__dataclass_fields__"):
            from dataclasses import asdict

            event = asdict(event)
        if not isinstance(event, Mapping):
            event = {"change": event}
        rows.append({str(k): _text(v) for k, v in event.items()})
    if len(rows) > MAX_ROWS:
        note = (note + " " if note else "") + f"{len(rows) - MAX_ROWS} more row(s) not shown."
        rows = rows[:MAX_ROWS]
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    columns = [c for c in PREFERRED_COLUMNS if c in seen]
    columns += [c for c in seen if c not in columns]
    return DriftSection(columns, rows, source, note)


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)
