"""pytest plugin: turns every check in ``suites/`` into a record and a verdict.

Loaded by ``suites/conftest.py`` (``pytest_plugins``), so ``pytest suites --compat-results
PATH`` works in any venv with torch + diffusers. Pytest's own outcome mirrors the verdict:
pass -> passed, regression / harness-error -> failed, unsupported / skipped -> skipped.
That keeps the terminal honest while the *records* are the data the report reads.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import threading
import time
import traceback as tb
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from harness.cell.classify import CheckTimeout, LibraryError, outcome_of
from harness.cell.context import CheckContext
from harness.protocol.outcomes import Outcome, Verdict, verdict_for
from harness.protocol.records import CheckRecord, append_line, write_record
from harness.protocol.versions import default_cell_name, installed_versions

RESULTS_ENV = "ADAPTER_COMPAT_RESULTS"
CELL_ENV = "ADAPTER_COMPAT_CELL"
DEVICE_ENV = "ADAPTER_COMPAT_DEVICE"
DTYPE_ENV = "ADAPTER_COMPAT_DTYPE"
DTYPES = ("float32", "float16", "bfloat16")
TRACEBACK_LIMIT = 8000
#: Of a traceback's final ``Type: message`` part, this much is kept (the full message is
#: in the record's ``message`` field up to 2000 characters anyway).
TRACEBACK_MESSAGE = 2000

_CTX_KEY = pytest.StashKey[CheckContext]()
_START_KEY = pytest.StashKey[float]()
_END_KEY = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("adapter-compat", "adapter-compat check records")
    group.addoption(
        "--compat-results",
        default=os.environ.get(RESULTS_ENV),
        help=f"append one JSON line per check to this file (env {RESULTS_ENV})",
    )
    group.addoption(
        "--compat-cell",
        default=os.environ.get(CELL_ENV),
        help=f"cell name stored in each record (env {CELL_ENV}; default from versions)",
    )
    group.addoption(
        "--compat-device",
        default=os.environ.get(DEVICE_ENV, "auto"),
        help=f"auto (CUDA when present), cpu or cuda[:N] (env {DEVICE_ENV})",
    )
    group.addoption(
        "--compat-dtype",
        default=os.environ.get(DTYPE_ENV, "float32"),
        choices=DTYPES,
        help=f"dtype of the zoo models (env {DTYPE_ENV})",
    )
    group.addoption(
        "--compat-check-timeout",
        type=float,
        default=float(os.environ.get("ADAPTER_COMPAT_CHECK_TIMEOUT", "300")),
        help="seconds before one check is recorded as TIMEOUT (0 disables)",
    )


class _Session:
    """Per-pytest-session facts shared by all records."""

    def __init__(self, config: pytest.Config) -> None:
        self.results: str | None = config.getoption("--compat-results")
        self.versions = installed_versions()
        self.cell = config.getoption("--compat-cell") or default_cell_name(self.versions)
        self.device_option = config.getoption("--compat-device")
        self.dtype = config.getoption("--compat-dtype")
        self.timeout = config.getoption("--compat-check-timeout")
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self._device: str | None = None
        self.started = 0.0
        self.import_s: float | None = None

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = resolve_device(self.device_option)
        return self._device


def resolve_device(option: str) -> str:
    """``auto`` picks CUDA when torch sees one; an explicit ``cuda`` without CUDA is an
    error a user should see at once rather than a suite full of failures."""
    import torch

    if option == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if option.startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError("--compat-device cuda requested but torch sees no CUDA device")
    return option


_SESSION_KEY = pytest.StashKey[_Session]()


def pytest_configure(config: pytest.Config) -> None:
    session = _Session(config)
    config.stash[_SESSION_KEY] = session
    session.started = time.perf_counter()
    if session.results and _is_main_process(config):
        # Import once here so the cell's timing splits into import vs suite seconds.
        begin = time.perf_counter()
        try:
            import diffusers
            import torch  # noqa: F401
            import transformers

            # diffusers and transformers import lazily: touch the classes every suite uses
            # so their modules count as import time, not as the first check's duration.
            for name in ("StableDiffusionPipeline", "AutoencoderKL", "UNet2DConditionModel"):
                getattr(diffusers, name, None)
            getattr(transformers, "CLIPTextModel", None)
        except Exception:  # noqa: BLE001 - the checks themselves will report a broken import
            pass
        # Every check allocates; without this each full collection re-walks the ~10^6
        # objects torch + diffusers + transformers just created, none of which will die.
        gc.freeze()
        session.import_s = time.perf_counter() - begin


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION_KEY, None)
    if session is None or not session.results or session.import_s is None:
        return
    total = time.perf_counter() - session.started
    line = {
        "kind": "session",
        "cell": session.cell,
        "import": round(session.import_s, 3),
        "suite": round(total - session.import_s, 3),
        "schema": 1,
    }
    append_line(session.results, json.dumps(line))


def _is_main_process(config: pytest.Config) -> bool:
    """Not an xdist worker, and not an xdist controller (which imports nothing itself)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    return not getattr(config.option, "numprocesses", None)


