"""The IP-Adapter loaders of the installed release against the ones the suite drives.

``unknown_ip_adapter_mixins``: every public ``*IPAdapterMixin`` of the release, with the
pipelines that inherit it (:func:`harness.inputs.families.probe.probe`), is compared with
:data:`harness.inputs.checkpoints.ip_adapter.mixins.COVERED_MIXINS`. A mixin no row calls is
listed and the row is NOT_RUN (skipped, grey) while any is unknown, OK when every one is
driven: a coverage gap, never a failure of the loaders.
"""

from __future__ import annotations

from harness.inputs.checkpoints.ip_adapter.mixins import COVERED_MIXINS
from harness.inputs.families.probe import (
    IP_ADAPTER_MODULES,
    IP_ADAPTER_SUFFIX,
    probe,
    unknown_mixins,
)


def test_unknown_ip_adapter_mixins(compat) -> None:
    """IP-Adapter loader mixins of this release no row drives (details: every one found)."""
    compat.param(kind="inventory")
    found = probe(IP_ADAPTER_MODULES, IP_ADAPTER_SUFFIX)
    unknown = unknown_mixins(found, COVERED_MIXINS)
    compat.detail(
        mixins={name: info.as_dict() for name, info in found.items()},
        unknown=unknown,
        covered={name: COVERED_MIXINS[name] for name in sorted(set(found) & set(COVERED_MIXINS))},
    )
    if unknown:
        compat.not_run(
            f"{len(unknown)} IP-Adapter loader mixin(s) of this release are driven by no row: "
            + ", ".join(unknown)
        )
