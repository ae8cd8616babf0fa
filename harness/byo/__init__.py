"""Bring your own file: recognise a user's adapter file and pick the suites that check it.

``adapter-compat check FILE_OR_DIR`` reads the file's safetensors header (stdlib only: the
outer tool has no torch), asks each registered *kind* whether the keys are its own, and
runs that kind's suites in the chosen cells with the file's path in
``ADAPTER_COMPAT_USER_FILE``. The suites read the tensors themselves, inside the cell.

Adding a kind (e.g. IP-Adapter): a module ``harness/byo/<name>.py`` with a stdlib-only
``detect_file(user_file) -> bool`` and ``describe_file(user_file) -> str`` (optionally
``understand_file(user_file) -> str | None``: why its checks could not judge the file),
plus one row in :data:`KINDS` naming its suites. The file's bytes are checked here too
(:func:`data_problem`): a damaged file is reported before any cell runs, never recorded as
a harness error.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError

#: Environment variable that carries the user's file into the cells' suites.
USER_FILE_ENV = "ADAPTER_COMPAT_USER_FILE"


def user_file(compat: Any) -> Path:
    """The file ``adapter-compat check`` handed to the cell; NOT_RUN (via ``compat``) when
    none was given or it is not a file, so the BYO checks stay grey in ordinary runs."""
    value = os.environ.get(USER_FILE_ENV)
    if not value:
        compat.not_run(f"no user file ({USER_FILE_ENV} is unset; use `adapter-compat check FILE`)")
    path = Path(value)
    if not path.is_file():
        compat.not_run(f"{USER_FILE_ENV}={value} is not a file")
    return path


#: Refuse headers larger than this (a corrupt length field would make us read gigabytes).
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Kind:
    """A kind of adapter file: where its detector lives and which suites check it."""

    name: str
    module: str  # harness.byo.<module>, imported only when asked
    suites: tuple[str, ...]  # pytest paths, relative to the repository root

    def _fn(self, name: str) -> Any:
        return getattr(importlib.import_module(f"harness.byo.{self.module}"), name)

    def detect(self, user_file: UserFile) -> bool:
        return bool(self._fn("detect_file")(user_file))

    def describe(self, user_file: UserFile) -> str:
        return str(self._fn("describe_file")(user_file))

    def understand(self, user_file: UserFile) -> str | None:
        """Why the checks could not judge this file (None: they can): asked before any
        cell runs, so a file the checks would place nowhere never reaches a grid."""
        module = importlib.import_module(f"harness.byo.{self.module}")
        fn = getattr(module, "understand_file", None)
        return None if fn is None else fn(user_file)


#: Registered kinds, tried in order; the first whose detector says yes wins.
KINDS: tuple[Kind, ...] = (
    # IP-Adapter first: FaceID files also hold ``*_lora.*`` keys.
    Kind("ip-adapter", "ip_adapter", ("suites/ip_adapter/test_byo.py",)),
    Kind("lora", "lora", ("suites/lora/test_byo.py",)),
)


@dataclass
class UserFile:
    """A user's safetensors file as the outer tool sees it: keys, shapes, dtypes, metadata."""

    path: Path
    shapes: dict[str, list[int]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    #: key -> (begin, end) byte offsets into the data section, as the header declares them.
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    data_start: int = 0  # 8 + header length: where the data section begins
    file_size: int = 0

    @property
    def keys(self) -> list[str]:
        return list(self.shapes)


def find_weight_file(path: str | os.PathLike[str]) -> Path:
    """The one ``.safetensors`` file at ``path`` (itself, or inside a hub-like folder)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file or directory: {p}")
    if p.is_file():
        if p.suffix != ".safetensors":
            raise UsageError(
                f"{p}: only .safetensors files are checked (.bin / .pt files are pickles, which "
                "the harness never loads); convert it with safetensors first"
            )
        return p
    found = sorted(q for q in p.rglob("*.safetensors") if q.is_file())
    if not found:
        raise UsageError(f"{p}: no .safetensors file in this folder")
    if len(found) > 1:
        preferred = [
            q
            for q in found
            if q.name in ("pytorch_lora_weights.safetensors", "ip-adapter.safetensors")
        ]
        if len(preferred) == 1:
            return preferred[0]
        names = ", ".join(str(q.relative_to(p)) for q in found[:6])
        raise UsageError(f"{p}: several .safetensors files ({names}); pass one of them")
    return found[0]


def read_header(path: Path) -> UserFile:
    """Parse a safetensors header without torch: u64 little-endian length, then JSON."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                raise ValueError("file is shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", raw)
            if length == 0 or length > MAX_HEADER_BYTES:
                raise ValueError(f"implausible header length {length}")
            blob = handle.read(length)
            if len(blob) < length:
                raise ValueError("file ends inside the header")
            size = os.fstat(handle.fileno()).st_size
        header = json.loads(blob.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError, struct.error) as exc:
        raise UsageError(f"{path}: unreadable safetensors header ({exc})") from None
    user = UserFile(path, data_start=8 + length, file_size=size)
    for key, info in header.items():
        if key == "__metadata__":
            user.metadata = {str(k): str(v) for k, v in (info or {}).items()}
            continue
        if not isinstance(info, dict) or "shape" not in info:
            raise UsageError(f"{path}: unreadable safetensors header (entry {key!r} has no shape)")
        user.shapes[key] = [int(x) for x in info["shape"]]
        user.dtypes[key] = str(info.get("dtype", "?"))
        offsets = info.get("data_offsets")
        if isinstance(offsets, list) and len(offsets) == 2:
            user.spans[key] = (int(offsets[0]), int(offsets[1]))
    if not user.shapes:
        raise UsageError(f"{path}: the safetensors file holds no tensors")
    return user


#: Bytes per element of each safetensors dtype (data check).
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip


def truncation(user: UserFile) -> str | None:
    """A file whose header is fine but whose data stops early (an interrupted download):
    cheap (sizes only), so even ``--detect-only`` says so."""
    if not user.spans:
        return None
    needed = max(end for _, end in user.spans.values())
    held = user.file_size - user.data_start
    if held >= needed:
        return None
    cut = sorted(k for k, (_, end) in user.spans.items() if end > held)
    return (
        f"{user.path}: the tensor data is truncated: the header describes {needed} bytes of "
        f"data, the file holds {max(held, 0)} ({len(cut)} of {len(user.spans)} tensors end "
        f"past the end of the file, e.g. {cut[0]}); download or save it again"
    )


def data_problem(user: UserFile) -> str | None:
    """Truncated data, or offsets that disagree with a tensor's shape and dtype: checked
    before any cell runs, so a damaged file is the user's to fix, never our harness error."""
    cut = truncation(user)
    if cut:
        return cut
    for key, shape in user.shapes.items():
        if key not in user.spans:
            return f"{user.path}: header entry {key!r} has no data_offsets"
        begin, end = user.spans[key]
        width = DTYPE_BYTES.get(user.dtypes.get(key, ""))
        count = 1
        for dim in shape:
            count *= dim
        if begin > end or (width is not None and end - begin != count * width):
            return (
                f"{user.path}: the header lies about {key!r}: {user.dtypes.get(key)} "
                f"{shape} needs {count * (width or 0)} bytes, its offsets give {end - begin}"
            )
    return None


def content_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: part of ``check``'s reuse key (a file edited in place
    under the same name is another file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def detect_kind(user: UserFile) -> Kind:
    for kind in KINDS:
        if kind.detect(user):
            return kind
    from harness.byo.unsupported import recognise

    seen = recognise(user.keys)
    if seen:
        raise UsageError(
            f"{user.path}: {seen}; not supported: check reads LoRA "
            f"({', '.join(lora_format_names())}) and IP-Adapter files"
        )
    sample = ", ".join(user.keys[:3])
    raise UsageError(
        f"{user.path}: not a LoRA or IP-Adapter file this harness knows "
        f"({len(user.keys)} tensors, e.g. {sample}); known kinds: {', '.join(k.name for k in KINDS)}"
    )


def lora_format_names() -> list[str]:
    from harness.inputs.checkpoints.lora.formats import FORMATS

    return list(FORMATS)
