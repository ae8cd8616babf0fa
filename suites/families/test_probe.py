"""The family axis against the installed release: which LoRA loader mixins it has.

``unknown_mixins``: every public ``*LoraLoaderMixin`` of the release, with the pipelines
that inherit it and its denoiser, is probed (:mod:`harness.inputs.families.probe`); a
mixin the committed table (``harness/inputs/families/table.py``) does not know is a family
no row checks yet. The row lists them and is NOT_RUN (skipped, grey) while any is unknown,
OK when the table knows every mixin: a coverage gap, never a failure of the family rows.
"""

from __future__ import annotations

from harness.inputs.families.probe import probe, unknown_mixins
from harness.inputs.families.table import known_mixins


def test_unknown_mixins(compat) -> None:
    """Mixins of this release without a family row (details: every mixin found)."""
    compat.param(kind="inventory")
    found = probe()
    unknown = unknown_mixins(found, known_mixins())
    compat.detail(
        mixins={name: info.as_dict() for name, info in found.items()},
        unknown=unknown,
        covered=sorted(set(found) & known_mixins()),
    )
    if unknown:
        compat.not_run(
            f"{len(unknown)} LoRA loader mixin(s) of this release have no family row: "
            + ", ".join(unknown)
        )
