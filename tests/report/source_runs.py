"""Synthetic records for the nightly headline: two releases (0.41.0, 0.42.1), a source
cell of main after them and one from before 0.42.1, and bisect records; shared by the
report, triage and filing self-tests (a helper module: test files never import each other).
"""

from __future__ import annotations

from pathlib import Path

from harness.protocol.records import CellRecord, CheckRecord, write_record
from harness.report.grid import KIND_BISECT

MAIN = "0123456789abcdef0123456789abcdef01234567"
OLD_SRC = "fedcba9876543210fedcba9876543210fedcba98"
PLANTED = "c0ffee0000000000000000000000000000000042"
SRC_CELL = f"cell-src-{MAIN[:7]}"
OLD_CELL = f"cell-src-{OLD_SRC[:7]}"
UPSTREAM = "https://github.com/huggingface/diffusers"
PINS = {
    "0.41.0": {"peft": "0.20.0", "transformers": "5.20.0", "accelerate": "1.15.0"},
    "0.42.1": {"peft": "0.21.2", "transformers": "5.21.0", "accelerate": "1.15.0"},
}

#: check id -> verdict in cell-0.41.0, cell-0.42.1, main
ROWS = {
    "lora/formats::load[flux-kohya]": ("pass", "pass", "regression"),  # newly red
    "lora/formats::load[sdxl-kohya]": ("pass", "pass", "regression"),  # newly red, same cause
    "ip_adapter/load::load[sd15-plus]": ("pass", "pass", "regression"),  # newly red, other
    "lora/formats::load[sd15-comfy]": ("pass", "regression", "regression"),  # in the release
    "lora/formats::load[sd15-xlabs]": ("pass", "pass", "unsupported"),
    "lora/formats::load[sd15-dora]": ("pass", "pass", "harness-error"),
    "lora/formats::load[sd15-fal]": ("pass", "pass", "skipped"),
    "lora/formats::load[sd15-none]": ("pass", "pass", None),  # no record on main
    "lora/formats::load[sd15-peft]": ("pass", "pass", "pass"),
}
NEWLY_RED = [
    "lora/formats::load[flux-kohya]",
    "lora/formats::load[sdxl-kohya]",
    "ip_adapter/load::load[sd15-plus]",
]
OBSERVED = {"pass": "OK", "regression": "CRASH", "unsupported": "UNSUPPORTED",
            "harness-error": "HARNESS_ERROR", "skipped": "NOT_RUN"}  # fmt: skip


def source_facts(commit: str, declared: str, date: str, origin: str = UPSTREAM) -> dict[str, str]:
    return {
        "commit": commit,
        "date": date,
        "subject": "Merge the nightly's tip (#5000)",
        "declared_version": declared,
        "origin": origin,
        "ref": "main",
        "dirty": "false",
        "companions_of": "0.42.1",
    }


def check(cell: str, check_id: str, verdict: str, diffusers: str, pins: dict) -> CheckRecord:
    suite = check_id.split("/")[0]
    red = verdict == "regression"
    return CheckRecord(
        check_id=check_id,
        suite=suite,
        expected=["OK"],
        observed=OBSERVED[verdict],
        verdict=verdict,
        cell=cell,
        nodeid=f"suites/{suite}/test_x.py::test_{check_id.split('::')[1]}",
        exc_type=("KeyError" if "kohya" in check_id else "ValueError") if red else None,
        message="'double_blocks.0' missing" if red else "",
        versions={"diffusers": diffusers, "torch": "2.13.0+cpu", **pins},
    )


def write_records(
    folder: Path, with_old_source: bool = True, main: str = MAIN, origin: str = UPSTREAM
) -> Path:
    """Records of the four cells into ``folder``; ``main``: the source cell's commit and
    ``origin`` where it came from (a test with a real clone passes its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    src_cell = f"cell-src-{main[:7]}"
    columns = [
        ("cell-0.41.0", "0.41.0", PINS["0.41.0"], {}),
        ("cell-0.42.1", "0.42.1", PINS["0.42.1"], {}),
        (src_cell, "0.43.0.dev0", PINS["0.42.1"],
         source_facts(main, "0.43.0.dev0", "2026-11-20T03:00:00+00:00", origin)),
    ]  # fmt: skip
    for index, (cell, diffusers, pins, facts) in enumerate(columns):
        path = folder / f"{cell}.jsonl"
        versions = {"diffusers": diffusers, "torch": "2.13.0+cpu", **pins}
        write_record(path, CellRecord(cell=cell, status="ok", versions=versions, source=facts))
        for check_id, verdicts in ROWS.items():
            if verdicts[index] is not None:
                write_record(path, check(cell, check_id, verdicts[index], diffusers, pins))
    if with_old_source:  # a commit from before 0.42.1: not "main vs the newest release"
        path = folder / f"{OLD_CELL}.jsonl"
        facts = source_facts(OLD_SRC, "0.42.0.dev0", "2026-10-01T03:00:00+00:00")
        write_record(path, CellRecord(cell=OLD_CELL, status="ok", source=facts,
                                      versions={"diffusers": "0.42.0.dev0"}))  # fmt: skip
        for check_id in ROWS:
            write_record(path, check(OLD_CELL, check_id, "regression", "0.42.0.dev0", {}))
    return folder


def bisect_record(check_id: str, **kw: object) -> dict:
    """A finished bisect naming PLANTED (``kw`` overrides any field)."""
    record = {
        "kind": KIND_BISECT,
        "schema": 1,
        "check_id": check_id,
        "source_cell": SRC_CELL,
        "source_commit": MAIN,
        "release": "0.42.1",
        "good_ref": "v0.42.1",
        "status": "found",
        "first_bad": {
            "sha": PLANTED,
            "date": "2026-11-02T12:00:00+00:00",
            "subject": "[LoRA] simplify kohya conversion (#4242)",
            "pr": "4242",
            "files": ["src/diffusers/loaders/lora_conversion_utils.py"],
        },
        "steps": 6,
        "seconds": 240.0,
    }
    record.update(kw)
    return record
