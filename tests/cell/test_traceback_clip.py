"""Stored tracebacks keep their first and last frames and the start of the message: cut to
the last 8000 characters, a long exception message pushed every frame out of the record."""

from __future__ import annotations

import traceback

from harness.cell.plugin import TRACEBACK_LIMIT, clip_traceback


def _deep(n: int, message: str) -> None:
    if n == 0:
        raise ValueError(message)
    _deeper(n - 1, message)  # alternating frames: Python collapses identical repeats


def _deeper(n: int, message: str) -> None:
    _deep(n, message)


def _trace(depth: int, message: str) -> tuple[str, str]:
    try:
        _deep(depth, message)
    except ValueError as exc:
        full = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        ending = "".join(traceback.format_exception_only(type(exc), exc))
        return full, ending
    raise AssertionError("no exception")


def test_long_message_keeps_the_frames() -> None:
    full, ending = _trace(3, "unexpected key: " + "x" * 20_000)
    kept = clip_traceback(full, ending)
    assert len(kept) < TRACEBACK_LIMIT + 200
    assert kept.startswith("Traceback (most recent call last):")
    assert "_trace" in kept and "raise ValueError(message)" in kept  # outer and raising frame
    assert "ValueError: unexpected key: xxx" in kept and "characters of the message cut" in kept
    old = full[-TRACEBACK_LIMIT:]  # what used to be stored: message only, no frame
    assert "raise ValueError" not in old and "File " not in old


def test_deep_stack_keeps_head_and_tail() -> None:
    full, ending = _trace(300, "boom")
    kept = clip_traceback(full, ending)
    assert len(kept) < TRACEBACK_LIMIT + 200 and "characters of frames cut" in kept
    assert "_trace" in kept and "raise ValueError(message)" in kept and kept.endswith(ending)


def test_short_traceback_is_unchanged() -> None:
    full, ending = _trace(2, "boom")
    assert clip_traceback(full, ending) == full
