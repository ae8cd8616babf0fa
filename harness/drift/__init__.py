"""Signature drift: call sites vs callees, API contract snapshots, companion skew.

Stdlib-only (ast, importlib.metadata, json) so it runs inside every matrix cell.

* :func:`harness.drift.callsites.scan` - every call in a package (diffusers by default)
  checked against the callee's signature in the same installed version, including calls
  into peft / transformers / huggingface_hub / accelerate / safetensors.
* :func:`harness.drift.snapshot.take_snapshot` - the adapter-loading API contract as data
  (``fixtures/api/<version>.json``; targets in ``fixtures/api/targets.json``).
* :func:`harness.drift.apidiff.diff_snapshots` - breaking / non-breaking changes between
  two snapshots, with the dated allowlist (``fixtures/api/allowlist.json``).
* :func:`harness.drift.timeline.build_timeline` - the per-version-pair change list the
  report's "API drift" section renders.
"""

from harness.drift.apidiff import Change, apply_allowlist, diff_snapshots, load_allowlist
from harness.drift.callsites import Mismatch, ScanResult, scan
from harness.drift.snapshot import take_snapshot
from harness.drift.timeline import build_timeline

__all__ = [
    "Change",
    "Mismatch",
    "ScanResult",
    "apply_allowlist",
    "build_timeline",
    "diff_snapshots",
    "load_allowlist",
    "scan",
    "take_snapshot",
]
