"""The call-site scan depends only on the installed source of diffusers and its companions
(and on our scanner), so it is computed once per content and reused by every cell, run and
rerun that has the same bytes.

Key: sha256 over our drift code (its bytes) and, per scanned package, its name, version and
the path, size and modification time of every ``.py`` file under it. Not a wheel's RECORD:
source trees and editable installs have none, and a one-line edit must be a new key; an
edit changes the file's mtime, and reading only the metadata of the ~7,000 companion files
costs a few hundredths of a second where hashing their bytes cost seconds per cell. Stored as
JSON (never a pickle: the harness does not unpickle files).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.drift.callsites import ScanResult, scan
from harness.drift.resolver import World
from harness.protocol.cache import cache_dir

#: ``ADAPTER_COMPAT_DRIFT_CACHE=0`` scans afresh every time (benchmarks of the scanner).
ENABLED_ENV = "ADAPTER_COMPAT_DRIFT_CACHE"
DRIFT_CODE = Path(__file__).resolve().parent


def _tree_digest(digest: hashlib._Hash, root: Path, by_bytes: bool = False) -> None:
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    for path in files:
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
        if by_bytes:
            digest.update(path.read_bytes())
        else:
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}\n".encode())


def content_key(world: World, package: str) -> str:
    digest = hashlib.sha256(f"callsites:{package}\n".encode())
    _tree_digest(digest, DRIFT_CODE, by_bytes=True)
    for name in sorted(world.packages):
        digest.update(f"{name}=={world.versions.get(name, '?')}\n".encode())
        _tree_digest(digest, Path(world.packages[name]))
    return digest.hexdigest()[:32]


def cached_scan(package: str = "diffusers", path: str | None = None) -> tuple[ScanResult, bool]:
    """(the scan of ``package``, whether it came from the cache)."""
    world = World.for_package(package, path)
    if os.environ.get(ENABLED_ENV) == "0":
        return scan(package, world=world), False
    entry = cache_dir("drift") / f"callsites-{content_key(world, package)}.json"
    if entry.is_file():
        try:
            return ScanResult.from_dict(json.loads(entry.read_text(encoding="utf-8"))), True
        except (ValueError, TypeError, KeyError):
            entry.unlink(missing_ok=True)  # a torn write: compute it again
    result = scan(package, world=world)
    tmp = entry.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result.to_dict()), encoding="utf-8")
    os.replace(tmp, entry)  # atomic: two cells never read half a file
    return result, False
