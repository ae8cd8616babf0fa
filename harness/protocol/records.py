"""Check records: one JSON object per line, appended as checks finish.

Why JSON lines: a killed run keeps every line it finished, concurrent writers (xdist
workers, parallel cells) can share a file when each line goes out in a single locked
``write``, and a reader can drop a torn last line instead of losing the file.
Stdlib-only: imported inside every matrix cell.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:  # POSIX advisory lock; on other platforms O_APPEND alone keeps small lines whole
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1

#: Record kinds: a check result, or a whole-cell status line written by the runner.
KIND_CHECK = "check"
KIND_CELL = "cell"

#: A venv built from a diffusers source tree holds this JSON file (commit, date, subject,
#: declared version); the cell runner copies it into the cell record's ``source``.
SOURCE_FILE = "adapter-compat-source.json"


@dataclass
class CheckRecord:
    """The result of one check in one cell. Field names are the JSON schema (version 1)."""

    check_id: str
    suite: str
    expected: list[str]
    observed: str
    verdict: str
    cell: str = ""
    nodeid: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    exc_type: str | None = None
    message: str = ""
    traceback: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    duration_s: float = 0.0
    started_at: float = 0.0
    worker: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    kind: str = KIND_CHECK
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


@dataclass
class CellRecord:
    """How a whole cell ended: ``ok``, ``empty`` (nothing collected), ``crashed``,
    ``timeout``, ``install_failed`` (``message`` holds the installer's own reason) or
    ``interrupted`` (the driver stopped it on SIGINT / SIGTERM; written last, it wins over
    whatever the dying cell recorded)."""

    cell: str
    status: str
    message: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    exit_code: int | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    fingerprint: str = ""  # what ran (pins, torch, suites, args): equal -> safe to resume
    source: dict[str, str] = field(default_factory=dict)  # source cells: the commit's facts
    kind: str = KIND_CELL
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line atomically with respect to other writers of the same file."""
    data = (line.rstrip("\n") + "\n").encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_record(path: str | os.PathLike[str], record: CheckRecord | CellRecord) -> None:
    append_line(path, record.to_json())


def read_records(paths: Iterable[str | os.PathLike[str]]) -> Iterator[dict[str, Any]]:
    """Yield every record from the given JSONL files.

    A line that does not parse (typically the torn last line of a killed writer) is skipped
    with a warning naming file and line; the rest of the file still counts.
    """
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    warnings.warn(
                        f"{path}:{lineno}: ignoring a truncated or corrupt record line",
                        stacklevel=2,
                    )
                    continue
                if isinstance(obj, dict):
                    yield obj
