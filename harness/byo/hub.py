"""``check org/repo[:file]``: find a hub model's file in the local Hugging Face cache.

Why our own reader: the outer tool has no torch and may have no ``huggingface_hub``, and
``check`` must work offline (``HF_HUB_OFFLINE=1``). The cache layout is documented and
stable: ``<cache>/models--<org>--<repo>/refs/<revision>`` holds a commit hash and
``snapshots/<hash>/<file>`` the files (links into ``blobs/``). Nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError

#: ``org/repo``, optional ``@revision`` (branch, tag or commit), optional ``:path/in/repo``.
HUB_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(@(?P<revision>[\w.-]+))?"
    r"(:(?P<file>[^:]+))?$"
)


@dataclass(frozen=True)
class HubId:
    repo: str
    revision: str = "main"
    file: str | None = None

    def __str__(self) -> str:
        text = self.repo if self.revision == "main" else f"{self.repo}@{self.revision}"
        return f"{text}:{self.file}" if self.file else text


def parse_hub_id(text: str) -> HubId | None:
    match = HUB_ID.match(text)
    if not match:
        return None
    return HubId(match["repo"], match["revision"] or "main", match["file"])


def cache_root() -> Path:
    """Where huggingface_hub keeps models, by its documented precedence."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def snapshot_dir(hub_id: HubId, root: Path | None = None) -> Path:
    """The cached snapshot of ``hub_id``; a one-line UsageError when it is not cached."""
    root = root or cache_root()
    folder = root / ("models--" + hub_id.repo.replace("/", "--"))
    hint = (
        f"download it first (`huggingface-cli download {hub_id.repo}`); "
        "check reads the cache only and works offline"
    )
    if not folder.is_dir():
        raise UsageError(f"{hub_id.repo} is not in the local Hugging Face cache ({root}); {hint}")
    ref = folder / "refs" / hub_id.revision
    commit = ref.read_text().strip() if ref.is_file() else hub_id.revision
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        raise UsageError(
            f"{hub_id.repo}: revision {hub_id.revision!r} is not in the local Hugging Face "
            f"cache ({folder}); {hint}"
        )
    return snapshot


def resolve(hub_id: HubId, root: Path | None = None) -> Path:
    """The cached file (or snapshot folder, when no file was named) for ``hub_id``.

    The snapshot path is returned as is, not resolved: its entries link to ``blobs/<hash>``
    files without the ``.safetensors`` name the loaders need."""
    snapshot = snapshot_dir(hub_id, root)
    if hub_id.file is None:
        return snapshot
    path = snapshot / hub_id.file
    if not path.exists():
        present = sorted(p.name for p in snapshot.rglob("*.safetensors"))[:6]
        raise UsageError(
            f"{hub_id}: {hub_id.file} is not in the cached snapshot {snapshot.name[:12]} "
            f"(cached .safetensors: {', '.join(present) or 'none'})"
        )
    return path
