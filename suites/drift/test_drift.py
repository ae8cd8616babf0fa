"""Signature drift, static: one check per finding family per cell.

Nothing here imports torch or diffusers: the installed diffusers (and its companions) are
read as source. ``ADAPTER_COMPAT_DRIFT_PATH=DIR`` checks the package under DIR instead
(a local diffusers checkout: ``DIR`` holds ``diffusers/`` or ``src/diffusers/``).

* ``callsites_internal[diffusers]``: every call inside diffusers binds to its callee's
  signature in this same version. A call that would raise TypeError is a CRASH waiting to
  happen (``load_model_dict_into_meta(..., device=...)`` after ``device`` became
  ``device_map``).
* ``callsites_adapter_loaders[diffusers]``: the same, restricted to the adapter-loading
  path (``loaders/``, model loading utils): the grid row that answers "is LoRA /
  IP-Adapter loading statically sound in this cell?".
* ``callsites_cross_package[<companion>]``: calls from diffusers into peft,
  transformers, huggingface_hub, accelerate and safetensors *as installed in this cell*.
* ``contract_matches_committed``: the live adapter API equals
  ``fixtures/api/<version>.json`` (a patched or locally modified diffusers shows here).
* ``contract_no_unacknowledged_breaks``: against the previous committed version, every
  breaking API change is acknowledged by an unexpired allowlist entry.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from harness.drift.apidiff import apply_allowlist, diff_snapshots, load_allowlist
from harness.drift.callsites import ScanResult
from harness.drift.resolver import COMPANIONS, find_in_dir, find_installed
from harness.drift.scan_cache import cached_scan
from harness.drift.snapshot import API_DIR, committed_versions, take_snapshot
from harness.protocol.outcomes import Outcome
from harness.protocol.versions import version_tuple

PATH_ENV = "ADAPTER_COMPAT_DRIFT_PATH"
API_DIR_ENV = "ADAPTER_COMPAT_DRIFT_API_DIR"
MAX_DETAIL = 50
#: Files on the LoRA / IP-Adapter loading path (callers), for the adapter-loaders check.
ADAPTER_PATHS = (
    "diffusers/loaders/lora",
    "diffusers/loaders/ip_adapter.py",
    "diffusers/loaders/peft.py",
    "diffusers/loaders/unet.py",
    "diffusers/loaders/unet_loader_utils.py",
    "diffusers/loaders/transformer_",
    "diffusers/loaders/utils.py",
    "diffusers/models/model_loading_utils.py",
    "diffusers/models/modeling_utils.py",
    "diffusers/models/attention_processor.py",
    "diffusers/utils/peft_utils.py",
)


def _path() -> str | None:
    return os.environ.get(PATH_ENV) or None


def _api_dir() -> Path:
    """Committed contracts (``fixtures/api``; ``$ADAPTER_COMPAT_DRIFT_API_DIR`` overrides)."""
    return Path(os.environ.get(API_DIR_ENV) or API_DIR)


@functools.lru_cache(maxsize=1)
def _scan(path: str | None) -> tuple[ScanResult, bool]:
    """The scan, from the content-keyed cache when these exact sources were scanned before."""
    return cached_scan("diffusers", path)


@functools.lru_cache(maxsize=1)
def _live_contract(path: str | None) -> dict:
    return take_snapshot("diffusers", path)


def _diffusers_present(compat) -> None:  # type: ignore[no-untyped-def]
    path = _path()
    found = find_in_dir(Path(path), "diffusers") if path else find_installed("diffusers")
    if found is None:
        compat.not_run(f"diffusers is not installed here (or not under ${PATH_ENV})")


def _report_mismatches(
    compat, scanned: tuple[ScanResult, bool], mismatches: list, what: str
) -> None:  # type: ignore[no-untyped-def]
    result, from_cache = scanned
    compat.param(package="diffusers", version=result.version)
    compat.detail(
        mismatches=[m.to_dict() for m in mismatches[:MAX_DETAIL]],
        mismatch_count=len(mismatches),
        resolved=result.resolved,
        skipped=result.skipped_total,
        guarded=[m.to_dict() for m in result.guarded[:MAX_DETAIL]],
        scan_seconds=result.seconds,
        scan_from_cache=from_cache,
    )
    if mismatches:
        first = mismatches[0]
        compat.finding(
            Outcome.CRASH,
            f"{len(mismatches)} {what} call site(s) would raise TypeError; first: "
            f"{first.file}:{first.line}: {first.call[:160]} -> {first.signature[:200]}: {'; '.join(first.problems)}",
        )


@pytest.mark.parametrize("package", ["diffusers"])
def test_callsites_internal(compat, package: str) -> None:
    compat.expect(Outcome.OK)
    _diffusers_present(compat)
    scanned = _scan(_path())
    _report_mismatches(compat, scanned, scanned[0].mismatches_for(package), f"internal {package}")


@pytest.mark.parametrize("package", ["diffusers"])
def test_callsites_adapter_loaders(compat, package: str) -> None:
    compat.expect(Outcome.OK)
    _diffusers_present(compat)
    scanned = _scan(_path())
    found = [m for m in scanned[0].mismatches if m.file.startswith(ADAPTER_PATHS)]
    _report_mismatches(compat, scanned, found, "adapter-loading")


@pytest.mark.parametrize("companion", COMPANIONS)
def test_callsites_cross_package(compat, companion: str) -> None:
    compat.expect(Outcome.OK)
    _diffusers_present(compat)
    scanned = _scan(_path())
    result = scanned[0]
    if companion not in result.companions:
        compat.not_run(f"{companion} is not installed in this cell")
    compat.param(companion=companion, companion_version=result.companions[companion])
    compat.detail(checked=result.checked.get(companion, 0))
    _report_mismatches(
        compat, scanned, result.mismatches_for(companion), f"diffusers -> {companion}"
    )


def test_contract_matches_committed(compat) -> None:
    compat.expect(Outcome.OK)
    _diffusers_present(compat)
    live = _live_contract(_path())
    version = live["version"]
    compat.param(package="diffusers", version=version)
    committed_path = _api_dir() / f"{version}.json"
    if not committed_path.is_file():
        compat.not_run(
            f"no committed contract for diffusers {version}; run `adapter-compat drift snapshot`"
        )
    committed = json.loads(committed_path.read_text(encoding="utf-8"))
    if committed.get("api") == live["api"] and committed.get("classes") == live["classes"]:
        compat.detail(api_entries=len(live["api"]))
        return
    changes = diff_snapshots(committed, live)
    breaking = [c for c in changes if c.breaking]
    compat.detail(changes=[c.to_dict() for c in changes[:MAX_DETAIL]], change_count=len(changes))
    message = (
        f"installed diffusers {version} differs from {committed_path.name}: {len(changes)} change(s), "
        f"{len(breaking)} breaking"
        + (f"; first: {breaking[0].headline()}" if breaking else "")
        + " (if the committed file is stale, regenerate it with `adapter-compat drift snapshot`)"
    )
    compat.finding(Outcome.CRASH if breaking else Outcome.WRONG_RESULT, message)


def test_contract_no_unacknowledged_breaks(compat) -> None:
    compat.expect(Outcome.OK)
    _diffusers_present(compat)
    live = _live_contract(_path())
    version = live["version"]
    api_dir = _api_dir()
    earlier = [v for v in committed_versions(api_dir) if version_tuple(v) < version_tuple(version)]
    if not earlier:
        compat.not_run(f"no committed contract older than diffusers {version} to compare with")
    previous = earlier[-1]
    compat.param(package="diffusers", version=version, previous=previous)
    old = json.loads((api_dir / f"{previous}.json").read_text(encoding="utf-8"))
    changes = apply_allowlist(diff_snapshots(old, live), load_allowlist(api_dir / "allowlist.json"))
    unacknowledged = [c for c in changes if c.unacknowledged_break]
    compat.detail(
        unacknowledged=[c.to_dict() for c in unacknowledged[:MAX_DETAIL]],
        private_changes=[c.headline() for c in changes if not c.public][:MAX_DETAIL],
        allowlisted=[
            c.headline() for c in changes if c.allowlist and c.allowlist["status"] == "allowlisted"
        ],
        expired_allowlist=[
            c.headline() for c in changes if c.allowlist and c.allowlist["status"] != "allowlisted"
        ],
        change_count=len(changes),
    )
    if unacknowledged:
        compat.finding(
            Outcome.CRASH,
            f"{len(unacknowledged)} unacknowledged breaking API change(s) {previous} -> {version}; "
            f"first: {unacknowledged[0].headline()}",
        )
