"""The report's Reach section: a module x cell table of line / branch coverage linking to
the unreached functions, shown only for summaries of the run the report describes."""

from __future__ import annotations

import json
from pathlib import Path

from harness import cli
from harness.cell.coverage import ModuleReach, totals
from harness.protocol.records import CellRecord, write_record
from harness.report.coverage import slug
from harness.report.write import write_report
from tests.report.report_runs import GREEN, record

STARTED = {"0.26.3": 1000.25, "0.42.1": 2000.5}


def reach(module: str, covered: int, total: int, unreached: list[str], target: bool) -> dict:
    functions = [
        {"name": name, "start": 10 * i + 1, "end": 10 * i + 9, "statements": 8 - i}
        for i, name in enumerate(unreached)
    ]
    return ModuleReach(
        module=module,
        path=f"/site-packages/{module}",
        lines_covered=covered,
        lines_total=total,
        branches_covered=covered // 2,
        branches_total=total // 2,
        target=target,
        unreached_functions=functions,
        unreached_branches=[{"from": 3, "to": "exit", "function": "f"}],
    ).to_dict()


def summary(version: str, started_at: float) -> dict:
    modules = [
        reach("diffusers/loaders/lora_pipeline.py", 90, 100, ["FluxMixin.unfuse_lora"], True),
        reach("diffusers/loaders/single_file.py", 1, 4, ["from_single_file"], False),
        reach("peft/tuners/lora/layer.py", 30, 60, ["Linear.merge"], False),
    ]
    objects = [ModuleReach(**{k: v for k, v in m.items() if "percent" not in k}) for m in modules]
    return {
        "format": 1,
        "kind": "coverage",
        "cell": f"cell-{version}",
        "started_at": started_at,
        "versions": {"diffusers": version, "peft": "0.13.2"},
        "target_percent": 85.0,
        "totals": totals(objects),
        "target_totals": totals([o for o in objects if o.target]),
        "modules": modules,
    }


def write_reports(root: Path, coverage_started: dict[str, float]) -> Path:
    results = root / "results"
    for version, started in STARTED.items():
        path = results / f"cell-{version}.jsonl"
        write_record(path, record(version, GREEN))
        write_record(path, CellRecord(cell=f"cell-{version}", status="ok", started_at=started))
    (root / "coverage").mkdir()
    for version, started in coverage_started.items():
        text = json.dumps(summary(version, started))
        (root / "coverage" / f"cell-{version}.json").write_text(text)
    return results


def test_reach_table_links_each_module_to_its_unreached_functions(tmp_path: Path) -> None:
    results = write_reports(tmp_path / "reports", STARTED)
    out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    md = (out / "compat.md").read_text()
    page = (out / "compat.html").read_text()
    anchor = slug("cell-0.42.1", "diffusers/loaders/lora_pipeline.py")
    assert "## Reach" in md
    row = next(line for line in md.splitlines() if "lora\\_pipeline.py" in line)
    assert f"](#{anchor})" in row and row.count("90.0 / 90.0") == 2  # one per cell
    assert f'<a id="{anchor}"></a>' in md and "`FluxMixin.unfuse_lora`" in md
    assert "| peft/tuners/lora/layer.py | 50.0 / 50.0 |" in md  # peft: one row per folder
    assert f'href="#{anchor}"' in page and f'id="{anchor}"' in page
    assert page.index('id="reach"') < page.index("</body>")
    assert "FluxMixin.unfuse_lora" in page
    assert (out / "coverage" / "cell-0.42.1.json").is_file()

    # rebuilt from the report's own folder: the archived summaries still match their cells
    again = write_report([out / "results"], tmp_path / "again", update_latest=False, baseline=None)
    assert "## Reach" in (again / "compat.md").read_text()


def test_summary_of_an_earlier_run_is_not_shown(tmp_path: Path) -> None:
    stale = {"0.26.3": STARTED["0.26.3"], "0.42.1": STARTED["0.42.1"] - 600}
    results = write_reports(tmp_path / "reports", stale)
    out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    md = (out / "compat.md").read_text()
    assert "earlier run" in md
    header = next(line for line in md.splitlines() if line.startswith("| module |"))
    assert header == "| module | cell-0.26.3 |"  # the matching cell only
    assert not (out / "coverage" / "cell-0.42.1.json").exists()


def test_a_failed_measurement_is_named(tmp_path: Path) -> None:
    results = write_reports(tmp_path / "reports", {})
    failed = {"kind": "coverage", "cell": "cell-0.42.1", "modules": [], "error": "KeyError: 'x'"}
    failed["started_at"] = STARTED["0.42.1"]
    (tmp_path / "reports" / "coverage" / "cell-0.42.1.json").write_text(json.dumps(failed))
    out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    assert (
        "cell-0.42.1: measuring coverage failed: KeyError: 'x'" in (out / "compat.md").read_text()
    )


def test_no_summaries_no_section(tmp_path: Path) -> None:
    results = write_reports(tmp_path / "reports", {})
    out = write_report([results], tmp_path / "out", update_latest=False, baseline=None)
    assert "Reach" not in (out / "compat.md").read_text()
    assert 'id="reach"' not in (out / "compat.html").read_text()


def test_coverage_command_prints_one_cell(tmp_path: Path, capsys) -> None:
    path = tmp_path / "cell-0.42.1.json"
    path.write_text(json.dumps(summary("0.42.1", 1.0)))
    assert cli.main(["coverage", str(path), "--branches"]) == 0
    text = capsys.readouterr().out
    assert "* diffusers/loaders/lora_pipeline.py" in text and "90/100" in text
    assert "lora_pipeline.py:1-9  FluxMixin.unfuse_lora" in text
    assert "lora_pipeline.py:3->exit" in text
    assert cli.main(["coverage", str(tmp_path / "missing.json")]) == 2


def test_markdown_drops_the_lists_before_passing_githubs_limit(tmp_path: Path) -> None:
    from harness.report.coverage import MD_LIMIT, attach, find_summaries, markdown_section
    from harness.report.grid import load_model

    model = load_model([write_reports(tmp_path / "reports", STARTED)])
    summaries, _ = find_summaries(model)
    room = len(markdown_section(summaries, with_lists=False)) + 10
    assert len(markdown_section(summaries)) > room  # the lists do not fit in `tight`
    roomy, tight = {"compat.md": "x\n"}, {"compat.md": "x" * (MD_LIMIT - room) + "\n"}
    attach(model, roomy, {})
    attach(model, tight, {})
    assert "### Unreached functions" in roomy["compat.md"]
    assert "## Reach" in tight["compat.md"] and "### Unreached" not in tight["compat.md"]
    assert len(tight["compat.md"]) <= MD_LIMIT
