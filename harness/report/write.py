"""Write one report folder: records in, compat.json / compat.md / compat.html (plus
junit/, repro/ and the records read) out, and the ``latest`` pointer swapped to it.

Kept apart from the renderers so the folder layout, the enrichment that needs more than
the records (baseline, trend, drift, repro scripts) and the atomic writes live in one
place. ``write_report`` is the one entry point (the CLI's ``report``, ``run`` and
``check`` commands call it). Runs in the outer environment: needs jinja2 and packaging,
never torch. It never imports :mod:`harness.triage`: first bad versions found by
``adapter-compat bisect`` are handed in by the caller (``first_bad``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.errors import UsageError
from harness.protocol import repro
from harness.report import costs, trend
from harness.report.coverage import attach as attach_coverage
from harness.report.diff import compare, load_baseline, previous_run
from harness.report.drift import load_drift
from harness.report.grid import ReportModel, load_model, promote_with_baseline
from harness.report.junit import render_junit
from harness.report.render_html import render_html
from harness.report.render_json import render_json
from harness.report.render_md import render_markdown

#: Files a report folder holds, in the order they are written.
REPORT_FILES = ("compat.json", "compat.md", "compat.html")

#: Folder name of the "newest run" pointer under the reports root.
LATEST = "latest"

#: Sub-folders a report writes besides REPORT_FILES (emptied before each write).
GENERATED_DIRS = ("junit", "repro")

#: ``baseline=AUTO``: compare with the newest other run under ``<reports_root>/runs``.
AUTO = "auto"


def write_report(
    result_paths: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None,
    update_latest: bool,
    reports_root: Path = Path("reports"),
    baseline: str | os.PathLike[str] | None = AUTO,
    first_bad: Mapping[str, str] | None = None,
) -> Path:
    """Read RESULTS (files or folders of ``*.jsonl``), write the report into ``out_dir``
    (default ``<reports_root>/runs/<UTC YYYYmmdd-HHMMSS>/``) and, when asked, point
    ``<reports_root>/latest`` at it. Returns the folder written.

    The folder holds compat.json / compat.md / compat.html, ``junit/<cell>.xml``,
    ``repro/<id>.py`` (one script per non-passing result) and ``results/`` (the records
    read). ``baseline``: a compat.json (or report folder) to compare with for the headline,
    ``AUTO`` for the previous run under ``reports_root/runs``, None for no comparison.
    ``first_bad``: check id -> first bad release already found by ``adapter-compat
    bisect`` (the caller reads it; None or {} when none is known).

    Raises :class:`~harness.errors.UsageError` for a missing RESULTS path, RESULTS without
    records, an unreadable explicit baseline, or an output folder that cannot be written.
    """
    result_paths = list(result_paths)
    model = load_model(result_paths)
    reports_root = Path(reports_root)
    out = Path(out_dir) if out_dir is not None else default_run_dir(reports_root)
    enrich(model, out, reports_root, baseline, first_bad)
    _write_files(model, out)
    _archive_inputs(result_paths, out)
    if update_latest:
        update_latest_pointer(out, reports_root)
    return out


def enrich(
    model: ReportModel,
    out: Path,
    reports_root: Path,
    baseline: str | os.PathLike[str] | None = AUTO,
    first_bad: Mapping[str, str] | None = None,
) -> ReportModel:
    """Add what needs more than the records: run name, headline against the baseline,
    trend history, API drift section, repro scripts and the bisected first bad releases
    (``first_bad``, kept for the checks that break in this report)."""
    runs = (Path(reports_root) / "runs").resolve()
    model.run = out.name if out.resolve().parent == runs else None
    base = None
    if baseline == AUTO:
        found = previous_run(reports_root, exclude=[out])
        if found is not None:
            try:
                base = load_baseline(found)
            except UsageError as exc:  # an unreadable old run must not block today's report
                model.warnings.append(f"previous run not used as baseline: {exc}")
    elif baseline is not None:
        base = load_baseline(baseline)
    if base is not None:
        passed = {key for key, state in base.states.items() if state.verdict == "pass"}
        promote_with_baseline(model, passed)
        model.changes = compare(model, base)
    carried = trend.from_history(base.history) if base is not None else []
    if base is not None and base.generated_at:
        carried.append(trend.Point(base.run or "baseline", base.generated_at, base.totals))
    current = trend.Point(model.run or out.name, model.generated_at, model.totals(), current=True)
    model.history = trend.merge(carried, trend.stored_points(reports_root, skip=[out]), [current])
    model.costs = costs.costs_of(
        model, base.costs if base is not None else None, base.run if base is not None else None
    )
    model.drift = load_drift()
    model.repros = build_repros(model)
    breaking = {row.check_id for row in model.checks if row.breaks}
    model.bisected = {k: v for k, v in (first_bad or {}).items() if k in breaking}
    return model


def build_repros(model: ReportModel) -> dict[tuple[str, str], repro.Repro]:
    """A script for every non-passing result (see :mod:`harness.protocol.repro`)."""
    from dataclasses import asdict

    found = {}
    for row in model.checks:
        for cell, result in row.results.items():
            if result.verdict != "pass":
                found[(row.check_id, cell)] = repro.build(row.check_id, cell, asdict(result))
    return found


def _archive_inputs(result_paths: list[str | os.PathLike[str]], out: Path) -> None:
    """Keep the raw records next to the report, so a later run can diff against them even
    after ``reports/results`` has been overwritten by the next matrix run."""
    from harness.report.grid import expand_inputs

    archive = out / "results"
    for path in expand_inputs(result_paths):
        if path.resolve().parent == archive.resolve():
            continue
        archive.mkdir(exist_ok=True)
        shutil.copy2(path, archive / path.name)


def default_run_dir(reports_root: Path, now: float | None = None) -> Path:
    """``<root>/runs/<UTC timestamp>``; a ``-2``, ``-3``... suffix when two reports land in
    the same second, so an earlier run is never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    base = Path(reports_root) / "runs" / stamp
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{stamp}-{n}")
    return candidate


