"""Session state of the shared-components suite: pristine pairs, their pictures and
baseline outputs, measured once (the zoo is seeded, so every fresh pair is identical)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.cell.classify import Unsupported
from harness.scenarios.sharing.pairs import Pair, build_pair, build_refiner_unet, run_member
from harness.scenarios.sharing.state import PipeState, capture


class SharedWorld:
    """Hands out fresh pairs; caches their pristine state and outputs."""

    def __init__(self, zoo: Any, root: Path) -> None:
        self.zoo = zoo
        self.root = root
        self._refiner_unet: torch.nn.Module | None = None
        self._pristine: dict[str, tuple[PipeState, PipeState]] = {}
        self._baseline: dict[str, tuple[Any, Any]] = {}
        self._failed: dict[str, str] = {}
        self._ipa: Any = None

    @property
    def dtype(self) -> torch.dtype:
        return self.zoo.dtype

    def pair(self, compat: Any, name: str) -> Pair:
        """A fresh pair, built by us from the zoo (checked on its own by the smoke suite):
        a failure here is ours, never a library finding."""
        compat.param(pair=name)
        if name in self._failed:
            raise Unsupported(self._failed[name])
        try:
            if name == "refiner" and self._refiner_unet is None:
                self._refiner_unet = build_refiner_unet(self.zoo)
            pair = build_pair(self.zoo, name, self._refiner_unet)
        except Unsupported as exc:
            self._failed[name] = str(exc)
            raise
        compat.detail(shared=pair.shared, not_shared=pair.own_b)
        return pair

    def pristine(self, compat: Any, name: str) -> tuple[PipeState, PipeState]:
        if name not in self._pristine:
            pair = self.pair(compat, name)
            self._pristine[name] = (capture(pair.a), capture(pair.b))
        return self._pristine[name]

    def baseline(self, compat: Any, name: str) -> tuple[Any, Any]:
        """Outputs of a pristine pair (first member, second member)."""
        if name not in self._baseline:
            pair = self.pair(compat, name)
            with compat.library_call():
                self._baseline[name] = (run_member(pair.a), run_member(pair.b))
        return self._baseline[name]

    def ipa(self) -> Any:
        """The IP-Adapter suite's synthetic hub (reused, read-only)."""
        if self._ipa is None:
            from harness.scenarios.ip_adapter import IPAWorld

            self._ipa = IPAWorld(self.zoo, self.root / "ip_adapter_hub")
        return self._ipa
