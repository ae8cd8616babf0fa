"""Which ``image_proj`` checkpoint key becomes which parameter of the loaded projection.

The release layout (IP-Adapter repository, InstantX SD3.5) names the image projection's
tensors after the original modules: ``proj`` / ``norm`` (ImageProjModel), ``proj.0/2/3``
(MLPProjModel, a ``Sequential``), and the perceiver resampler's ``layers.N.0.*``
(PerceiverAttention: ``norm1`` on the image features, ``norm2`` on the latents, ``to_q``,
a fused ``to_kv`` whose first half is K, ``to_out``) and ``layers.N.1.*`` (its feed-forward
``Sequential``: LayerNorm, Linear, GELU, Linear). diffusers builds its own modules and
renames on load; the names below are its documented module structure, probed per version
by instantiating the classes (see ``SCHEMES``' ``seen_in``). They differ between
versions, so each variant keeps every alternative; the oracle picks the scheme whose
names the *loaded* module carries (never by reading diffusers' converters).

A rule maps a checkpoint key (regex, named groups) to one parameter name, or to several
when the tensor is split into equal parts along dim 0 (a fused ``to_kv`` -> ``to_k``,
``to_v``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    """``key`` (a full-match regex over the checkpoint key) -> parameter name template(s)
    filled from the regex groups; more than one template means "split along dim 0"."""

    key: str
    params: tuple[str, ...]

    def apply(self, checkpoint_key: str) -> tuple[str, ...] | None:
        match = re.fullmatch(self.key, checkpoint_key)
        if match is None:
            return None
        return tuple(p.format(**match.groupdict()) for p in self.params)


@dataclass(frozen=True)
class NameScheme:
    """One version family's names for one projection class."""

    name: str
    module: str  # diffusers class it describes (for the record; never imported)
    seen_in: str  # diffusers versions whose modules carry these names (probed)
    rules: tuple[NameRule, ...]

    def map(self, checkpoint_key: str) -> tuple[str, ...] | None:
        for rule in self.rules:
            params = rule.apply(checkpoint_key)
            if params is not None:
                return params
        return None


def _same(*names: str) -> tuple[NameRule, ...]:
    """Keys kept verbatim (weight and bias of each module named)."""
    return tuple(NameRule(rf"{re.escape(n)}\.(?P<p>weight|bias)", (f"{n}.{{p}}",)) for n in names)


_P = r"(?P<p>weight|bias)"
_N = r"(?P<n>\d+)"


def _resampler_block(prefix: str, attn: str, ln0: str, ln1: str, ff: str) -> tuple[NameRule, ...]:
    """One perceiver block (``layers.N.0`` attention, ``layers.N.1`` feed-forward) onto a
    diffusers block whose sub-modules are named ``attn`` / ``ln0`` / ``ln1`` / ``ff``
    (templates with ``{n}`` for the block index); K and V come from halves of ``to_kv``."""
    src = re.escape(prefix) + rf"layers\.{_N}\."
    return (
        NameRule(src + rf"0\.norm1\.{_P}", (f"layers.{{n}}.{ln0}.{{p}}",)),
        NameRule(src + rf"0\.norm2\.{_P}", (f"layers.{{n}}.{ln1}.{{p}}",)),
        NameRule(src + r"0\.to_q\.weight", (f"layers.{{n}}.{attn}.to_q.weight",)),
        NameRule(
            src + r"0\.to_kv\.weight",
            (f"layers.{{n}}.{attn}.to_k.weight", f"layers.{{n}}.{attn}.to_v.weight"),
        ),
        NameRule(src + r"0\.to_out\.weight", (f"layers.{{n}}.{attn}.to_out.0.weight",)),
        NameRule(src + rf"1\.0\.{_P}", (f"layers.{{n}}.{ff}.0.{{p}}",)),
        NameRule(src + r"1\.1\.weight", (f"layers.{{n}}.{ff}.1.net.0.proj.weight",)),
        NameRule(src + r"1\.3\.weight", (f"layers.{{n}}.{ff}.1.net.2.weight",)),
    )


_RESAMPLER_IO = (
    NameRule(r"latents", ("latents",)),
    *_same("proj_in", "proj_out", "norm_out"),
)