def _session(config: pytest.Config) -> _Session:
    return config.stash[_SESSION_KEY]


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def compat(request: pytest.FixtureRequest) -> CheckContext:
    """The check's context: declare expectations, wrap library calls, report findings."""
    ctx = CheckContext()
    request.node.stash[_CTX_KEY] = ctx
    return ctx


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> Any:
    import torch

    return torch.device(_session(pytestconfig).device)


@pytest.fixture(scope="session")
def dtype(pytestconfig: pytest.Config) -> Any:
    import torch

    return getattr(torch, _session(pytestconfig).dtype)


@pytest.fixture(scope="session")
def zoo(device: Any, dtype: Any) -> Any:
    """Tiny pipelines, each built once per session; ``zoo.get(name)`` hands out copies."""
    from harness.inputs.models.zoo import Zoo

    return Zoo(device=device, dtype=dtype)


# -- per-check timeout ---------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    limit = _session(item.config).timeout
    armed = (
        limit
        and "compat" in getattr(item, "fixturenames", ())
        and threading.current_thread() is threading.main_thread()
        and hasattr(signal, "SIGALRM")
    )
    if armed:

        def _alarm(signum: int, frame: Any) -> None:
            raise CheckTimeout(f"check exceeded {limit:g} s")

        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_START_KEY] = time.perf_counter()


# -- records -------------------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    # The check ends here: formatting pytest's own failure report is not the check's cost.
    item.stash[_END_KEY] = time.perf_counter()
    result = yield
    report: pytest.TestReport = result.get_result()
    if "compat" not in getattr(item, "fixturenames", ()):
        return
    if call.when == "setup" and report.passed:
        return  # the record is written after the call phase
    if call.when == "teardown":
        return
    exc = call.excinfo.value if call.excinfo is not None else None
    observed, reason = outcome_of(exc)
    ctx = item.stash.get(_CTX_KEY, None) or CheckContext()
    verdict = verdict_for(ctx.expected, observed)
    record = _build_record(item, ctx, observed, verdict, exc, reason, call)
    session = _session(item.config)
    if session.results:
        write_record(session.results, record)
        if "repro" in record.details:
            _write_repro(session.results, record)
    item.user_properties.append(("compat_verdict", verdict.value))
    _mirror_verdict(report, item, record, verdict, exc)


def repro_dir(results: str | os.PathLike[str]) -> Path:
    """Where a results file's reproduction scripts go: ``cell-X.jsonl`` -> ``cell-X.repro/``."""
    path = Path(results)
    return path.with_name(path.stem + ".repro")


def _write_repro(results: str | os.PathLike[str], record: CheckRecord) -> None:
    """Put the attached scenario next to the record as a runnable script, so a finding
    can be confirmed in that cell's venv before any report exists."""
    from harness.protocol import repro

    script = repro.build(record.check_id, record.cell, asdict(record))
    folder = repro_dir(results)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{script.id}.py").write_text(script.script, encoding="utf-8")


