"""``adapter-compat drift {scan,snapshot,diff,timeline,fetch}``: static signature-drift checks.

Thin on purpose: arguments and output here, all work in :mod:`harness.drift`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.errors import UsageError

DESCRIPTION = """\
Signature drift, found statically before anything runs (the kind of break this catches:
a loader kept passing device= after load_model_dict_into_meta renamed it device_map).

  scan      every call site in a package vs its callee's signature in the same installed
            version (also calls into peft, transformers, huggingface_hub, accelerate,
            safetensors). Exit 1 when a call would raise TypeError.
  snapshot  the adapter-loading API contract (targets: fixtures/api/targets.json) of the
            installed diffusers, of --path, or of every version under --src, written to
            fixtures/api/<version>.json.
  diff      breaking / non-breaking changes between two committed snapshots (default:
            every adjacent pair = the timeline), with fixtures/api/allowlist.json applied.
  timeline  the same as JSON (the report's "API drift" section).
  fetch     download and unpack the wheels of every matrix version (+ locked companions)
            into --src for snapshot --src and scan --path."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "drift",
        help="static signature drift: call sites vs callees, API contract snapshots",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="drift_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: _help(parser))

    scan = sub.add_parser("scan", help="check every call site against its callee's signature")
    scan.add_argument("--package", default="diffusers", help="package to scan (default: diffusers)")
    scan.add_argument(
        "--path",
        help="site-packages, unpacked wheel or source checkout holding the package (default: installed)",
    )
    scan.add_argument("--json", action="store_true", help="print the full result as JSON")
    scan.add_argument("--no-companions", action="store_true", help="only calls within the package")
    scan.add_argument(
        "--workers", type=int, default=None, help="parse in N processes (default: CPU count)"
    )
    scan.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files matching GLOB (over <package>/... paths; repeatable), "
        "e.g. 'transformers/models/*/modular_*.py'",
    )
    scan.set_defaults(func=_scan)

    snap = sub.add_parser("snapshot", help="write fixtures/api/<version>.json")
    snap.add_argument("--out", default=None, help="output folder (default: fixtures/api)")
    where = snap.add_mutually_exclusive_group()
    where.add_argument(
        "--path", help="directory holding diffusers/ (default: the installed diffusers)"
    )
    where.add_argument(
        "--src", help="directory of <version>/diffusers/ trees: snapshot every version"
    )
    snap.add_argument(
        "--fetch", action="store_true", help="with --src: download the matrix versions first"
    )
    snap.add_argument(
        "--targets", default=None, help="targets table (default: fixtures/api/targets.json)"
    )
    snap.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a committed snapshot differs"
    )
    snap.set_defaults(func=_snapshot)

    diff = sub.add_parser("diff", help="API changes between committed snapshots")
    diff.add_argument(
        "--from", dest="from_version", help="older version (default: every adjacent pair)"
    )
    diff.add_argument("--to", dest="to_version", help="newer version")
    diff.add_argument("--dir", default=None, help="snapshot folder (default: fixtures/api)")
    diff.add_argument("--all", action="store_true", help="also list non-breaking changes")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.add_argument(
        "--strict", action="store_true", help="exit 1 on unacknowledged breaking changes"
    )
    diff.set_defaults(func=_diff)

    timeline = sub.add_parser("timeline", help="the API drift timeline as JSON (for the report)")
    timeline.add_argument("--dir", default=None, help="snapshot folder (default: fixtures/api)")
    timeline.set_defaults(func=_timeline)

    fetch = sub.add_parser("fetch", help="download + unpack every matrix version's sources")
    fetch.add_argument(
        "--src", default="/tmp/drift-src", help="destination (default: /tmp/drift-src)"
    )
    fetch.add_argument(
        "--versions", nargs="*", help="diffusers versions (default: fixtures/matrix/cells.json)"
    )
    fetch.add_argument("--no-companions", action="store_true", help="diffusers only")
    fetch.set_defaults(func=_fetch)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _scan(args: argparse.Namespace) -> int:
    from harness.drift.callsites import scan
    from harness.drift.resolver import COMPANIONS

    if args.path is not None and not Path(args.path).exists():
        raise UsageError(
            f"--path {args.path} does not exist; give a site-packages or unpacked wheel directory"
        )
    companions = () if args.no_companions else COMPANIONS
    result = scan(
        args.package,
        path=args.path,
        companions=companions,
        workers=args.workers,
        exclude=args.exclude,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        for mismatch in result.mismatches:
            print(mismatch.headline())
        if result.guarded:
            print(f"guarded (not counted): {len(result.guarded)}")
            for mismatch in result.guarded:
                print("  " + mismatch.headline().replace("\n", "\n  "))
        print(result.summary_line())
        if result.skipped:
            top = ", ".join(f"{reason}: {n}" for reason, n in list(result.skipped.items())[:6])
            print(f"skipped by reason: {top}")
    return 1 if result.mismatches else 0


def _snapshot(args: argparse.Namespace) -> int:
    from harness.drift import snapshot as snap

    targets = snap.load_targets(args.targets)
    out = Path(args.out) if args.out else snap.API_DIR
    if args.fetch and not args.src:
        raise UsageError("--fetch needs --src DIR (where to unpack the wheels)")
    if args.src:
        if args.fetch:
            from harness.drift.fetch import fetch_sources

            fetch_sources(args.src, companions=False)
        trees = [path for _, path in snap.source_versions(args.src)]
    else:
        trees = [args.path]
    differs = 0
    for tree in trees:
        taken = snap.take_snapshot("diffusers", tree, targets)
        target = out / f"{taken['version']}.json"
        if args.check:
            same = target.is_file() and json.loads(target.read_text(encoding="utf-8")) == taken
            differs += not same
            print(f"{taken['version']}: {'matches' if same else 'DIFFERS from'} {target}")
        else:
            path = snap.write_snapshot(taken, out)
            print(f"{taken['version']}: {len(taken['api'])} API entries -> {path}")
    return 1 if differs else 0


def _diff(args: argparse.Namespace) -> int:
    from harness.drift import snapshot as snap
    from harness.drift.timeline import build_timeline, diff_versions, pair_entry, render_text

    api_dir = Path(args.dir) if args.dir else snap.API_DIR
    if bool(args.from_version) != bool(args.to_version):
        versions = snap.committed_versions(api_dir)
        if args.from_version and args.from_version in versions:
            idx = versions.index(args.from_version)
            args.to_version = versions[idx + 1] if idx + 1 < len(versions) else None
        elif args.to_version and args.to_version in versions:
            idx = versions.index(args.to_version)
            args.from_version = versions[idx - 1] if idx > 0 else None
        if not (args.from_version and args.to_version):
            raise UsageError(
                f"cannot pick the other end of the pair; committed versions: {', '.join(versions) or 'none'}"
            )
    if args.from_version:
        changes = diff_versions(args.from_version, args.to_version, api_dir)
        timeline = [pair_entry(args.from_version, args.to_version, changes)]
    else:
        timeline = build_timeline(api_dir)
    if args.json:
        print(json.dumps(timeline, indent=1))
    else:
        print(render_text(timeline, only_breaking=not args.all))
    unacknowledged = sum(step["unacknowledged"] for step in timeline)
    return 1 if (args.strict and unacknowledged) else 0


def _timeline(args: argparse.Namespace) -> int:
    from harness.drift import snapshot as snap
    from harness.drift.timeline import build_timeline

    api_dir = Path(args.dir) if args.dir else snap.API_DIR
    print(json.dumps(build_timeline(api_dir), indent=1))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from harness.drift.fetch import fetch_sources

    fetch_sources(args.src, args.versions, companions=not args.no_companions)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m harness.commands.drift ...``) until ``drift`` is in
    ``harness.commands.COMMANDS``."""
    parser = argparse.ArgumentParser(prog="adapter-compat")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["drift", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"adapter-compat: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
