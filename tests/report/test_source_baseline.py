"""Night over night, main's source cell is a new column each time (its name carries the
commit). Compared with the previous night's main cell, only what changed is news; rows
that were already red on main yesterday are not new regressions again."""

from __future__ import annotations

import json
from pathlib import Path

from harness.protocol.records import CellRecord, write_record
from harness.report.write import write_report
from tests.report.source_runs import MAIN, ROWS, check, source_facts, write_records

NEXT = "9999999999999999999999999999999999999999"
NEXT_CELL = f"cell-src-{NEXT[:7]}"


def _tonight(folder: Path, flips: dict[str, str]) -> Path:
    """Last night's records, with main moved to NEXT and some rows' verdicts changed."""
    write_records(folder, with_old_source=False)
    (folder / f"cell-src-{MAIN[:7]}.jsonl").unlink()
    path = folder / f"{NEXT_CELL}.jsonl"
    facts = source_facts(NEXT, "0.43.0.dev0", "2026-11-21T03:00:00+00:00")
    pins = {"peft": "0.21.2", "transformers": "5.21.0", "accelerate": "1.15.0"}
    versions = {"diffusers": "0.43.0.dev0", "torch": "2.13.0+cpu", **pins}
    write_record(path, CellRecord(cell=NEXT_CELL, status="ok", versions=versions, source=facts))
    for check_id, verdicts in ROWS.items():
        verdict = flips.get(check_id, verdicts[2])
        if verdict is not None:
            write_record(path, check(NEXT_CELL, check_id, verdict, "0.43.0.dev0", pins))
    return folder


def test_main_at_a_new_commit_compares_with_main_last_night(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    last = write_report([write_records(tmp_path / "r1", with_old_source=False)],
                        tmp_path / "o1", False, root, None)  # fmt: skip
    tonight = _tonight(
        tmp_path / "r2",
        {
            "lora/formats::load[sd15-peft]": "regression",  # newly red on main tonight
            "lora/formats::load[flux-kohya]": "pass",  # fixed on main tonight
        },
    )
    out = write_report([tonight], tmp_path / "o2", False, root, last)
    changes = json.loads((out / "compat.json").read_text())["changes"]
    new = [(c["check_id"], c["cell"]) for c in changes["new_regressions"]]
    assert new == [("lora/formats::load[sd15-peft]", NEXT_CELL)]  # not the 4 still red
    fixed = [(c["check_id"], c["cell"]) for c in changes["fixes"]]
    assert fixed == [("lora/formats::load[flux-kohya]", NEXT_CELL)]


def test_a_source_cell_of_another_branch_is_still_a_new_column(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    last = write_report([write_records(tmp_path / "r1", with_old_source=False)],
                        tmp_path / "o1", False, root, None)  # fmt: skip
    tonight = _tonight(tmp_path / "r2", {})
    path = tonight / f"{NEXT_CELL}.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[0]["source"]["ref"] = "release-branch"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = write_report([tonight], tmp_path / "o2", False, root, last)
    changes = json.loads((out / "compat.json").read_text())["changes"]
    assert len(changes["new_regressions"]) == 4  # every regression of a new column is news
