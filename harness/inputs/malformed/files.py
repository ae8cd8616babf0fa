"""Damaged ``.safetensors`` files, as data: the harness's writer and byte-level mutations.

:func:`encode` writes a valid file without the library under test; the mutations below
break it in the ways real files break (truncation, lying headers, huge declared sizes).
:data:`FILE_CASES` is the table the robustness suite runs through every loader path, and
:func:`mutate_header` the header rewrite its hypothesis family draws from. Whether a
result is valid is never decided here: :mod:`harness.oracles.safetensors` reads every
byte string, and the self-tests cross-check each case's ``valid`` against it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from harness.oracles.safetensors import DTYPE_SIZES, LENGTH_BYTES, METADATA_KEY, ST_DTYPES


# -- writing and splitting well-formed files -------------------------------------------------------
@dataclass
class Parsed:
    """A file split into its parts, for mutation. ``header`` keeps the file's key order."""

    declared: int
    header: dict[str, Any]
    data: bytes

    def entries(self) -> list[str]:
        """Tensor names sorted by where their data starts."""
        names = [k for k in self.header if k != METADATA_KEY]
        return sorted(names, key=lambda k: tuple(self.header[k]["data_offsets"]))

    def copy(self) -> Parsed:
        return Parsed(self.declared, json.loads(json.dumps(self.header)), self.data)


