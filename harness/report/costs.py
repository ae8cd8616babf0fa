"""What the run cost: seconds per suite and per cell, the costliest check families, and the
change from the baseline run, so a check that got slower is seen the night it did.

Everything comes from the records: each check record carries its duration (setup + call,
not pytest's own reporting), each cell record its wall time and phases (install, import,
pytest). A cell's *overhead* is its wall time minus install, import and the checks: time
spent in collection, session fixtures, teardown; the performance budget holds it at
≤ 10 s. The section is stored in ``compat.json`` (``costs``) so the next report compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.report.grid import ReportModel

#: Check families listed (the costliest first).
TOP_FAMILIES = 12
#: A suite whose seconds grew by more than this share (and by ≥ MIN_GROWTH_S) is flagged.
GROWTH_FLAG = 0.2
MIN_GROWTH_S = 5.0


def family_of(check_id: str) -> str:
    """``lora/formats::load[sd15-peft-complete]`` -> ``lora/formats::load``."""
    return check_id.split("[", 1)[0]


@dataclass
class CellCost:
    cell: str
    wall_s: float
    install_s: float
    import_s: float
    checks_s: float
    checks: int

    @property
    def overhead_s(self) -> float | None:
        """Wall minus install, import and checks; None without a cell record."""
        if not self.wall_s:
            return None
        return max(0.0, self.wall_s - self.install_s - self.import_s - self.checks_s)


@dataclass
class SuiteCost:
    suite: str
    seconds: float
    checks: int
    baseline_s: float | None = None

    @property
    def growth(self) -> float | None:
        if not self.baseline_s:
            return None
        return (self.seconds - self.baseline_s) / self.baseline_s

    @property
    def flagged(self) -> bool:
        growth = self.growth
        return (
            growth is not None
            and growth > GROWTH_FLAG
            and self.seconds - (self.baseline_s or 0.0) >= MIN_GROWTH_S
        )


@dataclass
class FamilyCost:
    family: str
    seconds: float
    rows: int
    slowest: str
    slowest_s: float
    baseline_s: float | None = None


@dataclass
class Costs:
    cells: list[CellCost] = field(default_factory=list)
    suites: list[SuiteCost] = field(default_factory=list)
    families: list[FamilyCost] = field(default_factory=list)
    baseline_run: str | None = None

    @property
    def checks_s(self) -> float:
        return sum(s.seconds for s in self.suites)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suites": {s.suite: round(s.seconds, 2) for s in self.suites},
            "families": {f.family: round(f.seconds, 2) for f in self.families},
            "cells": {
                c.cell: {
                    "wall_s": round(c.wall_s, 2),
                    "import_s": round(c.import_s, 2),
                    "checks_s": round(c.checks_s, 2),
                    "overhead_s": None if c.overhead_s is None else round(c.overhead_s, 2),
                }
                for c in self.cells
            },
        }


def costs_of(
    model: ReportModel, baseline: Mapping[str, Any] | None = None, baseline_run: str | None = None
) -> Costs:
    """The cost section of ``model``; ``baseline`` is a previous report's ``costs`` dict."""
    per_cell: dict[str, list[float]] = {c.name: [0.0, 0] for c in model.cells}
    suites: dict[str, list[float]] = {}
    families: dict[str, list[Any]] = {}
    for row in model.checks:
        fam = families.setdefault(family_of(row.check_id), [0.0, 0, "", 0.0])
        for cell_name, result in row.results.items():
            seconds = result.duration_s
            per_cell.setdefault(cell_name, [0.0, 0])
            per_cell[cell_name][0] += seconds
            per_cell[cell_name][1] += 1
            suite = suites.setdefault(row.suite, [0.0, 0])
            suite[0] += seconds
            suite[1] += 1
            fam[0] += seconds
            fam[1] += 1
            if seconds > fam[3]:
                fam[2], fam[3] = f"{row.check_id} in {cell_name}", seconds
    base_suites = _floats((baseline or {}).get("suites"))
    base_families = _floats((baseline or {}).get("families"))
    cells = []
    for cell in model.cells:
        total, count = per_cell.get(cell.name, [0.0, 0])
        phases = cell.phase_seconds
        cells.append(
            CellCost(
                cell=cell.name,
                wall_s=cell.duration_s,
                install_s=phases.get("install", 0.0),
                import_s=phases.get("import", 0.0),
                checks_s=total,
                checks=int(count),
            )
        )
    suite_costs = sorted(
        (SuiteCost(name, s, int(n), base_suites.get(name)) for name, (s, n) in suites.items()),
        key=lambda s: -s.seconds,
    )
    family_costs = sorted(
        (
            FamilyCost(name, s, int(n), slowest, slowest_s, base_families.get(name))
            for name, (s, n, slowest, slowest_s) in families.items()
        ),
        key=lambda f: -f.seconds,
    )[:TOP_FAMILIES]
    return Costs(cells, suite_costs, family_costs, baseline_run if baseline else None)


