"""Seconds per version for the static drift checks over unpacked sources.

    python -m harness.drift.scan_bench --src /tmp/drift-src [--versions 0.33.1 0.42.1] [--workers N]

For each ``<src>/<version>/`` (see ``adapter-compat drift fetch``) it times the call-site
scan (diffusers plus the companions unpacked next to it) and the contract snapshot, and
prints wall seconds of a scan, CPU seconds (this process and its
workers), the wall time that CPU amounts to on an otherwise idle machine (parent CPU +
worker CPU / workers: shared CI boxes make wall time noisy) and the scan counts.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from harness.drift.callsites import default_workers, scan
from harness.drift.snapshot import source_versions, take_snapshot
from harness.errors import UsageError


def _cpu_split() -> tuple[float, float]:
    """CPU seconds of this process and of its (finished) worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _cpu() -> float:
    return sum(_cpu_split())


def bench(src: str, versions: list[str] | None = None, workers: int | None = None) -> list[dict]:
    rows = []
    for version, path in source_versions(src):
        if versions and version not in versions:
            continue
        wall, (own, kids) = time.perf_counter(), _cpu_split()
        result = scan("diffusers", path=path, workers=workers)
        own2, kids2 = _cpu_split()
        scan_wall, scan_cpu = time.perf_counter() - wall, (own2 - own) + (kids2 - kids)
        # what the wall time would be on an otherwise idle machine: the parent's CPU is
        # the serial part, the workers' CPU is spread over the workers
        n = workers or default_workers()
        idle_estimate = (own2 - own) + (kids2 - kids) / max(1, n)
        wall, cpu = time.perf_counter(), _cpu()
        snap = take_snapshot("diffusers", path)
        snap_wall, snap_cpu = time.perf_counter() - wall, _cpu() - cpu
        rows.append(
            {
                "version": version,
                "files": result.files,
                "calls": result.calls,
                "resolved": result.resolved,
                "skipped": result.skipped_total,
                "dynamic": result.dynamic,
                "external": result.external,
                "mismatches": len(result.mismatches),
                "guarded": len(result.guarded),
                "scan_wall_s": round(scan_wall, 2),
                "scan_cpu_s": round(scan_cpu, 2),
                "scan_idle_estimate_s": round(idle_estimate, 2),
                "snapshot_wall_s": round(snap_wall, 2),
                "snapshot_cpu_s": round(snap_cpu, 2),
                "api_entries": len(snap["api"]),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.drift.scan_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--src", default="/tmp/drift-src", help="directory of <version>/diffusers trees"
    )
    parser.add_argument("--versions", nargs="*", help="only these versions")
    parser.add_argument("--workers", type=int, help="phase-1 worker processes (default: CPU count)")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    ns = parser.parse_args(argv)
    try:
        rows = bench(ns.src, ns.versions, ns.workers)
    except UsageError as exc:
        print(f"adapter-compat: error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(rows, indent=1))
        return 0
    head = (
        f"{'version':>8} {'files':>5} {'calls':>6} {'resolved':>8} {'skipped':>7} {'dynamic':>7} "
        f"{'mism':>4} {'scan s':>7} {'cpu s':>6} {'idle s':>6} {'snap s':>6}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['version']:>8} {r['files']:>5} {r['calls']:>6} {r['resolved']:>8} {r['skipped']:>7} {r['dynamic']:>7} "
            f"{r['mismatches']:>4} {r['scan_wall_s']:>7.2f} {r['scan_cpu_s']:>6.2f} "
            f"{r['scan_idle_estimate_s']:>6.2f} {r['snapshot_wall_s']:>6.2f}"
        )
    if rows:
        worst = max(rows, key=lambda r: r["scan_wall_s"])
        print(f"slowest scan: {worst['version']} {worst['scan_wall_s']:.2f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
