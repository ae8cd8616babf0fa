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
    # a convolution fed the wrong width: "Given groups=1, weight of size [...], expected
    # input[...] to have 4 channels, but got 8 channels instead"
    re.compile(r"Given groups=\d+, weight of size"),
    # Python's own unpacking error inside the library's code (a converter splitting a
    # fused layer into three rows of a rank-4 matrix): it fell over, it did not refuse
    re.compile(r"(not enough|too many) values to unpack"),
    re.compile(r"^\s*$"),
)

#: A ``TypeError`` about the library's own call signatures: one of its functions called
#: another with a keyword or arity it no longer takes (the ``device`` -> ``device_map``
#: signature drift). The caller passed nothing wrong, so this is never a clear rejection.
SIGNATURE_DRIFT_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"got an unexpected keyword argument"),
    re.compile(r"missing \d+ required (positional|keyword-only) argument"),
    re.compile(r"takes \d+ positional arguments? but \d+ (were|was) given"),
    re.compile(r"got multiple values for argument"),
)

#: Messages that say nothing a user can act on, whatever names they contain: diffusers'
#: "Incompatible keys detected" lists keys it could not place without saying why.
UNCLEAR_MESSAGE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"Incompatible keys detected", re.IGNORECASE),
)


def classify_exception(exc: BaseException, names: Iterable[str] = ()) -> tuple[Outcome, str]:
    """Classify a library exception; ``names`` are keys or module paths *of the case*
    that a clear message must mention in full (a shared suffix such as ``attn1.to_q`` or a
    generic word such as "rank" or "shape" is not enough). Returns the outcome and a
    one-line reason."""
    message = str(exc)
    if isinstance(exc, CRASH_TYPES):
        return Outcome.CRASH, f"{type(exc).__name__} is not a clear rejection"
    named_clear = any(t.__name__ in CLEAR_ERROR_TYPE_NAMES for t in type(exc).__mro__)
    if not isinstance(exc, CLEAR_ERROR_TYPES) and not named_clear:
        return Outcome.CRASH, f"unexpected exception type {type(exc).__name__}"
    for pattern in CRASH_MESSAGE_PATTERNS:
        if pattern.search(message):
            return Outcome.CRASH, f"late failure: {pattern.pattern!r}"
    if isinstance(exc, TypeError):
        for pattern in SIGNATURE_DRIFT_PATTERNS:
            if pattern.search(message):
                return Outcome.CRASH, "signature drift: the library called itself wrongly"
    for pattern in UNCLEAR_MESSAGE_PATTERNS:
        if pattern.search(message):
            return Outcome.UNCLEAR_ERROR, f"message says only {pattern.pattern!r}"
    names = [n for n in names if n]
    if names and not any(_mentions(message, n) for n in names):
        return Outcome.UNCLEAR_ERROR, "message names none of: " + ", ".join(sorted(names)[:5])
    return Outcome.CLEAR_ERROR, "clear rejection"


#: Key suffixes that name a LoRA tensor, not a module: a message naming the module path in
#: front of them names the key.
_TENSOR_SUFFIXES = re.compile(
    r"\.(lora_(A|B|down|up|magnitude_vector)|lora(1|2)?\.(down|up)|alpha|dora_scale)"
    r"(\.(weight|bias|default))?$"
)


def _mentions(message: str, name: str) -> bool:
    """``name`` (a key or a module path) counts as named when it appears in full, or its
    module path does (the key less its tensor suffix, e.g. ``.lora_down.weight``), also
    without its component prefix. Never by a shared tail: ``attn1.to_q`` is in every
    block."""
    if name in message:
        return True
    module = _TENSOR_SUFFIXES.sub("", name)
    if module == name:
        return False
    if module in message:
        return True
    # The module path inside its component (``unet.down_blocks.0...to_q`` named as
    # ``down_blocks.0...to_q``) still names one module; a two-part tail does not.
    inner = module.split(".", 1)[-1]
    return inner.count(".") >= 2 and inner in message


#: Outcomes that say nothing about the library: in an exception group a finding wins.
_NOT_FINDINGS = frozenset({Outcome.HARNESS_ERROR, Outcome.NOT_RUN, Outcome.UNSUPPORTED})


def outcome_of(exc: BaseException | None) -> tuple[Outcome, str]:
    """Map whatever ended a check (None when it returned) to an outcome and a reason."""
    if exc is None:
        return Outcome.OK, ""
    if isinstance(exc, BaseExceptionGroup):  # hypothesis reports several distinct failures
        outcomes = [outcome_of(sub) for sub in exc.exceptions]
        findings = [o for o in outcomes if o[0] not in _NOT_FINDINGS]
        ours = [o for o in outcomes if o[0] is Outcome.HARNESS_ERROR]
        return (findings or ours or outcomes)[0]
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
