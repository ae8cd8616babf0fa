"""A module's weight change, kept as low-rank blocks so real Flux widths stay cheap.

InvokeAI's converters check the real Flux widths (3072, 12288), so the rows run at full
size; a fused ``linear1`` delta is 21504 x 3072 (half a gigabyte in float64). A
:class:`WeightDelta` keeps the loader's factors instead - row blocks of ``scale * up @
down`` - and is judged by probing (``apply(x)``), the same way ``Term.apply`` lets the
reference judge full-size modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Block:
    """Rows ``[start, start + up.shape[0])`` of the delta are ``scale * up @ down``."""

    start: int
    up: torch.Tensor
    down: torch.Tensor
    scale: float

    @property
    def stop(self) -> int:
        return self.start + self.up.shape[0]


@dataclass
class WeightDelta:
    """The change of one (out, in) weight, as a sum of row blocks (zero elsewhere)."""

    out_features: int
    in_features: int
    blocks: list[Block] = field(default_factory=list)
    dtype: torch.dtype = torch.float32  # the dtype the loader kept the factors in

    def add(self, start: int, up: torch.Tensor, down: torch.Tensor, scale: float) -> None:
        up = up.detach().reshape(up.shape[0], -1).to("cpu", torch.float64)
        down = down.detach().reshape(down.shape[0], -1).to("cpu", torch.float64)
        if up.shape[1] != down.shape[0]:
            raise ValueError(f"up {tuple(up.shape)} and down {tuple(down.shape)} do not chain")
        self.blocks.append(Block(start, up, down, float(scale)))

    def apply(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """``delta[rows] @ x`` (x: (in, n), float64) without forming the delta."""
        rows = rows or slice(0, self.out_features)
        out = torch.zeros(rows.stop - rows.start, x.shape[1], dtype=torch.float64)
        for block in self.blocks:
            lo, hi = max(block.start, rows.start), min(block.stop, rows.stop)
            if lo >= hi:
                continue
            if block.down.shape[1] != x.shape[0]:
                raise ValueError(
                    f"delta block takes {block.down.shape[1]} inputs, the module {x.shape[0]}"
                )
            up = block.up[lo - block.start : hi - block.start]
            out[lo - rows.start : hi - rows.start] += block.scale * (up @ (block.down @ x))
        return out

    @classmethod
    def from_dense(cls, delta: torch.Tensor) -> WeightDelta:
        """A full matrix as one block (``up = delta``, ``down = I``): small models only."""
        delta = delta.detach().reshape(delta.shape[0], -1).to("cpu", torch.float64)
        out = cls(delta.shape[0], delta.shape[1], dtype=delta.dtype)
        out.blocks.append(Block(0, delta, torch.eye(delta.shape[1], dtype=torch.float64), 1.0))
        return out
