"""Stand-ins for pipeline components that are not models and cannot be built offline.

Why: Cosmos 2.5's pipeline builds NVIDIA's ``cosmos_guardrail`` checker when given none
(an ImportError without that package, and it downloads its models) and calls
``check_text_safety`` on every prompt. The family step judges the denoiser, not the
guardrail, so an inert checker that passes everything stands in, as diffusers' own
pipeline tests do (``tests/pipelines/cosmos/cosmos_guardrail.py``).
"""

from __future__ import annotations

from typing import Any

import torch


class PassingSafetyChecker(torch.nn.Module):
    """A Cosmos safety checker that lets every prompt and video through unchanged."""

    def __init__(self) -> None:
        super().__init__()
        # A buffer, so ``.to(device)`` and the pipeline's device lookups have a tensor.
        self.register_buffer("_device_tracker", torch.zeros(1), persistent=False)

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: Any) -> Any:
        return frames

    @property
    def device(self) -> torch.device:
        return self._device_tracker.device

    @property
    def dtype(self) -> torch.dtype:
        return self._device_tracker.dtype
