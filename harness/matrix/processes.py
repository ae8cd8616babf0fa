"""Stop a cell child and everything it started, even what left its process group.

Why more than ``os.killpg``: the cell runner starts pytest in a session of its own (so a
hung check can be killed whole), and nox starts uv in its group. A signal sent to the
child's group alone reaches nox / the cell runner but not pytest, its workers or anything a
check spawned; if the runner then dies (SIGTERM, SIGKILL) those are orphaned and keep
running. So the whole tree is listed first, while parent links still exist, and every
process group found in it is signalled. Linux reads ``/proc``; elsewhere ``ps``.
Stdlib-only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

#: Seconds between the polite signal and SIGKILL for whatever is left.
STOP_GRACE_S = 5.0

_PROC = Path("/proc")


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process we can see."""
    table: dict[int, tuple[int, int]] = {}
    if _PROC.is_dir():
        for entry in _PROC.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited while we looked
                continue
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) >= 3:
                table[int(entry.name)] = (int(fields[1]), int(fields[2]))
        return table
    try:
        listing = subprocess.run(
            ["ps", "-A", "-o", "pid=,ppid=,pgid="], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return table
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            table[int(parts[0])] = (int(parts[1]), int(parts[2]))
    return table


def process_tree(root: int) -> set[int]:
    """``root`` and all its living descendants."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _group) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def groups_of(pids: Iterable[int]) -> set[int]:
    """Process groups of the given pids (those still alive)."""
    table = _process_table()
    return {table[pid][1] for pid in pids if pid in table}


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    stat = _PROC / str(pid) / "stat"
    if _PROC.is_dir():
        try:
            text = stat.read_text()
        except OSError:
            return False
        return text[text.rfind(")") + 2 :].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_tree(pids: set[int], groups: set[int], signum: int) -> None:
    """Send ``signum`` to every group and to every pid (a pid may sit in a foreign group)."""
    own = os.getpgrp()
    for group in groups - {own}:
        try:
            os.killpg(group, signum)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids - {os.getpid()}:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class TreeStopper:
    """Stops one child process and its descendants: the signal first, SIGKILL later.

    The tree is listed again before each step, and what was seen once is remembered, so a
    process whose parent already died (reparented to init) is still reached."""

    def __init__(self, proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
        self.proc = proc
        self.pids: set[int] = set()
        self.groups: set[int] = {proc.pid}  # the child leads its own session

    def refresh(self) -> None:
        if self.proc.poll() is None:  # once it is reaped, its pid may be someone else's
            tree = process_tree(self.proc.pid)
            self.pids |= tree
            self.groups |= groups_of(tree)

    def send(self, signum: int) -> None:
        self.refresh()
        signal_tree(self.pids, self.groups, signum)

    def survivors(self) -> set[int]:
        return {pid for pid in self.pids if pid != os.getpid() and alive(pid)}

    def stop(self, signum: int, grace: float = STOP_GRACE_S) -> None:
        """``signum`` to the tree, wait up to ``grace`` s, then SIGKILL what is left."""
        self.send(signum)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not self.survivors():
                break
            self.refresh()  # catch processes started while it shut down
            time.sleep(0.05)
        self.kill()

    def kill(self) -> None:
        self.refresh()
        signal_tree(self.pids, self.groups, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
            pass
