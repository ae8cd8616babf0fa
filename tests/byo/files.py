"""Hand-made safetensors files for the ``check`` self-tests: a header with consistent
offsets, data of one repeated byte (zero data is left sparse on disk, so full-size layouts
cost nothing), optionally ``cut`` bytes short of what the header describes."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def write_file(path: Path, shapes: dict[str, list[int]], fill: int = 0, cut: int = 0) -> Path:
    header, offset = {}, 0
    for key, shape in shapes.items():
        size = 2
        for dim in shape:
            size *= dim
        header[key] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        if fill % 256:
            handle.write(bytes([fill % 256]) * (offset - cut))
        else:
            handle.truncate(8 + len(blob) + offset - cut)
    return path