def costs_for(model: ReportModel) -> Costs:
    """The model's cost section (``enrich`` fills it with the baseline's comparison), or one
    computed from the records alone."""
    return model.costs if isinstance(model.costs, Costs) else costs_of(model)


def _floats(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, (int, float))}


def _delta(now: float, before: float | None) -> str:
    if before is None:
        return ""
    if not before:
        return "new"
    change = (now - before) / before
    return f"{change:+.0%}"


def markdown(costs: Costs) -> list[str]:
    """The Markdown section (a list of lines), empty when no check recorded a duration."""
    if not costs.checks_s:
        return []
    versus = f" (vs {costs.baseline_run})" if costs.baseline_run else ""
    lines = [
        "## Cost",
        "",
        f"Sum of check durations: {costs.checks_s:.0f} s over {len(costs.cells)} cell(s)."
        " Per suite, the change from the baseline run" + versus + "; ⚠ marks a suite that "
        f"grew by more than {GROWTH_FLAG:.0%} (and {MIN_GROWTH_S:g} s).",
        "",
        "| suite | checks | seconds | change |",
        "|---|---:|---:|---:|",
    ]
    for suite in costs.suites:
        flag = " ⚠" if suite.flagged else ""
        lines.append(
            f"| {suite.suite} | {suite.checks} | {suite.seconds:.1f} | "
            f"{_delta(suite.seconds, suite.baseline_s)}{flag} |"
        )
    lines += [
        "",
        "| costliest check families | rows | seconds | change | slowest row |",
        "|---|---:|---:|---:|---|",
    ]
    for fam in costs.families:
        lines.append(
            f"| `{fam.family}` | {fam.rows} | {fam.seconds:.1f} | "
            f"{_delta(fam.seconds, fam.baseline_s)} | `{fam.slowest}` ({fam.slowest_s:.1f} s) |"
        )
    lines += [
        "",
        "| cell | wall s | import s | checks s | overhead s |",
        "|---|---:|---:|---:|---:|",
    ]
    for cell in costs.cells:
        overhead = "" if cell.overhead_s is None else f"{cell.overhead_s:.1f}"
        wall = f"{cell.wall_s:.1f}" if cell.wall_s else ""
        imp = f"{cell.import_s:.1f}" if cell.import_s else ""
        lines.append(f"| {cell.cell} | {wall} | {imp} | {cell.checks_s:.1f} | {overhead} |")
    lines.append("")
    return lines


def html(costs: Costs) -> str:
    """The same section for the HTML page: a closed ``<details>`` (it is for maintainers of
    the harness, not for reading the grid)."""
    if not costs.checks_s:
        return ""
    from html import escape

    def table(head: list[str], rows: list[list[str]]) -> str:
        th = "".join(f"<th>{escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table class='costs'><tr>{th}</tr>{body}</table>"

    suites = [
        [
            escape(s.suite),
            str(s.checks),
            f"{s.seconds:.1f}",
            escape(_delta(s.seconds, s.baseline_s)) + (" ⚠" if s.flagged else ""),
        ]
        for s in costs.suites
    ]
    families = [
        [
            f"<code>{escape(f.family)}</code>",
            str(f.rows),
            f"{f.seconds:.1f}",
            escape(_delta(f.seconds, f.baseline_s)),
            f"<code>{escape(f.slowest)}</code> ({f.slowest_s:.1f} s)",
        ]
        for f in costs.families
    ]
    cells = [
        [
            escape(c.cell),
            f"{c.wall_s:.1f}" if c.wall_s else "",
            f"{c.import_s:.1f}" if c.import_s else "",
            f"{c.checks_s:.1f}",
            "" if c.overhead_s is None else f"{c.overhead_s:.1f}",
        ]
        for c in costs.cells
    ]
    versus = f" (change vs {escape(costs.baseline_run)})" if costs.baseline_run else ""
    return (
        f"<details id='costs'><summary>Cost: {costs.checks_s:.0f} s of checks over "
        f"{len(costs.cells)} cell(s){versus}</summary>"
        + table(["suite", "checks", "seconds", "change"], suites)
        + table(["check family", "rows", "seconds", "change", "slowest row"], families)
        + table(["cell", "wall s", "import s", "checks s", "overhead s"], cells)
        + "</details>"
    )
