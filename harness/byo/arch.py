"""Which model a LoRA file was trained for, read from its block structure and tensor shapes.

Why not from one key: "a ``lora_unet_`` file without ``attn2`` is SD1.5" judged SDXL files
as SD1.5 (their diffusers-named blocks exist in both UNets), placed 32 of 280 modules and
passed. Each rule below is a structural fact that holds for one architecture only (SDXL has
no attention in down block 0 and transformer depth 2 / 10; SD1.5 has depth 1 and attention
in down block 0; Flux has single-stream blocks; SD3 has joint blocks) or a width that only
one architecture has (cross-attention 768 / 1024 / 2048, joint attention 3072 vs 1536 /
2432). Every rule that fires votes once; the architecture with the most votes wins, a tie
is "ambiguous". Stdlib only: the outer tool runs this on the safetensors header.

Keys are compared with every ``.`` turned into ``_``, so one rule covers PEFT
(``unet.down_blocks.0``), kohya (``lora_unet_down_blocks_0``) and SGM names alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Architectures the LoRA checks have committed real layouts for (fixtures/lora/layout-*).
SUPPORTED = ("sd15", "sdxl", "sd3", "flux")
#: How each architecture is named to a user.
DISPLAY = {"sd15": "SD1.5", "sd2": "SD2.x", "sdxl": "SDXL", "flux": "Flux", "sd3": "SD3"}

#: (pattern on the normalised key, architecture, what was seen, votes). Structural facts.
STRUCTURE_RULES: tuple[tuple[str, str, str, int], ...] = (
    (r"(^|_)single_transformer_blocks_\d+_", "flux", "single-stream blocks", 2),
    (r"(^|_)(double|single)_blocks_\d+_", "flux", "BFL double / single blocks", 2),
    (r"(^|_)joint_blocks_\d+_", "sd3", "SD3 joint blocks (SGM names)", 2),
    (r"(^|_)down_blocks_0_attentions_", "sd15", "attention in UNet down block 0", 2),
    (r"(^|_)down_blocks_3_", "sd15", "a fourth UNet down block", 1),
    (r"(^|_)up_blocks_3_attentions_", "sd15", "attention in UNet up block 3", 2),
    (r"(^|_)up_blocks_0_attentions_", "sdxl", "attention in UNet up block 0", 2),
    (
        r"(attentions_\d+|(input|output)_blocks_\d+_1|middle_block_1)_transformer_blocks_"
        r"([1-9]|\d\d+)_",
        "sdxl",
        "UNet transformer depth > 1",
        2,
    ),
    (r"(^|_)input_blocks_[12]_1_", "sd15", "attention in SGM input blocks 1-2", 2),
    (r"(^|_)output_blocks_[0-2]_1_", "sdxl", "attention in SGM output blocks 0-2", 2),
    (r"(^|_)output_blocks_([6-9]|1[01])_1_", "sd15", "attention in SGM output blocks 6-11", 2),
    (r"(^|_)add_embedding_", "sdxl", "add_embedding (SDXL micro-conditioning)", 2),
    (r"(^|_)(lora_te2|text_encoder_2)_text_model_", "sdxl", "a second CLIP text encoder", 1),
    (r"^lora_te_text_model_", "sd15", "kohya SD1 text encoder names (lora_te_)", 1),
)

#: (pattern on the normalised stem of a LoRA *down* matrix, in-features -> architecture,
#: what the width is). Widths only one architecture has.
WIDTH_RULES: tuple[tuple[str, dict[int, str], str], ...] = (
    (r"attn2_to_[kv]$", {768: "sd15", 1024: "sd2", 2048: "sdxl"}, "cross-attention width"),
    (
        r"(^|_)transformer_blocks_\d+_attn_(to_[qkv]|add_[qkv]_proj)$",
        {3072: "flux", 1536: "sd3", 2432: "sd3"},
        "joint-attention width",
    ),
    (r"time_text_embed_text_embedder_linear_1$", {768: "flux", 2048: "sd3"}, "pooled text width"),
    (r"output_blocks_[345]_1_.*attn1_to_q$", {1280: "sd15", 640: "sdxl"}, "SGM output width"),
)
#: Votes of a width rule: a width is a stronger fact than one block name.
WIDTH_VOTES = 3

#: A convolutional ``proj_in`` (4-d LoRA down) exists in SD1.x UNets only.
CONV_PROJ_IN = re.compile(r"(attentions_\d+|_\d+_1)_proj_in$")

#: Suffixes of a LoRA down matrix in every layout the formats use.
DOWN_SUFFIX = re.compile(r"[._](lora_down|lora_A|down)[._]weight$|[._]lora[._]down[._]weight$")


@dataclass(frozen=True)
class ArchEvidence:
    """The architecture a file was identified as, and the facts that said so."""

    arch: str | None
    seen: tuple[str, ...]  # facts that voted for ``arch``
    against: tuple[str, ...] = ()  # facts that voted for another architecture
    scores: tuple[tuple[str, int], ...] = ()

    @property
    def supported(self) -> bool:
        return self.arch in SUPPORTED

    def summary(self) -> str:
        if self.arch is None:
            if self.scores:
                tied = " vs ".join(f"{DISPLAY.get(a, a)} ({n})" for a, n in self.scores[:2])
                return f"ambiguous architecture: {tied}; seen {'; '.join(self.against[:4])}"
            return "no block structure or width this harness knows"
        text = f"{DISPLAY.get(self.arch, self.arch)} (seen: {'; '.join(self.seen[:4])})"
        if self.against:
            text += f" despite {'; '.join(self.against[:2])}"
        return text


def normalise(key: str) -> str:
    return key.replace(".", "_")


def down_stems(shapes: Mapping[str, Sequence[int]]) -> dict[str, Sequence[int]]:
    """Normalised stem -> shape of every LoRA down matrix (``[rank, in(, kh, kw)]``)."""
    out: dict[str, Sequence[int]] = {}
    for key, shape in shapes.items():
        match = DOWN_SUFFIX.search(key)
        if match:
            out[normalise(key[: match.start()])] = shape
    return out


def identify(
    keys: Sequence[str], shapes: Mapping[str, Sequence[int]] | None = None
) -> ArchEvidence:
    """Vote over :data:`STRUCTURE_RULES` (keys) and :data:`WIDTH_RULES` (shapes)."""
    votes: dict[str, int] = {}
    facts: dict[str, list[str]] = {}

    def vote(arch: str, fact: str, weight: int) -> None:
        if fact in facts.setdefault(arch, []):
            return
        facts[arch].append(fact)
        votes[arch] = votes.get(arch, 0) + weight

    normalised = [normalise(k) for k in keys]
    for pattern, arch, fact, weight in STRUCTURE_RULES:
        regex = re.compile(pattern)
        hit = next((k for k, n in zip(keys, normalised, strict=True) if regex.search(n)), None)
        if hit is not None:
            vote(arch, f"{fact} ({_short(hit)})", weight)
    for stem, shape in down_stems(shapes or {}).items():
        if len(shape) < 2:
            continue
        width = int(shape[1])
        for pattern, table, what in WIDTH_RULES:
            if re.search(pattern, stem) and width in table:
                vote(table[width], f"{what} {width}", WIDTH_VOTES)
        if len(shape) == 4 and CONV_PROJ_IN.search(stem):
            vote("sd15", "convolutional proj_in (SD1.x UNet)", 2)
    if not votes:
        return ArchEvidence(None, ())
    ranked = sorted(votes.items(), key=lambda item: -item[1])
    everything = tuple(f"{f} -> {DISPLAY.get(a, a)}" for a, _ in ranked for f in facts[a])
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return ArchEvidence(None, (), everything, tuple(ranked))
    best = ranked[0][0]
    against = tuple(f"{f} -> {DISPLAY.get(a, a)}" for a, _ in ranked[1:] for f in facts[a])
    return ArchEvidence(best, tuple(facts[best]), against, tuple(ranked))


def _short(key: str, limit: int = 60) -> str:
    return key if len(key) <= limit else key[: limit - 3] + "..."
