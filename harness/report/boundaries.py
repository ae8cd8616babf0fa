"""What changed at a boundary: the packages whose pins differ between a row's last good cell
and its first bad one, and the command that asks which of them breaks the row.

Why in the report: between two adjacent releases diffusers and several companions move at
once, and "0.37.1 -> 0.38.0" hides that transformers went 5.3 -> 5.7 as well. Listing the
moved pins next to the breakage tells the reader whether ``bisect --blame`` (which puts
each one back alone) is worth running. The pins are what the cells' records say was
installed (``versions``), so the table shows what ran, not what a lock meant to install.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from harness.report.grid import Cell

#: Packages listed first (the usual culprits), in this order; the rest follow by name.
FIRST = ("diffusers", "peft", "transformers", "accelerate", "huggingface_hub", "safetensors")

#: Recorded versions that are facts of the interpreter, not pins a bisect can move.
NOT_PINS = frozenset({"python"})


@dataclass(frozen=True)
class PinChange:
    """One package whose recorded version differs (None: not recorded in that cell)."""

    package: str
    before: str | None
    after: str | None

    def describe(self) -> str:
        """``peft 0.14.0 → 0.15.0`` (``(absent)`` for a package one side lacks)."""
        return f"{self.package} {self.before or '(absent)'} → {self.after or '(absent)'}"


def pin_changes(good: Cell, bad: Cell) -> list[PinChange]:
    """The packages whose recorded versions differ between ``good`` and ``bad``: diffusers
    and the companions first, then the rest by name. A source cell's diffusers is named by
    its commit too (``0.43.0.dev0 @abc1234``): the version alone does not say which tree."""
    names = sorted((set(good.versions) | set(bad.versions)) - NOT_PINS)
    names.sort(key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), n))
    changes = []
    for name in names:
        before, after = _pin(good, name), _pin(bad, name)
        if before != after:
            changes.append(PinChange(name, before, after))
    return changes


def _pin(cell: Cell, package: str) -> str | None:
    value = cell.versions.get(package)
    if package == "diffusers" and cell.from_source and cell.source.get("commit"):
        return f"{value or '?'} @{cell.source['commit'][:7]}"
    return value


def describe(changes: list[PinChange]) -> str:
    """One line for a table cell: ``diffusers 0.37.1 → 0.38.0, peft 0.18.1 → 0.19.1``."""
    return ", ".join(c.describe() for c in changes) if changes else "none recorded"


def blame_command(check_id: str, bad: Cell) -> str | None:
    """``adapter-compat bisect CHECK --blame --cell V`` for a release boundary; None for a
    source cell (its companions are a release's: only diffusers moved, a commit bisect
    answers that, see :func:`commit_bisect_command`)."""
    if bad.from_source or bad.target != "diffusers" or not bad.diffusers:
        return None
    return shlex.join(["adapter-compat", "bisect", check_id, "--blame", "--cell", bad.diffusers])


def commit_bisect_command(check_id: str, good: Cell, bad: Cell) -> str | None:
    """``adapter-compat bisect CHECK --repo ORIGIN --good vX --bad SHA`` when ``bad`` is a
    source cell and ``good`` a release: the first bad commit after that release."""
    commit = bad.source.get("commit")
    if not bad.from_source or not commit or good.from_source or not good.diffusers:
        return None
    repo = bad.source.get("origin") or "PATH"
    return shlex.join(
        [
            "adapter-compat",
            "bisect",
            check_id,
            "--repo",
            repo,
            "--good",
            f"v{good.diffusers}",
            "--bad",
            commit,
        ]
    )