def _write_files(model: ReportModel, out: Path) -> None:
    """Render everything first, then write: a render bug must not leave half a folder."""
    texts = {
        "compat.json": render_json(model),
        "compat.md": render_markdown(model),
        "compat.html": render_html(model),
    }
    extra = render_junit(model)
    extra.update({r.file: r.script for r in model.repros.values()})
    attach_coverage(model, texts, extra)  # the Reach section, after `run --coverage`
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create output folder {str(out)!r}: {exc.strerror or exc}; pass --out "
            "with a folder you can write to"
        ) from exc
    if not out.is_dir():
        raise UsageError(
            f"output path {str(out)!r} is not a folder; pass --out with a folder you can write to"
        )
    for sub in GENERATED_DIRS:  # a reused --out folder must not keep stale scripts
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    for name, text in extra.items():
        target = out / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from exc
    for name in REPORT_FILES:
        target = out / name
        tmp = out / f".{name}.tmp-{os.getpid()}"
        try:
            tmp.write_text(texts[name], encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UsageError(
                f"cannot write {str(target)!r}: {exc.strerror or exc}; pass --out with a "
                "folder you can write to"
            ) from exc


def update_latest_pointer(out: Path, reports_root: Path) -> Path:
    """Make ``<root>/latest`` a relative symlink to ``out``, swapped in atomically (a
    reader never sees it missing). Where symlinks are unavailable, copy the files instead."""
    reports_root = Path(reports_root)
    latest = reports_root / LATEST
    try:
        reports_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create reports folder {str(reports_root)!r}: {exc.strerror or exc}"
        ) from exc
    tmp = reports_root / f".{LATEST}.tmp-{os.getpid()}"
    _remove(tmp)
    try:
        target = os.path.relpath(out.resolve(), reports_root.resolve())
        os.symlink(target, tmp, target_is_directory=True)
    except (OSError, ValueError, NotImplementedError):
        _copy_latest(out, latest, tmp)
        return latest
    try:
        if latest.is_dir() and not latest.is_symlink():
            shutil.rmtree(latest)  # an earlier copy fallback left a real folder
        os.replace(tmp, latest)
    except OSError as exc:
        _remove(tmp)
        raise UsageError(f"cannot update {str(latest)!r}: {exc.strerror or exc}") from exc
    return latest


def _copy_latest(out: Path, latest: Path, tmp: Path) -> None:
    try:
        shutil.copytree(out, tmp)
        _remove(latest)
        os.replace(tmp, latest)
    except OSError as exc:
        _remove(tmp)
        raise UsageError(f"cannot update {str(latest)!r}: {exc.strerror or exc}") from exc


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
