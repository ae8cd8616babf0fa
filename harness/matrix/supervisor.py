"""The cells running right now: their processes (to stop them) and progress (to show it).

Worker threads register each cell child when it starts and unregister it when it ends; the
driver's main thread reads the registry to redraw progress and, after a stop signal, to
stop every running cell at once (one grace period for all, not one per cell). Whether a
cell was stopped this way is kept on its entry, so the worker can record it as
``interrupted`` rather than as the crash its exit code would suggest.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

from harness.matrix.interrupt import StopRequest
from harness.matrix.processes import STOP_GRACE_S, TreeStopper
from harness.matrix.progress import CellProgress, Display


@dataclass
class RunningCell:
    name: str
    proc: subprocess.Popen  # type: ignore[type-arg]
    stopper: TreeStopper
    progress: CellProgress
    stopped_by: int | None = None  # the signal that made the driver stop it


class Supervisor:
    def __init__(self, stop: StopRequest, display: Display, grace: float = STOP_GRACE_S) -> None:
        self.stop = stop
        self.display = display
        self.grace = grace
        self._lock = threading.Lock()
        self._running: dict[str, RunningCell] = {}

    def started(
        self,
        name: str,
        proc: subprocess.Popen,
        progress: CellProgress,  # type: ignore[type-arg]
    ) -> RunningCell:
        entry = RunningCell(name, proc, TreeStopper(proc), progress)
        with self._lock:
            self._running[name] = entry
            late = self.stop.requested  # the signal came while this cell was starting
            if late:
                entry.stopped_by = self.stop.signum
        if late:
            entry.stopper.kill()
        return entry

    def ended(self, name: str) -> None:
        with self._lock:
            self._running.pop(name, None)

    def refresh(self) -> None:
        with self._lock:
            running = list(self._running.values())
        self.display.update([entry.progress.poll() for entry in running])

    def stop_all(self, signum: int) -> list[RunningCell]:
        """Send ``signum`` to every running cell's tree, wait once for all of them (up to
        the grace period, less after a second signal), then SIGKILL every survivor."""
        with self._lock:
            entries = list(self._running.values())
            for entry in entries:
                if entry.proc.poll() is None:  # one that just ended on its own is not cut short
                    entry.stopped_by = signum
        for entry in entries:
            entry.stopper.send(signum)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and not self.stop.hurry:
            if all(e.proc.poll() is not None and not e.stopper.survivors() for e in entries):
                break
            for entry in entries:
                entry.stopper.refresh()
            time.sleep(0.05)
        for entry in entries:
            entry.stopper.kill()
        return entries
