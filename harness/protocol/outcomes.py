"""Outcome classes and verdicts: what a check observed, and what that means for the grid.

A check *observes* one outcome class and *declares* the outcome(s) it expects; the verdict
follows from the pair. Kept stdlib-only: this module is imported inside every matrix cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Outcome(StrEnum):
    """What happened when a check drove the library."""

    OK = "OK"
    CLEAR_ERROR = "CLEAR_ERROR"  # a documented exception type with a message naming the problem
    REFUSED = "REFUSED"  # valid input rejected (clearly or not): support a user does not get
    CRASH = "CRASH"  # unexpected exception type (AssertionError, bare KeyError, matmul shape ...)
    SILENT_NOOP = "SILENT_NOOP"  # the call was accepted and changed nothing
    DROPPED_KEYS = "DROPPED_KEYS"  # some checkpoint keys had no effect and no warning
    WRONG_RESULT = "WRONG_RESULT"  # an effect, but not the one the reference predicts
    STALE_STATE = "STALE_STATE"  # state from an earlier step leaked into a later one
    INPUT_MUTATED = "INPUT_MUTATED"  # the caller's dict / tensors were changed
    TIMEOUT = "TIMEOUT"
    UNSUPPORTED = "UNSUPPORTED"  # the API does not exist in this version (grey, not red)
    HARNESS_ERROR = "HARNESS_ERROR"  # our bug; never reported as a library finding
    UNCLEAR_ERROR = "UNCLEAR_ERROR"  # an expected exception type whose message names nothing
    NOT_RUN = "NOT_RUN"  # this environment lacks a prerequisite (e.g. CUDA, a real checkpoint)
    INSTALL_FAILED = "INSTALL_FAILED"  # cell-level: the environment could not be built


class Verdict(StrEnum):
    PASS = "pass"
    #: Red where the row passed in an older cell (or in the baseline): support was lost.
    REGRESSION = "regression"
    #: Red in a row that never passed: not a regression. Cells only ever record
    #: ``regression``; the report, which sees every cell, calls a red row "broken" until a
    #: pass precedes it (:func:`harness.report.grid.build_model`).
    BROKEN = "broken"
    UNSUPPORTED = "unsupported"
    HARNESS_ERROR = "harness-error"
    SKIPPED = "skipped"


#: Outcomes that are never a statement about the library under test.
NEUTRAL = {
    Outcome.UNSUPPORTED: Verdict.UNSUPPORTED,
    Outcome.HARNESS_ERROR: Verdict.HARNESS_ERROR,
    Outcome.NOT_RUN: Verdict.SKIPPED,
}


def verdict_for(expected: Iterable[Outcome], observed: Outcome) -> Verdict:
    """Pass when the observation is one of the expected outcomes, else regression.

    UNSUPPORTED, NOT_RUN and HARNESS_ERROR keep their own verdicts unless explicitly
    expected, so a missing API is grey and our own bugs never masquerade as regressions.
    """
    expected = set(expected)
    if observed in expected:
        return Verdict.PASS
    if observed in NEUTRAL:
        return NEUTRAL[observed]
    return Verdict.REGRESSION
