"""Reproduction scripts for non-passing results (``adapter-compat repro ID``).

Two kinds, and every script says which it is in its first lines:

``standalone``
    The check attached the scenario itself with ``compat.repro(body)``: a complete Python
    script that imports only torch / diffusers / safetensors (tiny models and checkpoints
    built in the script). This module adds a header (check, cell, observed vs expected,
    the ``pip install`` line of the cell) around it. Paste it into a bug report as is.
``rerun``
    No body was attached: the script re-runs exactly that check (``pytest <nodeid>``) from
    an adapter-compat checkout, with the cell's device and dtype. Not standalone; it needs
    the checkout (``ADAPTER_COMPAT_REPO`` or the first argument, default: where the
    report was written).

Both exit 1 while the finding reproduces and 0 once the library behaves as expected.
The builder works on plain ``compat.json`` data so any stored report can be reproduced.
It lives in the protocol because both sides build scripts: the in-cell plugin (next to
its records) and the report. Stdlib only. Finding a result in a report and running its
script in a cell venv is triage: :mod:`harness.triage.reproduce`.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: The committed matrix data: cells.json and locks/<diffusers version>.txt.
#: ``ADAPTER_COMPAT_MATRIX_DIR`` swaps in another (self-tests, forks, bisect's private
#: matrix). Defined here, once, so a script header can cite a cell's lock without the
#: protocol importing the outer matrix code; :mod:`harness.matrix.cells` imports both.
MATRIX_DIR = Path(os.environ.get("ADAPTER_COMPAT_MATRIX_DIR", ROOT / "fixtures" / "matrix"))
LOCK_DIR = MATRIX_DIR / "locks"

STANDALONE = "standalone"
RERUN = "rerun"

#: details key a check's ``compat.repro(body)`` stores its script under.
DETAILS_KEY = "repro"

#: Installed packages a standalone script needs, in the order the pip line lists them.
PIP_PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "accelerate",
    "huggingface_hub",
    "safetensors",
    "numpy",
)

#: Extra packages the rerun kind needs (it runs pytest with the harness plugin).
RERUN_TOOLING = ("pytest", "hypothesis")


@dataclass(frozen=True)
class Repro:
    id: str
    kind: str
    script: str
    check_id: str
    cell: str

    @property
    def command(self) -> str:
        return f"adapter-compat repro {self.id}"

    @property
    def file(self) -> str:
        """Path of the script inside a report folder."""
        return f"repro/{self.id}.py"

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "kind": self.kind, "file": self.file, "command": self.command}


def repro_id(check_id: str, cell: str) -> str:
    """Short, stable across runs (the same finding keeps its id night after night)."""
    return hashlib.sha256(f"{check_id}@{cell}".encode()).hexdigest()[:10]


def pip_line(versions: Mapping[str, str], rerun: bool = False) -> str:
    pins = []
    for name in PIP_PACKAGES:
        value = str(versions.get(name) or "")
        if not value or value in ("absent", "?", "unknown"):
            continue
        pin = value.split("+")[0] if name == "torch" else value
        pins.append(shlex.quote(f"{name.replace('_', '-')}=={pin}"))
    if rerun:
        pins += list(RERUN_TOOLING)
    return "pip install " + " ".join(pins)


def _comment(label: str, text: str, limit: int = 600) -> list[str]:
    flat = str(text).strip()
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    lines = flat.splitlines() or [""]
    out = [f"# {label:<9} {lines[0]}".rstrip()]
    out += [f"# {'':<9} {line}".rstrip() for line in lines[1:8]]
    if len(lines) > 8:
        out.append(f"# {'':<9} … ({len(lines) - 8} more lines)")
    return out


def _header(
    kind: str, ident: str, check_id: str, cell: str, result: Mapping[str, Any]
) -> list[str]:
    versions = result.get("versions") or {}
    exc = f" ({result['exc_type']})" if result.get("exc_type") else ""
    expected = " | ".join(result.get("expected") or []) or "?"
    what = {
        STANDALONE: "standalone: the scenario the check attached (imports no harness code)",
        RERUN: "rerun: re-runs the check from an adapter-compat checkout (no standalone body was attached)",
    }[kind]
    lines = [
        "#!/usr/bin/env python3",
        f"# adapter-compat reproduction {ident} -- {what}",
        *_comment("check:", check_id),
        *_comment(
            "cell:",
            f"{cell} (diffusers {versions.get('diffusers', '?')}, torch "
            f"{versions.get('torch', '?')}, python {versions.get('python', '?')}, "
            f"{result.get('device') or 'cpu'} / {result.get('dtype') or 'float32'})",
        ),
        *_comment("observed:", f"{result.get('observed', '?')}{exc}; expected {expected}"),
    ]
    if result.get("message"):
        lines += _comment("message:", str(result["message"]))
    lock = lock_file_for(str(versions.get("diffusers") or ""))
    lines += [
        "#",
        "# Environment of the cell:",
        f"#   {pip_line(versions, rerun=kind == RERUN)}",
    ]
    if lock is not None:
        lines.append(f"#   (full lock: {lock})")
    lines += [
        "#",
        "# Exit status: 1 while the finding reproduces, 0 once the library behaves as expected.",
        "",
    ]
    return lines


def lock_file_for(diffusers: str) -> str | None:
    """The committed lock of that diffusers version, relative to the checkout, if any."""
    if not diffusers:
        return None
    path = LOCK_DIR / f"{diffusers}.txt"
    if not path.is_file():
        return None
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def build(check_id: str, cell: str, result: Mapping[str, Any], repo: Path = ROOT) -> Repro:
    """The script for one (check, cell) result (a compat.json ``results`` entry)."""
    ident = repro_id(check_id, cell)
    details = result.get("details") or {}
    body = details.get(DETAILS_KEY) if isinstance(details, Mapping) else None
    if isinstance(body, str) and body.strip():
        text = "\n".join(_header(STANDALONE, ident, check_id, cell, result))
        text += _strip_shebang(body).rstrip() + "\n"
        return Repro(ident, STANDALONE, text, check_id, cell)
    nodeid = str(result.get("nodeid") or "")
    text = "\n".join(_header(RERUN, ident, check_id, cell, result)) + _RERUN_TEMPLATE.format(
        repo=repr(str(repo)),
        nodeid=repr(nodeid),
        cell=repr(cell),
        device=repr(str(result.get("device") or "cpu")),
        dtype=repr(str(result.get("dtype") or "float32")),
    )
    return Repro(ident, RERUN, text, check_id, cell)


_RERUN_TEMPLATE = """import os
import subprocess
import sys

REPO = os.environ.get("ADAPTER_COMPAT_REPO") or (sys.argv[1] if len(sys.argv) > 1 else {repo})
NODEID = {nodeid}
CELL = {cell}

env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
code = subprocess.call(
    [sys.executable, "-m", "pytest", NODEID, "-p", "no:cacheprovider", "-q", "-rA",
     "--compat-cell", CELL, "--compat-device", {device}, "--compat-dtype", {dtype}],
    cwd=REPO,
    env=env,
)
# pytest mirrors the verdict: 1 = regression / harness error (the finding reproduces).
sys.exit(code)
"""


def _strip_shebang(body: str) -> str:
    lines = body.lstrip("\n").splitlines(keepends=True)
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    return "".join(lines)
