"""What a running matrix shows: a live line per running cell, a line per finished cell.

A running cell is followed through what it already writes: check records appended to its
results file (checks done, pass / red so far) and pytest's "collected N items" in its log
(the total). On a terminal the lines are redrawn in place with ``rich`` when it is
installed; otherwise (CI logs, pipes, no rich) each running cell gets a plain line every
``PLAIN_EVERY_S`` seconds, so a log shows progress without being flooded.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

#: Verdicts counted as red in the live line (the library did not do what the check expects).
RED = frozenset({"regression", "broken"})

#: Seconds between plain progress lines for one running cell (non-TTY output).
PLAIN_EVERY_S = 30.0

#: Live redraws per second on a terminal.
LIVE_REFRESH_HZ = 4

# pytest: "collected 12 items" / "collected 1 item"; pytest-xdist: "2 workers [12 items]"
_COLLECTED = re.compile(rb"(?:collected (\d+) items?|workers \[(\d+) items?\])")


@dataclass
class CellProgress:
    """How far one running cell has got, read incrementally from its results and log."""

    name: str
    results: Path
    log: Path
    installing: bool = False  # started through nox: the venv is built first
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    collected: int | None = None
    verdicts: Counter = field(default_factory=Counter)
    _results_at: int = 0
    _log_at: int = 0

    def poll(self) -> CellProgress:
        self._read_results()
        self._read_log()
        return self

    def _read_results(self) -> None:
        chunk, self._results_at, reset = _read_new(self.results, self._results_at)
        if reset:  # the runner starts a fresh results file
            self.done, self.verdicts = 0, Counter()
        for line in chunk.splitlines():
            try:
                record: Any = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("kind", "check") == "check":
                self.done += 1
                self.verdicts[str(record.get("verdict", "?"))] += 1

    def _read_log(self) -> None:
        chunk, self._log_at, _ = _read_new(self.log, self._log_at)
        for match in _COLLECTED.finditer(chunk):
            self.collected = int(match.group(1) or match.group(2))
            self.installing = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def phase(self) -> str:
        if self.installing and self.done == 0:
            return "installing"
        return "running"

    def line(self) -> str:
        total = "?" if self.collected is None else str(self.collected)
        red = sum(n for verdict, n in self.verdicts.items() if verdict in RED)
        return (
            f"  {self.name:<24} {self.phase:<10} {self.done}/{total} checks, "
            f"{self.verdicts.get('pass', 0)} pass, {red} red ({self.elapsed:.0f} s)"
        )


def _read_new(path: Path, offset: int) -> tuple[bytes, int, bool]:
    """Complete lines appended to ``path`` since ``offset``; ``reset`` when it shrank."""
    try:
        size = path.stat().st_size
    except OSError:
        return b"", 0, offset > 0
    reset = size < offset
    if reset:
        offset = 0
    if size == offset:
        return b"", offset, reset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size - offset)
    end = data.rfind(b"\n") + 1  # a torn last line is read next time, whole
    return data[:end], offset + end, reset


class Display(Protocol):
    def finished(self, text: str) -> None: ...
    def update(self, running: list[CellProgress]) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """One line per finished cell, and one per running cell every ``every`` seconds."""

    def __init__(self, write: Callable[[str], None], every: float | None = None) -> None:
        self.write = write
        self.every = PLAIN_EVERY_S if every is None else every
        self._last: dict[str, float] = {}

    def finished(self, text: str) -> None:
        self.write(text)

    def update(self, running: list[CellProgress]) -> None:
        now = time.monotonic()
        for cell in running:
            last = self._last.setdefault(cell.name, cell.started)
            if now - last >= self.every:
                self._last[cell.name] = now
                self.write(cell.line())

    def close(self) -> None:
        pass


class RichDisplay:
    """The running cells' lines redrawn in place below the finished cells' lines."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self._text = Text
        self.console = Console(highlight=False)
        self.live = Live(
            Text(""),
            console=self.console,
            refresh_per_second=LIVE_REFRESH_HZ,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    def finished(self, text: str) -> None:
        self.live.console.print(self._text(text), soft_wrap=True)  # wrapped like print

    def update(self, running: list[CellProgress]) -> None:
        self.live.update(self._text("\n".join(c.line() for c in running)))

    def close(self) -> None:
        self.live.stop()


def make_display(write: Callable[[str], None] | None) -> Display:
    """Rich on a terminal when available and the caller kept the default output (print),
    else plain lines through ``write``."""
    if write is None or write is print:
        if sys.stdout.isatty():
            try:
                return RichDisplay()
            except ImportError:  # rich is optional for the outer tool
                pass
        return PlainDisplay(print_now)
    return PlainDisplay(write)


def print_now(text: str) -> None:
    """print, flushed: a CI log (a pipe, block-buffered) shows each line when it happens."""
    print(text, flush=True)
