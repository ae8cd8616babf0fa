"""Row order of every report: suites by what users feel, adapter rows before the rest.

Why a table of its own: a maintainer deciding "can I bump diffusers?" reads LoRA first,
then IP-Adapter, lifecycle (hotswap, unload...), pipelines sharing components, robustness
against bad files and finally static API drift. Within the drift suite, rows about code
outside adapter loading (every internal call site, calls into companion packages) are
context, not adapter findings: they sort below the adapter rows and carry a label.
"""

from __future__ import annotations

from typing import Any

#: Suites in reading order; suites not listed follow, alphabetically.
SUITE_ORDER: tuple[str, ...] = (
    "lora",
    "families",
    "ip_adapter",
    "lifecycle",
    "shared",
    "robustness",
    "drift",
    "smoke",
)

#: Per suite: operations (``suite/module::function``) about code outside adapter loading.
OUTSIDE_ADAPTER_LOADING: dict[str, frozenset[str]] = {
    "drift": frozenset(
        {
            "drift/drift::callsites_internal",
            "drift/drift::callsites_cross_package",
        }
    ),
}

#: Label of such rows in the grids and the summary.
OUTSIDE_LABEL = "outside adapter loading"


def suite_rank(suite: str) -> tuple[int, str]:
    try:
        return (SUITE_ORDER.index(suite), suite)
    except ValueError:
        return (len(SUITE_ORDER), suite)


def outside_adapter_loading(suite: str, check_id: str) -> bool:
    """True for a row about code outside adapter loading (sorted and labelled apart)."""
    return check_id.split("[", 1)[0] in OUTSIDE_ADAPTER_LOADING.get(suite, frozenset())


def row_sort_key(row: Any) -> tuple[tuple[int, str], bool, str]:
    """Sort key of a grid row (anything with ``suite`` and ``check_id``)."""
    return (suite_rank(row.suite), outside_adapter_loading(row.suite, row.check_id), row.check_id)
