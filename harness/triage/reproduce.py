"""Act on one result of a stored report: find it (repro id, ``CHECK_ID@CELL`` or check
id) and run its reproduction script with a cell's interpreter (``adapter-compat repro``).

Apart from :mod:`harness.protocol.repro`, which only builds scripts and is also used in
the cell: looking results up in a report and starting another interpreter happen only in
the outer environment, after a report exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.protocol.repro import ROOT, STANDALONE, Repro, repro_id


# -- finding a result in a report ----------------------------------------------------------
@dataclass(frozen=True)
class Located:
    check_id: str
    cell: str
    result: dict[str, Any]


def locate(doc: Mapping[str, Any], ident: str, cell: str | None = None) -> Located:
    """ID (from the report), ``CHECK_ID@CELL`` or ``CHECK_ID`` (+ ``cell``; default the
    newest cell where the check does not pass)."""
    checks = [c for c in doc.get("checks", []) if isinstance(c, dict)]
    for check in checks:
        for name, result in (check.get("results") or {}).items():
            if repro_id(check["check_id"], name) == ident and (cell is None or cell == name):
                return Located(check["check_id"], name, result)
    check_id, _, at = ident.partition("@")
    cell = cell or at or None
    match = next((c for c in checks if c.get("check_id") == check_id), None)
    if match is None:
        raise UsageError(
            f"no result with id or check id {ident!r} in this report: copy the id from the "
            "report's details panel (or compat.json results[...].repro.id), or pass a check id"
        )
    results = match.get("results") or {}
    if cell is not None:
        if cell not in results:
            raise UsageError(
                f"check {check_id!r} has no record in cell {cell!r}; it has: "
                f"{', '.join(results) or 'none'}"
            )
        return Located(check_id, cell, results[cell])
    failing = [n for n, r in results.items() if r.get("verdict") != "pass"]
    if not failing:
        raise UsageError(
            f"check {check_id!r} passes in every cell of this report; pass --cell to pick one"
        )
    return Located(check_id, failing[-1], results[failing[-1]])


# -- running a script in a cell ------------------------------------------------------------
def run_script(repro: Repro, python: str | os.PathLike[str], repo: Path = ROOT) -> int:
    """Run the script with ``python`` (output streams through); its exit status."""
    with tempfile.TemporaryDirectory(prefix="adapter-compat-repro-") as tmp:
        script = Path(tmp) / f"repro_{repro.id}.py"
        script.write_text(repro.script, encoding="utf-8")
        env = dict(os.environ, HF_HUB_OFFLINE="1", ADAPTER_COMPAT_REPO=str(repo))
        # A standalone script runs from an empty folder: it must not see the checkout.
        cwd = tmp if repro.kind == STANDALONE else str(repo)
        sys.stdout.flush()
        return subprocess.call([str(python), str(script)], cwd=cwd, env=env)
