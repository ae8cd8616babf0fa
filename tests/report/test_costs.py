"""The cost section: seconds per suite, family and cell from the records, overhead as wall
minus install, import and checks, and the change from the baseline run flagged."""

from __future__ import annotations

from typing import Any

from harness.report.costs import costs_of, html, markdown
from harness.report.grid import build_model


def _check(cell: str, check_id: str, seconds: float) -> dict[str, Any]:
    return {
        "kind": "check",
        "cell": cell,
        "check_id": check_id,
        "suite": check_id.split("/", 1)[0],
        "verdict": "pass",
        "observed": "OK",
        "expected": ["OK"],
        "duration_s": seconds,
    }


def _cell(cell: str, wall: float, imp: float) -> dict[str, Any]:
    return {
        "kind": "cell",
        "cell": cell,
        "status": "ok",
        "duration_s": wall,
        "phase_seconds": {"install": 1.0, "import": imp},
        "versions": {"diffusers": cell.removeprefix("cell-")},
    }


def _model():
    return build_model(
        [
            _cell("cell-0.41.0", 30.0, 8.0),
            _cell("cell-0.42.1", 40.0, 9.0),
            _check("cell-0.41.0", "lora/formats::load[a]", 5.0),
            _check("cell-0.41.0", "lora/formats::load[b]", 7.0),
            _check("cell-0.41.0", "drift/drift::scan", 2.0),
            _check("cell-0.42.1", "lora/formats::load[a]", 6.0),
            _check("cell-0.42.1", "lora/formats::load[b]", 20.0),
            _check("cell-0.42.1", "drift/drift::scan", 1.0),
        ]
    )


def test_sums_per_suite_family_and_cell_and_the_overhead() -> None:
    costs = costs_of(_model())
    assert {s.suite: s.seconds for s in costs.suites} == {"lora": 38.0, "drift": 3.0}
    load = costs.families[0]
    assert (load.family, load.rows, load.seconds) == ("lora/formats::load", 4, 38.0)
    assert load.slowest == "lora/formats::load[b] in cell-0.42.1" and load.slowest_s == 20.0
    by_cell = {c.cell: c for c in costs.cells}
    assert by_cell["cell-0.41.0"].checks_s == 14.0
    assert by_cell["cell-0.41.0"].overhead_s == 30.0 - 1.0 - 8.0 - 14.0
    assert by_cell["cell-0.42.1"].overhead_s == 40.0 - 1.0 - 9.0 - 27.0


def test_growth_from_the_baseline_is_flagged_and_rendered() -> None:
    baseline = {"suites": {"lora": 20.0, "drift": 3.0}, "families": {"lora/formats::load": 20.0}}
    costs = costs_of(_model(), baseline, baseline_run="20261202-000000")
    lora = next(s for s in costs.suites if s.suite == "lora")
    drift = next(s for s in costs.suites if s.suite == "drift")
    assert lora.flagged and round(lora.growth, 2) == 0.9
    assert not drift.flagged  # unchanged
    md = "\n".join(markdown(costs))
    assert "| lora | 4 | 38.0 | +90% ⚠ |" in md
    assert "vs 20261202-000000" in md
    page = html(costs)
    assert "+90% ⚠" in page and "<details id='costs'>" in page
    # round trip: this run's numbers are what the next report compares with
    again = costs_of(_model(), costs.to_dict(), baseline_run="x")
    assert all(s.growth == 0 for s in again.suites)


def test_no_durations_no_section() -> None:
    model = build_model([_check("cell-0.42.1", "smoke/pipelines::run[sd15]", 0.0)])
    assert markdown(costs_of(model)) == [] and html(costs_of(model)) == ""


def test_the_report_carries_the_section_and_the_next_one_compares(tmp_path) -> None:
    """Written report: `## Cost` in compat.md, `costs` in compat.json, and a second report
    with the first as baseline shows the change."""
    import json

    from harness.report.write import write_report

    def run(folder, slow: float):
        folder.mkdir(parents=True)
        recs = [
            _cell("cell-0.42.1", 40.0, 9.0),
            _check("cell-0.42.1", "lora/formats::load[a]", slow),
        ]
        (folder / "cell-0.42.1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        return folder

    root = tmp_path / "reports"
    first = write_report([run(tmp_path / "r1", 10.0)], tmp_path / "o1", False, root, None)
    doc = json.loads((first / "compat.json").read_text())
    assert doc["costs"]["suites"] == {"lora": 10.0}
    assert "## Cost" in (first / "compat.md").read_text()
    second = write_report([run(tmp_path / "r2", 30.0)], tmp_path / "o2", False, root, first)
    assert "| lora | 1 | 30.0 | +200% ⚠ |" in (second / "compat.md").read_text()
    assert "+200% ⚠" in (second / "compat.html").read_text()
