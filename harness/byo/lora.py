"""Recognise a user's LoRA file from its keys and shapes: format, architecture, placement.

Stdlib-only (the outer tool has no torch): the format is the one of
:data:`harness.inputs.checkpoints.lora.formats.FORMATS` whose key grammar matches the most keys;
the architecture comes from block structure and widths (:mod:`harness.byo.arch`). Ties go to
the format listed first, so a plain file is never called DoRA / control: those formats win
only with their own keys (``lora_magnitude_vector``, ``dora_scale``, norm scales).

*Placement* answers "does this harness understand the file": each key is read as the format
names it and looked up in the committed full-size layout of the architecture
(``fixtures/lora/layout-<arch>.json``). A file with no placed module, or with most keys
unplaced, is "not understood" — never a pass on the few modules that did place. The cells
run the same detection and placement before checking the file (``suites/lora/test_byo.py``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from harness.byo.arch import DISPLAY, SUPPORTED, ArchEvidence, identify
from harness.inputs.checkpoints.lora.formats import FORMATS, LoraFormat, stems_of
from harness.inputs.checkpoints.lora.layouts import ComponentLayout, ModelLayout

if TYPE_CHECKING:
    from harness.byo import UserFile

#: A key that belongs to any LoRA layout at all.
LORA_KEY = re.compile(
    r"(lora_(down|up|A|B)\.weight|\.alpha|\.(down|up)\.weight|dora_scale|lora_magnitude_vector"
    r"|(query|key)_norm\.scale|attn\.norm_(added_)?[qk]\.weight)$"
)
#: A file is a LoRA when at least this share of its keys are LoRA keys of one format.
MIN_SHARE = 0.5
#: A file is understood when at least this share of its keys have a place in the model.
MIN_PLACED_SHARE = 0.5

LAYOUTS = Path(__file__).resolve().parents[2] / "fixtures" / "lora"


@dataclass(frozen=True)
class Detection:
    format: str
    arch: str | None
    matched: int
    total: int
    evidence: ArchEvidence = field(default_factory=lambda: ArchEvidence(None, ()))

    def describe(self) -> str:
        arch = self.evidence.summary()
        return (
            f"LoRA, format {self.format}, {self.arch or 'unknown architecture'} "
            f"({self.matched}/{self.total} keys in the format's layout); architecture: {arch}"
        )


@dataclass(frozen=True)
class Placement:
    """How much of a file the harness can place in the model it was identified for."""

    modules: int  # modules with a complete down / up pair
    placed_keys: int
    total_keys: int
    unplaced: tuple[str, ...]

    @property
    def understood(self) -> bool:
        return self.modules > 0 and self.placed_keys >= MIN_PLACED_SHARE * self.total_keys

    def families(self, limit: int = 6) -> str:
        counts = Counter(key_family(k) for k in self.unplaced)
        shown = [f"{name} ({n})" for name, n in counts.most_common(limit)]
        if len(counts) > limit:
            shown.append(f"{len(counts) - limit} more")
        return ", ".join(shown)

    def verdict(self, arch: str) -> str:
        """One line: why the file is not understood (call when ``not understood``)."""
        model = DISPLAY.get(arch, arch)
        return (
            f"not understood: {len(self.unplaced)} of {self.total_keys} keys have no place in "
            f"the {model} model ({self.modules} module(s) placed); unplaced key families: "
            f"{self.families()}"
        )


def detect(
    keys: Sequence[str], shapes: Mapping[str, Sequence[int]] | None = None
) -> Detection | None:
    keys = list(keys)
    lora_keys = [k for k in keys if LORA_KEY.search(k)]
    if not keys or len(lora_keys) < MIN_SHARE * len(keys):
        return None
    evidence = identify(keys, shapes)
    counts = {name: _matches(fmt, keys, shapes or {}) for name, fmt in FORMATS.items()}
    best = max(counts, key=lambda name: counts[name])  # ties: the format listed first
    for name, fmt in FORMATS.items():
        # a narrower reading of the same grammar (kohya keys with diffusers block names on
        # SDXL) wins a tie, but only for a model it exists for
        refines = getattr(fmt, "refines", None)
        if refines == best and counts[name] == counts[best] and evidence.arch in fmt.arches:
            best = name
    if counts[best] < MIN_SHARE * len(keys):
        return None
    return Detection(best, evidence.arch, counts[best], len(keys), evidence)


def _matches(fmt: LoraFormat, keys: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> int:
    """Keys in ``fmt``'s grammar; a DoRA magnitude counts only in its stored convention
    (``(out, 1)`` vs ``(1, in)`` tells two DoRA formats with the same names apart)."""
    fits = getattr(fmt, "magnitude_fits", None)
    count = 0
    for key in keys:
        if not fmt.pattern.search(key):
            continue
        if fmt.magnitude and fits and key.endswith(fmt.magnitude) and key in shapes:
            if not fits(list(shapes[key])):
                continue
        count += 1
    return count


@cache
def load_layout(arch: str) -> ModelLayout:
    """The committed full-size layout (same file the in-cell reference reads)."""
    data = json.loads((LAYOUTS / f"layout-{arch}.json").read_text())
    return {name: ComponentLayout.from_json(v) for name, v in data.items()}


def placement(found: Detection, keys: Sequence[str]) -> Placement:
    """Which keys have a place in the model ``found.arch`` (a supported one)."""
    assert found.arch in SUPPORTED, found.arch
    fmt = FORMATS[found.format]
    layout = load_layout(found.arch)
    table = stems_of(fmt, found.arch, layout)
    norms = fmt.norms(found.arch, layout) if fmt.norms is not None else {}
    roles: dict[str, dict[str, str]] = {}
    unplaced: list[str] = []
    placed_keys = 0
    for key in keys:
        if key in norms:
            placed_keys += 1
            continue
        split = fmt.split_key(key)
        if split is None or split[0] not in table:
            unplaced.append(key)
            continue
        roles.setdefault(split[0], {})[split[1]] = key
    modules = 0
    for pair in roles.values():
        if "down" in pair and "up" in pair:
            modules += 1
            placed_keys += len(pair)
        else:
            unplaced += pair.values()
    return Placement(modules, placed_keys, len(keys), tuple(sorted(unplaced)))


def key_family(key: str) -> str:
    """``lora_unet_down_blocks_1_attentions_0_..._to_k.lora_down.weight`` ->
    ``lora_unet_down_blocks_N_attentions_N``: where in the model a key points, not which
    layer (so a listing of unplaced keys stays a few lines long)."""
    stem = re.sub(r"\d+", "N", key)
    marks = [m.end() for m in re.finditer(r"(?<![A-Za-z])N(?![A-Za-z])", stem)]
    if len(marks) >= 2:
        return stem[: marks[1]]
    if marks:
        return stem[: marks[0]]
    return re.sub(r"[._](lora_(down|up|A|B)|down|up)[._]weight$|[._]alpha$", "", stem)


def unsupported_arch(found: Detection) -> str | None:
    """One line when the file's model is one the LoRA checks have no layout for."""
    if found.arch in SUPPORTED:
        return None
    supported = ", ".join(DISPLAY[a] for a in SUPPORTED)
    if found.arch is None:
        return (
            f"LoRA (format {found.format}) for an unrecognised model: "
            f"{found.evidence.summary()}; supported: {supported}"
        )
    return (
        f"LoRA (format {found.format}) for {found.evidence.summary()}: the checks cover "
        f"{supported} only"
    )


def detect_file(user: UserFile) -> bool:
    return detect(user.keys, user.shapes) is not None


def describe_file(user: UserFile) -> str:
    found = detect(user.keys, user.shapes)
    return found.describe() if found else "not a LoRA"


def understand_file(user: UserFile) -> str | None:
    """Why the harness cannot check this LoRA file (None: it can): unsupported or unknown
    architecture, or too few keys placed in its model."""
    found = detect(user.keys, user.shapes)
    if found is None:
        return "not a LoRA"
    problem = unsupported_arch(found)
    if problem:
        return problem
    placed = placement(found, user.keys)
    return None if placed.understood else placed.verdict(found.arch)