SCHEMES: dict[str, tuple[NameScheme, ...]] = {
    "base": (
        NameScheme(
            "image_embeds",
            "ImageProjection",
            "0.26-0.42",
            (NameRule(rf"proj\.{_P}", ("image_embeds.{p}",)), *_same("norm")),
        ),
    ),
    "full-face": (
        NameScheme(
            "ff-norm",
            "IPAdapterFullImageProjection",
            "0.26-0.42",
            (
                NameRule(rf"proj\.0\.{_P}", ("ff.net.0.proj.{p}",)),
                NameRule(rf"proj\.2\.{_P}", ("ff.net.2.{p}",)),
                NameRule(rf"proj\.3\.{_P}", ("norm.{p}",)),
            ),
        ),
    ),
    "faceid": (
        NameScheme(
            "ff-norm",
            "IPAdapterFaceIDImageProjection",
            "0.28-0.42",
            (
                NameRule(rf"proj\.0\.{_P}", ("ff.net.0.proj.{p}",)),
                NameRule(rf"proj\.2\.{_P}", ("ff.net.2.{p}",)),
                *_same("norm"),
            ),
        ),
    ),
    "plus": (
        NameScheme(
            "named-blocks",
            "IPAdapterPlusImageProjection",
            "0.29-0.42",
            (*_RESAMPLER_IO, *_resampler_block("", "attn", "ln0", "ln1", "ff")),
        ),
        NameScheme(
            "positional-blocks",
            "IPAdapterPlusImageProjection",
            "0.26-0.28",
            (*_RESAMPLER_IO, *_resampler_block("", "2", "0", "1", "3")),
        ),
    ),
    "faceid-plus": (
        NameScheme(
            "named-blocks",
            "IPAdapterFaceIDPlusImageProjection",
            "0.28-0.42",
            (
                NameRule(rf"proj\.0\.{_P}", ("proj.net.0.proj.{p}",)),
                NameRule(rf"proj\.2\.{_P}", ("proj.net.2.{p}",)),
                *_same("norm"),
                *(
                    NameRule(rf"perceiver_resampler\.{n}\.{_P}", (f"{n}.{{p}}",))
                    for n in ("proj_in", "proj_out", "norm_out")
                ),
                *_resampler_block("perceiver_resampler.", "attn", "ln0", "ln1", "ff"),
            ),
        ),
    ),
    "sd3": (
        NameScheme(
            "time-resampler",
            "IPAdapterTimeImageProjection",
            "0.32-0.42",
            (
                *_RESAMPLER_IO,
                *_same("time_embedding.linear_1", "time_embedding.linear_2"),
                NameRule(rf"layers\.{_N}\.0\.norm1\.{_P}", ("layers.{n}.ln0.{p}",)),
                NameRule(rf"layers\.{_N}\.0\.norm2\.{_P}", ("layers.{n}.ln1.{p}",)),
                NameRule(rf"layers\.{_N}\.0\.to_q\.weight", ("layers.{n}.attn.to_q.weight",)),
                # diffusers keeps K and V fused here (the block calls ``to_kv``).
                NameRule(rf"layers\.{_N}\.0\.to_kv\.weight", ("layers.{n}.attn.to_kv.weight",)),
                NameRule(rf"layers\.{_N}\.0\.to_out\.weight", ("layers.{n}.attn.to_out.0.weight",)),
                # layers.N.1: the feed-forward whose LayerNorm is AdaLN-modulated.
                NameRule(rf"layers\.{_N}\.1\.0\.{_P}", ("layers.{n}.adaln_norm.{p}",)),
                NameRule(rf"layers\.{_N}\.1\.1\.weight", ("layers.{n}.ff.net.0.proj.weight",)),
                NameRule(rf"layers\.{_N}\.1\.3\.weight", ("layers.{n}.ff.net.2.weight",)),
                # layers.N.2: the AdaLN modulation (SiLU, Linear).
                NameRule(rf"layers\.{_N}\.2\.1\.{_P}", ("layers.{n}.adaln_proj.{p}",)),
            ),
        ),
    ),
}
SCHEMES["flux"] = SCHEMES["base"]


def schemes_for(variant: str) -> Sequence[NameScheme]:
    return SCHEMES[variant]
