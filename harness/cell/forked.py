"""Run one check's body in a forked, memory-limited child and replay its result.

Why: a loader that believes a header declaring terabytes (or aborts on one) must only be
able to take down a child process, never the cell. :func:`run_forked` forks, caps the
child's address space with ``RLIMIT_AS``, runs the job with its own
:class:`~harness.cell.context.CheckContext` and reads back how it ended as JSON;
:func:`replay` turns that back into the parent check's outcome. Library-agnostic: the
robustness suite hands it its memory-risky file cases.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from harness.cell.classify import CheckTimeout, Finding, LibraryError, NotRun, Unsupported
from harness.cell.context import CheckContext
from harness.protocol.outcomes import Outcome

# -- memory-guarded runs ---------------------------------------------------------------------------------
#: Address-space head-room a guarded case gets above what the process already maps.
GUARD_LIMIT_BYTES = 2 * 1024**3
#: Growth of peak RSS during one guarded case that counts as unbounded memory.
GUARD_RSS_BUDGET_MB = 512
GUARD_TIMEOUT_S = 60
#: Messages of an allocation that hit the limit (torch, Rust's allocator, Python).
ALLOCATION_FAILED = ("can't allocate memory", "out of memory", "memory allocation", "MemoryError")


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _allocation_failure(exc: BaseException | None) -> str | None:
    """Whether an exception (or its cause chain) is an allocation refused by the limit."""
    seen = 0
    while exc is not None and seen < 8:
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError) or any(w in text for w in ALLOCATION_FAILED):
            return text[:300]
        original = exc.original if isinstance(exc, LibraryError) else None
        exc = original or exc.__cause__ or exc.__context__
        seen += 1
    return None


def _child(job: Callable[[CheckContext], None], write_fd: int, limit_bytes: int) -> None:
    """Body of the forked child: cap the address space, run the job, report as JSON."""
    import resource

    torch.set_num_threads(1)  # OpenMP pools do not survive fork; one thread is enough
    limit = _vm_bytes() + limit_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    ctx = CheckContext()
    before = _peak_rss_mb()
    exc: BaseException | None = None
    try:
        job(ctx)
    except BaseException as caught:  # noqa: BLE001 - every ending is data
        exc = caught
    growth = round(_peak_rss_mb() - before, 1)
    failed = _allocation_failure(exc)
    if failed:
        exc = Finding(Outcome.CRASH, f"allocation beyond the memory limit: {failed}")
    elif growth > GUARD_RSS_BUDGET_MB:
        exc = Finding(Outcome.CRASH, f"unbounded memory: peak RSS grew {growth} MB")
    extra = {"rss_growth_mb": growth, "address_space_limit_gb": round(limit / 1024**3, 2)}
    payload = dump_result(ctx, exc, extra).encode()
    view = memoryview(payload)
    while view:
        view = view[os.write(write_fd, view) :]


def run_forked(
    job: Callable[[CheckContext], None],
    limit_bytes: int = GUARD_LIMIT_BYTES,
    timeout_s: float = GUARD_TIMEOUT_S,
) -> dict[str, Any]:
    """Run ``job`` in a forked child under ``RLIMIT_AS`` and return its result as data.

    Why fork: the child inherits the imported libraries and the built zoo (a fresh
    interpreter would pay the import again for every cell), yet a loader that believes a
    header declaring terabytes can only kill the child. A child that dies or hangs is
    recorded as CRASH / TIMEOUT for this case; the cell goes on."""
    import select
    import signal
    import time

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_fd)
            _child(job, write_fd, limit_bytes)
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    timed_out = False
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], left)
            if not ready:
                continue
            data = os.read(read_fd, 1 << 16)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(read_fd)
        if timed_out or sys.exc_info()[0] is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"outcome": "TIMEOUT", "message": f"guarded case exceeded {timeout_s:g} s"}
    if chunks:
        return json.loads(b"".join(chunks))
    if os.WIFSIGNALED(status):
        how = f"killed by signal {os.WTERMSIG(status)} ({signal.Signals(os.WTERMSIG(status)).name})"
    else:
        how = f"exited with status {os.WEXITSTATUS(status)} without a result"
    return {
        "outcome": "CRASH",
        "message": f"guarded child process {how}",
        "details": {"child": how},
    }


def replay(ctx: CheckContext, result: Mapping[str, Any]) -> None:
    """Turn a guarded child's result back into this check's outcome."""
    if "expected" in result:
        ctx.expect(*(Outcome(o) for o in result["expected"]))
    ctx.detail(**result.get("details", {}))
    ctx.detail(guarded=True)
    outcome = Outcome(result["outcome"])
    message = result.get("message") or result.get("reason", "")
    if result.get("exc_type"):
        ctx.detail(library_exception=result["exc_type"])
    if outcome is Outcome.OK:
        return
    if outcome is Outcome.UNSUPPORTED:
        raise Unsupported(message)
    if outcome is Outcome.NOT_RUN:
        raise NotRun(message)
    if outcome is Outcome.HARNESS_ERROR:
        raise RuntimeError(f"guarded child: {message}")
    if outcome is Outcome.TIMEOUT:
        raise CheckTimeout(message)
    kind = result.get("exc_type")
    raise Finding(outcome, message if kind in (None, "Finding") else f"{kind}: {message}")


def dump_result(ctx: CheckContext, exc: BaseException | None, extra: Mapping[str, Any]) -> str:
    """One JSON object describing how a guarded job ended."""
    from harness.cell.classify import outcome_of

    outcome, reason = outcome_of(exc)
    original = exc.original if isinstance(exc, LibraryError) else exc
    line = {
        "outcome": outcome.value,
        "reason": reason,
        "expected": sorted(o.value for o in ctx.expected),
        "exc_type": type(original).__name__ if original is not None else None,
        "message": str(original)[:500] if original is not None else "",
        "details": {**ctx.details, **extra},
    }
    return json.dumps(line, default=str)
