"""Root causes of red results: which red grid cells are the same bug.

Why in the report and not in triage: the report's first-bad table and the issue drafts
must agree on what "one breakage" is, and triage may import the report, never the reverse.

Two kinds of cause:

* the library raised (``exc_type`` is a real exception): same exception type, same
  normalised message (quoted names, numbers and addresses blanked) and same code location
  (the innermost frame in the library under test, by file and function, never by line
  number: lines move between releases);
* an oracle judged the result (``exc_type`` is the harness's ``Finding``, or none): same
  observed outcome on the same operation (the check's test function, e.g.
  ``lora/formats::load``).

Also here: trimming pytest / pluggy frames from tracebacks, and the plain-words name of an
outcome, both for the places a person reads a result (HTML panel, issue drafts).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: ``exc_type`` of a result whose oracle disagreed with the library (``harness.cell.classify``):
#: an internal class name, not something the library raised.
ORACLE_EXCEPTION = "Finding"

#: Exception types the harness raises itself; never a library code location.
HARNESS_EXCEPTIONS = frozenset({ORACLE_EXCEPTION, "Unsupported", "NotRun", "CheckTimeout"})

#: Packages whose frames are the library under test, preferred as the code location
#: (a crash deep in torch is *where* it failed, the diffusers caller is *why*).
LIBRARY_UNDER_TEST = ("diffusers", "peft")

#: Path parts of frames that are test-runner plumbing: hidden from tracebacks people read.
RUNNER_FRAME_PARTS = ("/_pytest/", "/pluggy/")

#: What each observed outcome means, in words (the panel and drafts name it this way).
OUTCOME_TEXT: dict[str, str] = {
    "OK": "the call did what the check expects",
    "CLEAR_ERROR": "rejected with an error that names the problem",
    "REFUSED": "valid input rejected",
    "CRASH": "crashed with an unexpected exception",
    "SILENT_NOOP": "accepted, and nothing changed",
    "DROPPED_KEYS": "some checkpoint keys had no effect and no warning",
    "WRONG_RESULT": "an effect, but not the one the reference predicts",
    "STALE_STATE": "state from an earlier step leaked into a later one",
    "INPUT_MUTATED": "the caller's dict or tensors were changed",
    "TIMEOUT": "did not finish in time",
    "UNSUPPORTED": "the API does not exist in this version",
    "HARNESS_ERROR": "a bug in the harness",
    "UNCLEAR_ERROR": "rejected with an error whose message names nothing useful",
    "NOT_RUN": "a prerequisite is missing in this environment",
    "INSTALL_FAILED": "the cell could not be installed",
}

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+, in (?P<func>\S+)\s*$')
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)?")
_MESSAGE_CHARS = 160


@dataclass(frozen=True)
class Cause:
    """One root cause; ``key`` is stable across runs (no line numbers, no values)."""

    key: str
    exc_type: str | None  # None for an oracle's finding
    observed: str
    where: str  # library code location, or the operation for an oracle's finding
    message: str  # normalised message ("" for an oracle's finding)

    @property
    def raised(self) -> bool:
        return self.exc_type is not None

    def describe(self) -> str:
        """One line: ``KeyError 'N' in diffusers/loaders/unet.py:_convert…`` or
        ``DROPPED_KEYS on lora/formats::load``."""
        if self.raised:
            text = f"{self.exc_type}"
            if self.message:
                text += f": {self.message}"
            return f"{text} (in {self.where})" if self.where else text
        return f"{self.observed} on {self.where}"


def operation(check_id: str) -> str:
    """``suite/module::function`` without parameters: ``lora/formats::load``."""
    return check_id.split("[", 1)[0]


def normalise_message(message: str) -> str:
    """The message with what varies per input blanked: quoted names, addresses, numbers."""
    first = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    text = _QUOTED.sub("'…'", first)
    text = _HEX.sub("0x…", text)
    text = _NUMBER.sub("N", text)
    text = " ".join(text.split())
    return text[:_MESSAGE_CHARS]


def frames(traceback: str) -> list[tuple[str, str]]:
    """(path, function) of every frame, outermost first."""
    found = []
    for line in (traceback or "").splitlines():
        match = _FRAME.match(line)
        if match:
            found.append((match.group("path"), match.group("func")))
    return found


def package_path(path: str) -> str | None:
    """``diffusers/loaders/unet.py`` for a frame inside an installed package, else None."""
    marker = "site-packages/"
    at = path.rfind(marker)
    if at < 0:
        return None
    return path[at + len(marker) :]


def code_location(traceback: str) -> str:
    """Innermost frame in the library under test (``file:function``), else the innermost
    installed-package frame outside the test runner, else ""."""
    fallback = ""
    for path, func in reversed(frames(traceback)):
        rel = package_path(path)
        if rel is None or any(part in f"/{rel}" for part in RUNNER_FRAME_PARTS):
            continue
        where = f"{rel}:{func}"
        if rel.split("/", 1)[0] in LIBRARY_UNDER_TEST:
            return where
        fallback = fallback or where
    return fallback


def cause_of(
    check_id: str, observed: str, exc_type: str | None, message: str, traceback: str
) -> Cause:
    """The root cause of one red result (see the module docstring for the two kinds)."""
    raised = bool(exc_type) and exc_type not in HARNESS_EXCEPTIONS
    if raised:
        where = code_location(traceback)
        norm = normalise_message(message)
        parts = ["raised", str(exc_type), norm, where or operation(check_id)]
        return Cause(_digest(parts), str(exc_type), observed, where or operation(check_id), norm)
    where = operation(check_id)
    return Cause(_digest(["judged", observed, where]), None, observed, where, "")


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def trim_traceback(traceback: str) -> str:
    """The traceback without pytest / pluggy frames (each run of them becomes one
    ``[N test-runner frames hidden]`` line); everything else kept verbatim."""
    if not traceback:
        return traceback
    out: list[str] = []
    hidden = 0
    skipping = False
    for line in traceback.splitlines():
        match = _FRAME.match(line)
        if match:
            skipping = any(part in match.group("path") for part in RUNNER_FRAME_PARTS)
            if skipping:
                hidden += 1
                continue
            if hidden:
                out.append(f"  [{hidden} test-runner frame(s) hidden]")
                hidden = 0
            out.append(line)
            continue
        if skipping and line.startswith("    "):
            continue  # source / caret lines of a hidden frame
        skipping = False
        if hidden:
            out.append(f"  [{hidden} test-runner frame(s) hidden]")
            hidden = 0
        out.append(line)
    if hidden:
        out.append(f"  [{hidden} test-runner frame(s) hidden]")
    return "\n".join(out) + ("\n" if traceback.endswith("\n") else "")


def outcome_name(observed: str) -> str:
    """``DROPPED_KEYS: some checkpoint keys had no effect and no warning``."""
    text = OUTCOME_TEXT.get(observed)
    return f"{observed}: {text}" if text else observed


def exception_text(exc_type: str | None) -> str:
    """What to show as "exception": never the harness's internal ``Finding``."""
    if not exc_type:
        return "none"
    if exc_type == ORACLE_EXCEPTION:
        return "none raised (the check's oracle judged the result)"
    return exc_type
