"""Turn what a check raised into an outcome class.

Three sources, told apart by type so our own bugs never pass for library findings:

* :class:`Unsupported` / :class:`NotRun` - raised by the harness when an API is absent in
  this version, or the environment lacks a prerequisite;
* :class:`Finding` - raised by a check whose oracle saw the library do the wrong thing;
* :class:`LibraryError` - wraps anything the library raised inside ``compat.library_call()``
  and carries the clear / unclear / crash classification.

Anything else escaping a check is a ``HARNESS_ERROR``. Stdlib-only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from harness.protocol.outcomes import Outcome


class Unsupported(Exception):
    """The API under test does not exist in this version (grey in the grid)."""


class NotRun(Exception):
    """A prerequisite of the environment is missing (no CUDA, no real checkpoint...)."""


class Finding(Exception):
    """An oracle disagreed with the library."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class CheckTimeout(BaseException):
    """Raised by the per-check alarm; a BaseException so library ``except Exception`` blocks
    cannot swallow it."""


class LibraryError(Exception):
    """An exception raised by the library under test, with its classification."""

    def __init__(self, original: BaseException, outcome: Outcome, reason: str) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original
        self.outcome = outcome
        self.reason = reason


#: Exception types a loader may legitimately use to reject bad input.
CLEAR_ERROR_TYPES: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    RuntimeError,
    OSError,
    NotImplementedError,
    ImportError,
)

#: Clear-rejection types defined in packages we do not import here, matched by name along
#: the MRO: a loader's refusal of a malformed or unsafe file -> why it is a clear one.
FORMAT_ERROR_TYPES: dict[str, str] = {
    "SafetensorError": "safetensors' own exception for a malformed file",
    "UnpicklingError": "torch.load(weights_only=True) refusing a non-tensor global",
}
CLEAR_ERROR_TYPE_NAMES = frozenset(FORMAT_ERROR_TYPES)

#: Exception types that are never a clear rejection, whatever the message.
CRASH_TYPES: tuple[type[BaseException], ...] = (
    AssertionError,
    KeyError,
    IndexError,
    AttributeError,
    ZeroDivisionError,
    RecursionError,
    UnboundLocalError,
)

#: Messages of an otherwise acceptable type that mean the library fell over later than it
#: should have (a shape error at inference instead of at load time, and the like).
CRASH_MESSAGE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"mat1 and mat2 shapes cannot be multiplied"),
    re.compile(r"shapes cannot be multiplied"),
    re.compile(r"The size of tensor a \(\d+\) must match the size of tensor b"),
    re.compile(r"Expected all tensors to be on the same device"),
    re.compile(r"^\s*$"),
)


def classify_exception(exc: BaseException, names: Iterable[str] = ()) -> tuple[Outcome, str]:
    """Classify a library exception; ``names`` are strings a clear message must mention
    (e.g. the offending checkpoint keys). Returns the outcome and a one-line reason."""
    message = str(exc)
    if isinstance(exc, CRASH_TYPES):
        return Outcome.CRASH, f"{type(exc).__name__} is not a clear rejection"
    named_clear = any(t.__name__ in CLEAR_ERROR_TYPE_NAMES for t in type(exc).__mro__)
    if not isinstance(exc, CLEAR_ERROR_TYPES) and not named_clear:
        return Outcome.CRASH, f"unexpected exception type {type(exc).__name__}"
    for pattern in CRASH_MESSAGE_PATTERNS:
        if pattern.search(message):
            return Outcome.CRASH, f"late failure: {pattern.pattern!r}"
    names = [n for n in names if n]
    if names and not any(_mentions(message, n) for n in names):
        return Outcome.UNCLEAR_ERROR, "message names none of: " + ", ".join(sorted(names)[:5])
    return Outcome.CLEAR_ERROR, "clear rejection"


def _mentions(message: str, name: str) -> bool:
    """A key counts as named when it, or its last dotted components, appear in the message."""
    if name in message:
        return True
    parts = name.split(".")
    return any(".".join(parts[i:]) in message for i in range(1, max(1, len(parts) - 2)))


def outcome_of(exc: BaseException | None) -> tuple[Outcome, str]:
    """Map whatever ended a check (None when it returned) to an outcome and a reason."""
    if exc is None:
        return Outcome.OK, ""
    if isinstance(exc, BaseExceptionGroup):  # hypothesis reports several distinct failures
        outcomes = [outcome_of(sub) for sub in exc.exceptions]
        findings = [o for o in outcomes if o[0] is not Outcome.HARNESS_ERROR]
        return (findings or outcomes)[0]
    if isinstance(exc, Unsupported):
        return Outcome.UNSUPPORTED, str(exc)
    if isinstance(exc, NotRun):
        return Outcome.NOT_RUN, str(exc)
    if isinstance(exc, Finding):
        return exc.outcome, str(exc)
    if isinstance(exc, LibraryError):
        return exc.outcome, exc.reason
    if isinstance(exc, CheckTimeout):
        return Outcome.TIMEOUT, str(exc)
    if type(exc).__name__ == "Skipped":  # pytest.skip(): a prerequisite is missing
        return Outcome.NOT_RUN, str(exc)
    return Outcome.HARNESS_ERROR, f"{type(exc).__name__} outside a library call"
