"""Ctrl-C and SIGTERM during a matrix run: stop every cell, keep what finished.

Python's default (KeyboardInterrupt in the main thread, instant death on SIGTERM) leaves
cell processes running in their own sessions and writes no record for the cells it cut
short. Instead the driver catches the first SIGINT / SIGTERM, stops each running cell's
process tree, records those cells as ``interrupted`` and raises :class:`MatrixInterrupted`,
so the command can still write the report of what finished and exit 128 + signal number
(130 / 143, what a shell reports for a process killed by that signal). A second signal
while stopping skips the grace period. Stdlib-only.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

#: Signals that stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Cell status for a cell cut short by a stop signal (the report shows it as a failed cell).
STATUS_INTERRUPTED = "interrupted"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """What a shell reports for a process ended by ``signum``: 130 SIGINT, 143 SIGTERM."""
    return 128 + int(signum)


class StopRequest:
    """The stop signal of a run, set from a signal handler and read by the driver's loop."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at: float | None = None
        self.hurry = False  # a second signal: no grace period
        self.event = threading.Event()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum, self.at = signum, time.monotonic()
        else:
            self.hurry = True
        self.event.set()

    def _handler(self, signum: int, _frame: Any) -> None:
        self.request(signum)

    @contextmanager
    def catching(self) -> Iterator[StopRequest]:
        """Handle STOP_SIGNALS while inside (main thread only: elsewhere Python cannot
        install handlers, and the caller's own handling stays in charge)."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                previous[signum] = signal.signal(signum, self._handler)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class MatrixInterrupted(Exception):
    """Raised by the driver after a stop signal, once every cell process has ended.

    ``outcomes``: one per cell that finished, was reused or was interrupted (matrix order);
    ``not_started``: names of the cells that never started (no record written for them,
    so their last complete results stay reusable by the next run)."""

    def __init__(self, signum: int, outcomes: Sequence[Any], not_started: Sequence[str]) -> None:
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = signum
        self.outcomes = list(outcomes)
        self.not_started = list(not_started)

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)
