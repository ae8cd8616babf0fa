"""Recognise a user's LoRA file from its keys (and shapes): format and architecture.

Stdlib-only (the outer tool has no torch): the format is the one of
:data:`harness.inputs.checkpoints.lora.formats.FORMATS` whose key grammar matches the most keys;
the architecture comes from :data:`ARCH_HINTS`, data in the same spirit. Ties go to the
format listed first, so a plain file is never called DoRA / control: those formats win
only with their own keys (``lora_magnitude_vector``, ``dora_scale``, norm scales). The cells re-run
the same detection before checking the file (``suites/lora/test_byo.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.inputs.checkpoints.lora.formats import FORMATS

if TYPE_CHECKING:
    from harness.byo import UserFile

#: A key that belongs to any LoRA layout at all.
LORA_KEY = re.compile(
    r"(lora_(down|up|A|B)\.weight|\.alpha|\.(down|up)\.weight|dora_scale|lora_magnitude_vector"
    r"|(query|key)_norm\.scale|attn\.norm_(added_)?[qk]\.weight)$"
)

#: (pattern on keys, arch), first match wins; shapes refine SD1.5 vs SDXL below.
ARCH_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"double_blocks|single_blocks|single_transformer_blocks|^transformer\.|lora_transformer_|processor\.(qkv|proj)_lora"
        ),
        "flux",
    ),
    (
        re.compile(
            r"lora_te2_|^text_encoder_2\.|input_blocks_\d+_1_|middle_block_1_|output_blocks_\d+_1_|add_embedding"
        ),
        "sdxl",
    ),
    (
        re.compile(r"lora_unet_|^unet\.|down_blocks|mid_block|up_blocks|lora_te_|^text_encoder\."),
        "sd15",
    ),
)
#: Cross-attention width (in-features of attn2.to_k / to_v LoRA downs) -> UNet architecture.
CROSS_ATTENTION_WIDTH = {768: "sd15", 2048: "sdxl"}
#: A file is a LoRA when at least this share of its keys are LoRA keys of one format.
MIN_SHARE = 0.5


@dataclass(frozen=True)
class Detection:
    format: str
    arch: str | None
    matched: int
    total: int

    def describe(self) -> str:
        arch = self.arch or "unknown architecture"
        return f"LoRA, format {self.format}, {arch} ({self.matched}/{self.total} keys in the format's layout)"


def detect(
    keys: Sequence[str], shapes: Mapping[str, Sequence[int]] | None = None
) -> Detection | None:
    keys = list(keys)
    lora_keys = [k for k in keys if LORA_KEY.search(k)]
    if not keys or len(lora_keys) < MIN_SHARE * len(keys):
        return None
    best = None
    for name, fmt in FORMATS.items():
        matched = sum(1 for k in keys if fmt.pattern.search(k))
        if best is None or matched > best[1]:
            best = (name, matched)
    if best is None or best[1] < MIN_SHARE * len(keys):
        return None
    return Detection(best[0], detect_arch(keys, shapes), best[1], len(keys))


def detect_arch(
    keys: Sequence[str], shapes: Mapping[str, Sequence[int]] | None = None
) -> str | None:
    for pattern, arch in ARCH_HINTS:
        if any(pattern.search(k) for k in keys):
            if arch == "sd15" and shapes:
                return _unet_by_shape(shapes) or arch
            return arch
    return None


def _unet_by_shape(shapes: Mapping[str, Sequence[int]]) -> str | None:
    for key, shape in shapes.items():
        if (
            re.search(r"attn2[._]to_[kv].*(lora_down|lora_A|down)\.weight$", key)
            and len(shape) == 2
        ):
            return CROSS_ATTENTION_WIDTH.get(int(shape[1]))
    return None


def detect_file(user: UserFile) -> bool:
    return detect(user.keys, user.shapes) is not None


def describe_file(user: UserFile) -> str:
    found = detect(user.keys, user.shapes)
    return found.describe() if found else "not a LoRA"
