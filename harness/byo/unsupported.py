"""Adapter layouts ``check`` recognises but does not check, as data.

Why: a LoKR or LoHa file is neither "not a LoRA file this harness knows" (it is a well-known
adapter) nor something to run the LoRA checks on (its keys place nowhere, so every check
would judge nothing). The user gets one line naming what was seen and what is supported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: (key pattern, layout name, the key suffixes that give it away). First match by share wins.
LAYOUTS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\.lokr_(w[12](_[ab])?|t2)$"), "LoKR (LyCORIS Kronecker)", "lokr_w1 / lokr_w2"),
    (re.compile(r"\.hada_(w[12]_[ab]|t[12])$"), "LoHa (LyCORIS Hadamard)", "hada_w1_a / hada_w2_b"),
    (re.compile(r"\.oft_(blocks|diag|R)$|\.boft_R$"), "OFT / BOFT (orthogonal)", "oft_blocks"),
    (re.compile(r"\.(a1|a2|b1|b2)\.weight$"), "GLoRA", "a1 / a2 / b1 / b2"),
    (re.compile(r"\.(diff|diff_b)$"), "LyCORIS full-weight diff", "diff / diff_b"),
    (re.compile(r"\.(w_norm|b_norm)$"), "LyCORIS norm fine-tune", "w_norm / b_norm"),
    (re.compile(r"\.(ia3_l|on_input)$|\.ia3$"), "(IA)^3", "ia3_l"),
    (
        re.compile(r"^(emb_params|string_to_param(\.\*)?|clip_[lg])$"),
        "textual-inversion embedding",
        "emb_params / clip_l / clip_g",
    ),
)

#: A layout is named when at least this share of the keys are its own.
MIN_SHARE = 0.3


def recognise(keys: Sequence[str]) -> str | None:
    """``"LoKR (LyCORIS Kronecker): 412 of 420 keys end in lokr_w1 / lokr_w2"``, or None."""
    if not keys:
        return None
    best: tuple[int, str, str] | None = None
    for pattern, name, suffixes in LAYOUTS:
        count = sum(1 for k in keys if pattern.search(k))
        if count and (best is None or count > best[0]):
            best = (count, name, suffixes)
    if best is None or best[0] < MIN_SHARE * len(keys):
        return None
    count, name, suffixes = best
    return f"{name}: {count} of {len(keys)} keys are {suffixes} tensors"