def _build_record(
    item: pytest.Item,
    ctx: CheckContext,
    observed: Outcome,
    verdict: Verdict,
    exc: BaseException | None,
    reason: str,
    call: pytest.CallInfo[None],
) -> CheckRecord:
    session = _session(item.config)
    suite, check_id = check_identity(item)
    params = dict(_callspec_params(item))
    params.update(ctx.params)
    original = exc.original if isinstance(exc, LibraryError) else exc
    message = ""
    trace = ""
    if original is not None:
        message = str(original)
        trace = "".join(tb.format_exception(type(original), original, original.__traceback__))
        trace = clip_traceback(trace, "".join(tb.format_exception_only(type(original), original)))
    details = dict(ctx.details)
    if verdict is Verdict.PASS:
        details.pop("repro", None)  # a repro script only matters where something is wrong
    if reason:
        details["reason"] = reason
    if ctx.library_messages:
        details["library_messages"] = ctx.library_messages[-20:]
    start = item.stash.get(_START_KEY, None)
    return CheckRecord(
        check_id=check_id,
        suite=suite,
        expected=sorted(o.value for o in ctx.expected),
        observed=observed.value,
        verdict=verdict.value,
        cell=session.cell,
        nodeid=item.nodeid,
        params=params,
        exc_type=type(original).__name__ if original is not None else None,
        message=message[:2000],
        traceback=trace,
        versions=session.versions,
        device=session.device if observed is not Outcome.HARNESS_ERROR else session.device_option,
        dtype=session.dtype,
        duration_s=round(item.stash[_END_KEY] - start, 4) if start else round(call.duration, 4),
        started_at=call.start,
        worker=session.worker,
        details=details,
    )


def clip_traceback(trace: str, ending: str = "", limit: int = TRACEBACK_LIMIT) -> str:
    """About ``limit`` characters: the first and last frames and the start of the final
    ``Type: message`` part (``ending``). Keeping only the last ``limit`` characters let a
    long exception message push every frame out of the record."""
    if len(trace) <= limit:
        return trace
    if not (ending and trace.endswith(ending)):
        ending = ""
    frames = trace[: len(trace) - len(ending)]
    if len(ending) > TRACEBACK_MESSAGE:
        cut = len(ending) - TRACEBACK_MESSAGE
        ending = ending[:TRACEBACK_MESSAGE] + f"\n[... {cut} characters of the message cut]\n"
    budget = max(limit - len(ending), 0)
    if len(frames) > budget:
        head = budget // 3
        cut = len(frames) - budget
        marker = f"\n[... {cut} characters of frames cut ...]\n"
        frames = frames[:head] + marker + frames[len(frames) - (budget - head) :]
    return frames + ending


def check_identity(item: pytest.Item) -> tuple[str, str]:
    """``suites/lora/test_formats.py::test_load[kohya]`` -> ``("lora", "lora/formats::load[kohya]")``.

    Stable across machines and pytest invocations (no absolute paths, no ``test_`` noise)."""
    path = Path(str(item.path))
    parts = path.parts
    if "suites" in parts:
        rel = parts[parts.index("suites") + 1 :]
    else:
        rel = parts[-2:]
    suite = rel[0] if len(rel) > 1 else "misc"
    module = "/".join(rel[1:]) if len(rel) > 1 else rel[0]
    module = module.removesuffix(".py")
    module = "/".join(p.removeprefix("test_") for p in module.split("/"))
    name = getattr(item, "originalname", None) or item.name.split("[")[0]
    name = name.removeprefix("test_")
    callspec = getattr(item, "callspec", None)
    suffix = f"[{callspec.id}]" if callspec is not None else ""
    return suite, f"{suite}/{module}::{name}{suffix}"


def _callspec_params(item: pytest.Item) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    out = {}
    for key, value in callspec.params.items():
        out[key] = (
            value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        )
    return out


def _mirror_verdict(
    report: pytest.TestReport,
    item: pytest.Item,
    record: CheckRecord,
    verdict: Verdict,
    exc: BaseException | None,
) -> None:
    """Make pytest's pass/fail/skip agree with the verdict."""
    headline = f"[{record.observed}, expected {'|'.join(record.expected)}] {record.message}".strip()
    if verdict is Verdict.PASS:
        report.outcome = "passed"
        report.longrepr = None
    elif verdict in (Verdict.UNSUPPORTED, Verdict.SKIPPED):
        report.outcome = "skipped"
        _, lineno, _ = item.location
        report.longrepr = (
            str(item.path),
            (lineno or 0) + 1,
            f"{record.observed}: {record.message or record.details.get('reason', '')}",
        )
    else:
        report.outcome = "failed"
        if report.longrepr is None:
            report.longrepr = f"{verdict.value}: {headline}"
        else:
            report.sections.append(("adapter-compat verdict", f"{verdict.value}: {headline}"))
