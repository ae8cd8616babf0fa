"""The ``compat`` object a check talks to.

A check declares what it expects (``expect``), names its parameters (``param``), marks the
calls into the library under test (``library_call``) and reports oracle disagreements
(``finding``). The pytest plugin turns the result into a record and a verdict.
"""

from __future__ import annotations

import contextlib
import logging
import textwrap
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

from harness.cell.classify import (
    CheckTimeout,
    Finding,
    LibraryError,
    NotRun,
    Unsupported,
    classify_exception,
)
from harness.protocol.outcomes import Outcome

#: Outcomes that are a rejection of the input rather than a crash.
REJECTIONS = frozenset({Outcome.CLEAR_ERROR, Outcome.UNCLEAR_ERROR})

#: Loggers whose warnings count as "the library reported it" (e.g. unexpected LoRA keys).
LIBRARY_LOGGERS = ("diffusers", "peft", "transformers", "accelerate", "huggingface_hub")


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name}: {record.getMessage()}")


class CheckContext:
    """Per-check state: expectation, parameters, captured library messages, details."""

    def __init__(self) -> None:
        self.expected: set[Outcome] = {Outcome.OK}
        self.params: dict[str, Any] = {}
        self.details: dict[str, Any] = {}
        self.library_messages: list[str] = []
        self.input_valid = False

    # -- declarations -------------------------------------------------------------------
    def expect(self, *outcomes: Outcome) -> None:
        """Declare the acceptable outcome(s); the default is ``OK``."""
        self.expected = set(outcomes)

    def valid_input(self, what: str = "") -> None:
        """Declare that this check feeds the library valid input (a complete, well-formed
        file of a format it has a loader for; a documented, valid call): a rejection of it,
        however clearly worded, is ``REFUSED`` (a finding), never a pass. ``what`` says
        what the input is, for the record."""
        self.input_valid = True
        self.details["input"] = what or "valid"

    def may_reject(self, why: str = "") -> None:
        """From here on the input is one the library may refuse, clearly (a partial file, a
        stray key, a swap the semantics do not promise): OK or CLEAR_ERROR pass."""
        self.input_valid = False
        self.expected = {Outcome.OK, Outcome.CLEAR_ERROR}
        if why:
            self.details["input"] = why

    def param(self, **params: Any) -> None:
        """Attach parameters to the record (format, architecture, ...) for grid filters."""
        self.params.update({k: _plain(v) for k, v in params.items()})

    def detail(self, **info: Any) -> None:
        """Attach extra evidence (max abs diff, keys dropped, ...) to the record."""
        self.details.update({k: _plain(v) for k, v in info.items()})

    def repro(self, body: str) -> None:
        """Attach a standalone script reproducing this check's scenario (imports only
        torch / diffusers / safetensors, builds its tiny inputs itself, exits 1 while the
        finding reproduces). Kept on non-passing records only; see ``harness/protocol/repro.py``."""
        self.details["repro"] = textwrap.dedent(body).strip("\n") + "\n"

    # -- outcomes -----------------------------------------------------------------------
    @staticmethod
    def unsupported(reason: str) -> NoReturn:
        raise Unsupported(reason)

    def require(self, condition: object, reason: str) -> None:
        """UNSUPPORTED unless ``condition`` holds (use for "this API exists" probes)."""
        if not condition:
            raise Unsupported(reason)

    @staticmethod
    def not_run(reason: str) -> NoReturn:
        raise NotRun(reason)

    @staticmethod
    def finding(outcome: Outcome, message: str) -> NoReturn:
        raise Finding(outcome, message)

    @contextlib.contextmanager
    def library_call(self, names: Iterable[str] = (), late: bool = False) -> Iterator[list[str]]:
        """Run library code: its exceptions are classified (clear / unclear / crash) and its
        warnings (``warnings`` and library loggers) are captured into the yielded list.

        ``names``: keys or module paths *of this case* a clear error message must mention.
        After :meth:`valid_input`, a rejection (clear or not) is ``REFUSED``.
        ``late=True`` marks a call after the point where the library should already have
        rejected the input (inference after a load that must fail): any error there is a
        late failure (``CRASH``), whatever its type or wording.
        """
        captured: list[str] = []
        handler = _ListHandler(captured)
        loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
        for logger in loggers:
            logger.addHandler(handler)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    yield captured
                except (Unsupported, NotRun, Finding, CheckTimeout, LibraryError):
                    raise
                except Exception as exc:  # noqa: BLE001 - classification is the point
                    outcome, reason = classify_exception(exc, names)
                    if late:
                        outcome = Outcome.CRASH
                        reason = f"late failure: {type(exc).__name__} after the library accepted the input"
                    elif self.input_valid and outcome in REJECTIONS:
                        reason = f"valid input refused ({outcome.value.lower()}: {reason})"
                        outcome = Outcome.REFUSED
                    raise LibraryError(exc, outcome, reason) from exc
                finally:
                    captured.extend(f"{w.category.__name__}: {w.message}" for w in caught)
        finally:
            for logger in loggers:
                logger.removeHandler(handler)
            self.library_messages.extend(captured)


def _plain(value: Any) -> Any:
    """Make a parameter JSON-friendly (dtypes, devices, enums become strings)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(getattr(value, "value", value))