def encode(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """A valid safetensors file written by the harness (not by the library under test)."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header[METADATA_KEY] = dict(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name, tensor in tensors.items():
        raw = tensor_bytes(tensor)
        header[name] = {
            "dtype": ST_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    return assemble(header, b"".join(chunks))


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Little-endian bytes of a tensor (the machines here are little-endian)."""
    t = tensor.detach().contiguous().cpu()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def assemble(header: Mapping[str, Any] | bytes, data: bytes, declared: int | None = None) -> bytes:
    """Header (dict or raw bytes) + data, with an honest or a lying length field."""
    raw = (
        header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    )
    length = len(raw) if declared is None else declared
    return struct.pack("<Q", length) + raw + data


def parse(blob: bytes) -> Parsed:
    """Split a *well-formed* file (one :func:`encode` wrote) for mutation."""
    declared = struct.unpack("<Q", blob[:LENGTH_BYTES])[0]
    header = json.loads(blob[LENGTH_BYTES : LENGTH_BYTES + declared])
    return Parsed(declared, header, blob[LENGTH_BYTES + declared :])


def header_span(blob: bytes) -> tuple[int, int]:
    """(start, end) byte positions of the JSON header in a well-formed file."""
    declared = struct.unpack("<Q", blob[:LENGTH_BYTES])[0]
    return LENGTH_BYTES, LENGTH_BYTES + declared


# -- byte-level mutations -------------------------------------------------------------------------
def truncate(blob: bytes, at: int) -> bytes:
    return blob[: max(0, min(at, len(blob)))]


def flip_bit(blob: bytes, bit: int) -> bytes:
    """``blob`` with bit ``bit`` (counted from the file start, LSB first) inverted."""
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _edit(blob: bytes, change: Callable[[Parsed], None]) -> bytes:
    parsed = parse(blob).copy()
    change(parsed)
    return assemble(parsed.header, parsed.data)


def _first(parsed: Parsed) -> dict[str, Any]:
    return parsed.header[parsed.entries()[0]]


def _last(parsed: Parsed) -> dict[str, Any]:
    return parsed.header[parsed.entries()[-1]]


def _with_first(change: Callable[[dict[str, Any], Parsed], None]) -> Callable[[bytes], bytes]:
    return lambda blob: _edit(blob, lambda p: change(_first(p), p))


def _set(field_name: str, value: Any) -> Callable[[bytes], bytes]:
    return _with_first(lambda info, _p: info.__setitem__(field_name, value))


def _past_end(blob: bytes) -> bytes:
    def change(p: Parsed) -> None:
        info = _last(p)
        begin, end = info["data_offsets"]
        info["data_offsets"] = [begin + 4096, end + 4096]

    return _edit(blob, change)


def _overlap(blob: bytes) -> bytes:
    """The second tensor's range starts inside the first one's (same size, shifted)."""

    def change(p: Parsed) -> None:
        a, b = (p.header[n] for n in p.entries()[:2])
        size = b["data_offsets"][1] - b["data_offsets"][0]
        start = a["data_offsets"][0] + 4
        b["data_offsets"] = [start, start + size]

    return _edit(blob, change)


def _hole(blob: bytes) -> bytes:
    """Four unused bytes after the first tensor; later ranges shift to stay in the file."""

    def change(p: Parsed) -> None:
        names = p.entries()
        cut = p.header[names[0]]["data_offsets"][1]
        for name in names[1:]:
            begin, end = p.header[name]["data_offsets"]
            p.header[name]["data_offsets"] = [begin + 4, end + 4]
        p.data = p.data[:cut] + b"\0" * 4 + p.data[cut:]

    return _edit(blob, change)


def _duplicate_name(blob: bytes) -> bytes:
    """The first tensor's name given twice with different ranges (JSON: the last wins)."""
    p = parse(blob)
    names = p.entries()
    first, second = names[0], names[1]
    raw = json.dumps(p.header, separators=(",", ":"))
    raw = raw.replace(json.dumps(second) + ":", json.dumps(first) + ":", 1)
    return assemble(raw.encode(), p.data)


def _reversed(blob: bytes) -> bytes:
    def change(info: dict[str, Any], _p: Parsed) -> None:
        begin, end = info["data_offsets"]
        info["data_offsets"] = [end, begin]

    return _with_first(change)(blob)


def _shape_times_two(blob: bytes) -> bytes:
    def change(info: dict[str, Any], _p: Parsed) -> None:
        info["shape"] = [info["shape"][0] * 2, *info["shape"][1:]]

    return _with_first(change)(blob)


def _header_replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def build(blob: bytes) -> bytes:
        start, end = header_span(blob)
        header = blob[start:end]
        assert old in header, f"{old!r} not in header"
        return assemble(header.replace(old, new, 1), blob[end:])

    return build


def _declared(length: int | Callable[[bytes], int]) -> Callable[[bytes], bytes]:
    def build(blob: bytes) -> bytes:
        start, end = header_span(blob)
        value = length(blob) if callable(length) else length
        return struct.pack("<Q", value) + blob[start:]

    return build


def _huge_shape(offsets_huge: bool) -> Callable[[bytes], bytes]:
    """A tensor declaring 4 TiB of float32 (2**20 x 2**20)."""

    def change(info: dict[str, Any], _p: Parsed) -> None:
        info["shape"] = [2**20, 2**20]
        if offsets_huge:
            begin = info["data_offsets"][0]
            info["data_offsets"] = [begin, begin + 4 * 2**40]

    return _with_first(change)


def _overflow_shape(blob: bytes) -> bytes:
    """prod(shape) * 4 wraps to 0 in 64-bit arithmetic: a loader without overflow checks
    would accept a 2**62 x 4 tensor backed by zero bytes."""

    def change(p: Parsed) -> None:
        info = _first(p)
        begin = info["data_offsets"][0]
        info["shape"] = [2**62, 4]
        cut = info["data_offsets"]
        p.data = p.data[: cut[0]] + p.data[cut[1] :]
        size = cut[1] - cut[0]
        info["data_offsets"] = [begin, begin]
        for name in p.entries():
            other = p.header[name]
            if other is not info and other["data_offsets"][0] >= cut[1]:
                b, e = other["data_offsets"]
                other["data_offsets"] = [b - size, e - size]

    return _edit(blob, change)


def _zero_element_huge(blob: bytes) -> bytes:
    """An extra tensor of shape [0, 2**62]: valid (no elements), absurd declared width."""

    def change(p: Parsed) -> None:
        p.header["zero_element_huge"] = {
            "dtype": "F32",
            "shape": [0, 2**62],
            "data_offsets": [len(p.data), len(p.data)],
        }

    return _edit(blob, change)


def _reordered(blob: bytes) -> bytes:
    """Same tensors, header keys and data packed in reverse order (valid)."""
    p = parse(blob)
    names = list(reversed(p.entries()))
    header: dict[str, Any] = {}
    if METADATA_KEY in p.header:
        header[METADATA_KEY] = p.header[METADATA_KEY]
    chunks: list[bytes] = []
    offset = 0
    for name in names:
        info = dict(p.header[name])
        begin, end = info["data_offsets"]
        chunks.append(p.data[begin:end])
        info["data_offsets"] = [offset, offset + end - begin]
        offset += end - begin
        header[name] = info
    return assemble(header, b"".join(chunks))


#: Float dtype -> the integer dtype of the same width (a lie the format cannot detect).
SAME_WIDTH_INT = {"F64": "I64", "F32": "I32", "F16": "I16", "BF16": "I16"}


def _reinterpret_int(blob: bytes) -> bytes:
    """Float bytes labelled as the same-width integer: a valid file whose values are
    garbage (a lying dtype the format cannot detect)."""

    def change(info: dict[str, Any], _p: Parsed) -> None:
        info["dtype"] = SAME_WIDTH_INT.get(info["dtype"], info["dtype"])

    return _with_first(change)(blob)


def _mid(lo: Callable[[bytes], int], hi: Callable[[bytes], int]) -> Callable[[bytes], int]:
    return lambda b: (lo(b) + hi(b)) // 2


def _header_end(blob: bytes) -> int:
    return header_span(blob)[1]


@dataclass(frozen=True)
class FileCase:
    """One byte-level mutation of a valid file.

    ``valid``: what the format says (cross-checked against the reference reader,
    :func:`harness.oracles.safetensors.validate`, by the self-tests); ``memory_risky``:
    declares sizes that a careless reader would allocate, so it runs in a subprocess under
    ``RLIMIT_AS``.
    """

    id: str
    build: Callable[[bytes], bytes]
    valid: bool
    note: str
    memory_risky: bool = False


FILE_CASES: tuple[FileCase, ...] = (
    FileCase("control", lambda b: b, True, "the unmodified file (positive control)"),
    FileCase("reordered", _reordered, True, "tensors packed in reverse order"),
    FileCase("truncated-empty", lambda b: b"", False, "zero-byte file"),
    FileCase("truncated-in-length", lambda b: b[:4], False, "cut inside the length field"),
    FileCase("truncated-after-length", lambda b: b[:8], False, "length field only"),
    FileCase(
        "truncated-mid-header",
        lambda b: truncate(b, _mid(lambda _: 8, _header_end)(b)),
        False,
        "cut in the middle of the JSON header",
    ),
    FileCase(
        "truncated-after-header",
        lambda b: truncate(b, _header_end(b)),
        False,
        "header complete, no tensor data",
    ),
    FileCase(
        "truncated-mid-data",
        lambda b: truncate(b, _mid(_header_end, len)(b)),
        False,
        "half of the tensor data missing (an interrupted download)",
    ),
    FileCase("truncated-last-byte", lambda b: b[:-1], False, "one byte short of the declared data"),
    FileCase("trailing-bytes", lambda b: b + b"\0" * 16, False, "16 bytes no tensor claims"),
    FileCase("header-length-zero", _declared(0), False, "length field says 0"),
    FileCase(
        "header-length-past-eof",
        _declared(lambda b: len(b) + 100),
        False,
        "length field points past the end of the file",
    ),
    FileCase(
        "header-length-terabyte",
        _declared(2**40),
        False,
        "length field claims a 1 TiB header",
        memory_risky=True,
    ),
    FileCase(
        "header-length-u64-max",
        _declared(2**64 - 1),
        False,
        "length field is 2**64 - 1",
        memory_risky=True,
    ),
    FileCase(
        "header-invalid-json",
        lambda b: assemble(b[8 : _header_end(b) - 1] + b" ", b[_header_end(b) :]),
        False,
        "closing brace of the header replaced by a space",
    ),
    FileCase(
        "header-not-object",
        lambda b: assemble(b"[" + b[8 : _header_end(b)] + b"]", b[_header_end(b) :]),
        False,
        "header is a JSON list holding the object",
    ),
    FileCase(
        "header-not-utf8",
        lambda b: assemble(b"\xff" + b[8 : _header_end(b)], b[_header_end(b) :]),
        False,
        "invalid UTF-8 byte in the header",
    ),
    FileCase(
        "metadata-not-string",
        _header_replace(b'"format":"pt"', b'"format":1'),
        False,
        "__metadata__ value is a number",
    ),
    FileCase("offsets-past-end", _past_end, False, "last tensor's range lies past the end"),
    FileCase("offsets-overlap", _overlap, False, "second range starts inside the first"),
    FileCase("offsets-hole", _hole, False, "four bytes between two ranges belong to no tensor"),
    FileCase("offsets-reversed", _reversed, False, "data_offsets [end, begin]"),
    FileCase("offsets-negative", _set("data_offsets", [-4, 0]), False, "negative offset"),
    FileCase("duplicate-name", _duplicate_name, False, "a name given twice with different ranges"),
    FileCase("dtype-unknown", _set("dtype", "F33"), False, "dtype string F33"),
    FileCase("dtype-torch-name", _set("dtype", "float32"), False, "torch's name instead of F32"),
    FileCase("dtype-empty", _set("dtype", ""), False, "empty dtype string"),
    FileCase("dtype-size-mismatch", _set("dtype", "F64"), False, "F64 over a range sized for F32"),
    FileCase(
        "dtype-reinterpreted",
        _reinterpret_int,
        True,
        "F32 bytes labelled I32 (same width): valid, the values are garbage (undetectable)",
    ),
    FileCase("shape-mismatch", _shape_times_two, False, "shape twice the range's size"),
    FileCase("shape-negative", _set("shape", [-4, 4]), False, "negative dimension"),
    FileCase("shape-not-integer", _set("shape", ["4", 4]), False, "dimension is a string"),
    FileCase(
        "shape-terabyte",
        _huge_shape(offsets_huge=False),
        False,
        "declares 4 TiB of float32 over a small range",
        memory_risky=True,
    ),
    FileCase(
        "shape-terabyte-offsets",
        _huge_shape(offsets_huge=True),
        False,
        "declares 4 TiB with offsets to match, past the end of the file",
        memory_risky=True,
    ),
    FileCase(
        "shape-overflow",
        _overflow_shape,
        False,
        "2**62 x 4 float32: the byte count wraps to 0 in 64 bits",
        memory_risky=True,
    ),
    FileCase(
        "zero-element-huge-dim",
        _zero_element_huge,
        True,
        "an extra [0, 2**62] tensor: valid bytes, an absurd stray entry",
        memory_risky=True,
    ),
)

FILE_CASE_IDS = tuple(c.id for c in FILE_CASES)


def file_case(case_id: str) -> FileCase:
    for case in FILE_CASES:
        if case.id == case_id:
            return case
    raise KeyError(case_id)


# -- header mutations for hypothesis -----------------------------------------------------------
#: Fields of one tensor's header entry that hypothesis rewrites, with the kinds of value.
HEADER_FIELDS = ("dtype", "shape", "data_offsets")
DTYPE_CHOICES = (*DTYPE_SIZES, "F33", "float32", "f32", "", "F32 ", "BF32")


def mutate_header(blob: bytes, entry: int, field_name: str, value: Any) -> bytes:
    """Replace one field of the ``entry``-th tensor (in data order) by ``value``."""
    parsed = parse(blob).copy()
    names = parsed.entries()
    parsed.header[names[entry % len(names)]][field_name] = value
    return assemble(parsed.header, parsed.data)
