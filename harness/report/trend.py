"""Pass / regression counts across stored runs, and their chart (inline SVG).

Where the history comes from: every ``reports/runs/*/compat.json`` on this machine, plus
the ``history`` the baseline report carried (a CI runner keeps no ``reports/runs``, but
each night's compat.json carries the nights before it), plus the run being written.
The SVG is built here as text so the page needs no script or network to draw it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

#: Points kept in a report's history (and drawn).
MAX_POINTS = 60

#: Series drawn, top to bottom: (count key, label, colour).
SERIES: tuple[tuple[str, str, str], ...] = (
    ("regression", "regressions", "#cf222e"),
    ("broken", "broken (never passed)", "#8250df"),
    ("pass", "passes", "#1a7f37"),
)


@dataclass
class Point:
    run: str
    generated_at: str
    totals: dict[str, int] = field(default_factory=dict)
    current: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "generated_at": self.generated_at, "totals": dict(self.totals)}


def point_from_doc(doc: dict[str, Any], run: str) -> Point | None:
    totals = doc.get("totals")
    if not isinstance(totals, dict):
        totals = {}
        for counts in (doc.get("summary") or {}).values():
            if isinstance(counts, dict):
                for key, value in counts.items():
                    if isinstance(value, int):
                        totals[key] = totals.get(key, 0) + value
    generated = doc.get("generated_at")
    if not isinstance(generated, str) or not generated:
        return None
    return Point(str(doc.get("run") or run), generated, _ints(totals))


def stored_points(reports_root: Path, skip: Iterable[Path] = ()) -> list[Point]:
    """One point per readable ``<root>/runs/*/compat.json``."""
    runs = Path(reports_root) / "runs"
    if not runs.is_dir():
        return []
    skipped = {Path(p).resolve() for p in skip}
    points = []
    for folder in sorted(runs.iterdir()):
        file = folder / "compat.json"
        if folder.resolve() in skipped or not file.is_file():
            continue
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict):
            point = point_from_doc(doc, folder.name)
            if point is not None:
                points.append(point)
    return points


def merge(*groups: Iterable[Point], limit: int = MAX_POINTS) -> list[Point]:
    """Union by (``generated_at``, run) (a later group wins), oldest first, newest ``limit``
    kept."""
    by_key: dict[tuple[str, str], Point] = {}
    for group in groups:
        for point in group:
            by_key[(point.generated_at, point.run)] = point
    ordered = sorted(by_key.values(), key=lambda p: (p.generated_at, p.run))
    return ordered[-limit:]


def from_history(entries: Iterable[dict[str, Any]]) -> list[Point]:
    points = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("generated_at"), str):
            points.append(
                Point(
                    str(entry.get("run") or ""),
                    entry["generated_at"],
                    _ints(entry.get("totals") or {}),
                )
            )
    return points


# -- drawing -------------------------------------------------------------------------------
def render_svg(points: Sequence[Point], width: int = 760, band: int = 90) -> str:
    """Two bar bands sharing the x axis (each with its own scale: passes are counted in
    hundreds, regressions in ones), the current run outlined. Empty string for no points."""
    if not points:
        return ""
    left, right, top, gap, bottom = 92, 16, 14, 26, 34
    height = top + band * len(SERIES) + gap * (len(SERIES) - 1) + bottom
    inner = width - left - right
    slot = inner / len(points)
    bar = max(2.0, min(36.0, slot * 0.7))
    show_numbers = len(points) <= 24
    step = max(1, round(len(points) / 12))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="pass and regression counts over {len(points)} run(s)">'
    ]
    for index, (key, label, colour) in enumerate(SERIES):
        y0 = top + index * (band + gap)
        peak = max((p.totals.get(key, 0) for p in points), default=0) or 1
        base = y0 + band
        out.append(
            f'<text x="{left - 8}" y="{y0 + band / 2:.1f}" text-anchor="end" '
            f'dominant-baseline="middle" class="axis">{escape(label)}</text>'
        )
        out.append(
            f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" class="baseline"/>'
        )
        out.append(
            f'<text x="{left - 8}" y="{y0 + 8}" text-anchor="end" class="tick">{peak}</text>'
        )
        for i, point in enumerate(points):
            value = point.totals.get(key, 0)
            h = (band - 14) * value / peak
            x = left + i * slot + (slot - bar) / 2
            cls = ' class="current"' if point.current else ""
            out.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{colour}"{cls}><title>{escape(point.run or point.generated_at)}: '
                f"{value} {escape(label)}</title></rect>"
            )
            if show_numbers:
                out.append(
                    f'<text x="{x + bar / 2:.1f}" y="{base - h - 3:.1f}" text-anchor="middle" '
                    f'class="num">{value}</text>'
                )
    axis_y = top + band * len(SERIES) + gap * (len(SERIES) - 1) + 16
    for i, point in enumerate(points):
        if i % step and i != len(points) - 1:
            continue
        x = left + i * slot + slot / 2
        text = _short_time(point.generated_at) + (" (this run)" if point.current else "")
        out.append(
            f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle" class="tick">{escape(text)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _short_time(stamp: str) -> str:
    """``2025-01-31T12:00:00Z`` -> ``01-31 12:00``."""
    if len(stamp) >= 16 and stamp[4] == "-" and stamp[10] == "T":
        return f"{stamp[5:10]} {stamp[11:16]}"
    return stamp[:16]


def _ints(values: Any) -> dict[str, int]:
    if not isinstance(values, dict):
        return {}
    return {str(k): int(v) for k, v in values.items() if isinstance(v, (int, float))}
