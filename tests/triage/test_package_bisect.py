"""``bisect --package``: a faked package index and step runner (offline). The search must
name the planted first bad release whichever it is, step around a release that does not
install, leave the venv at the cell's pin, and bad input must be one clear line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version

from harness.cli import main
from harness.matrix import cellenv, cells
from harness.triage import package_bisect
from harness.triage.bisect import SKIP

CHECK_ID = "lora/formats::load[sd15-peft-complete]"
CELL = "0.38.0"
PIN = package_bisect.lock_pins(cells.LOCK_DIR / f"{CELL}.txt")["peft"]
#: Final releases the fake index lists, plus a pre-release that must never be a candidate.
RELEASES = ["0.17.0", "0.17.1", "0.18.0", "0.18.1", "0.18.2", "0.19.0rc1", "0.19.0", PIN]
UNINSTALLABLE = "0.18.1"


def fake_index(versions: list[str]) -> dict:
    day = {v: f"2026-0{1 + i % 9}-{10 + i:02d}T08:00:00.000000Z" for i, v in enumerate(versions)}
    return {
        "releases": {
            v: [{"upload_time_iso_8601": day[v], "yanked": False, "filename": f"peft-{v}.whl"}]
            for v in versions
        }
    }


@pytest.fixture
def fake_bench(monkeypatch):
    """A bench whose index, installs and row runs are fakes; returns (installed, runs)."""
    installed: dict[str, str] = {"peft": PIN}
    runs: list[str] = []
    monkeypatch.setattr(
        package_bisect, "pypi_json", lambda name, offline=False: fake_index(RELEASES)
    )
    monkeypatch.setattr(package_bisect.PackageBench, "ensure_venv", lambda self: None)

    def install(self, name: str, version: str) -> tuple[bool, str]:
        if version == UNINSTALLABLE:
            return False, f"{name}=={version} has no wheel for this platform"
        installed[name] = version
        return True, ""

    monkeypatch.setattr(package_bisect.PackageBench, "install", install)
    return installed, runs


def plant(monkeypatch, runs: list[str], installed: dict[str, str], first_bad: str) -> None:
    def run_row(self, version: str) -> tuple[str, str, str]:
        assert installed["peft"] == version  # the row runs over the swapped package
        runs.append(version)
        if Version(version) >= Version(first_bad):
            return "regression", "CRASH", "list index out of range"
        return "pass", "OK", ""

    monkeypatch.setattr(package_bisect.PackageBench, "run_row", run_row)


@pytest.mark.parametrize("first_bad", ["0.17.1", "0.18.2", "0.19.0", PIN])
def test_finds_the_planted_first_bad_release(fake_bench, monkeypatch, first_bad) -> None:
    installed, runs = fake_bench
    plant(monkeypatch, runs, installed, first_bad)
    result = package_bisect.run_package_bisect(
        CHECK_ID, "n", "PEFT", "0.17.0", PIN, cell=CELL, log=lambda line: None
    )
    assert result.error is None
    assert result.first_bad == first_bad
    assert Version(result.last_good) < Version(first_bad)
    assert set(result.skipped_between) <= {UNINSTALLABLE}
    assert "0.19.0rc1" not in result.versions and "0.19.0rc1" not in runs
    assert len(runs) == len(set(runs)) < len(result.versions)  # a search, not a sweep
    assert installed["peft"] == PIN  # the venv is left as the cell pins it
    summary = "\n".join(result.lines())
    date = package_bisect.release_dates(fake_index(RELEASES))[first_bad]
    assert f"first bad peft release: {first_bad} ({date})" in summary


def test_an_uninstallable_release_is_skipped_and_listed(fake_bench, monkeypatch) -> None:
    installed, runs = fake_bench
    plant(monkeypatch, runs, installed, "0.19.0")
    result = package_bisect.run_package_bisect(
        CHECK_ID, "n", "peft", "0.17.0", PIN, cell=CELL, log=lambda line: None
    )
    assert result.first_bad == "0.19.0" and result.last_good == "0.18.2"
    skipped = [s for s in result.steps if s.kind == SKIP]
    assert [s.version for s in skipped] == [UNINSTALLABLE]  # the search tried it ...
    assert UNINSTALLABLE not in runs  # ... and never ran the row over the old package
    summary = "\n".join(result.lines())
    assert f"peft=={UNINSTALLABLE} install-failed: peft=={UNINSTALLABLE} has no wheel" in summary


def test_ends_that_do_not_hold_stop_the_search(fake_bench, monkeypatch) -> None:
    installed, runs = fake_bench
    plant(monkeypatch, runs, installed, "0.10.0")  # red everywhere: the package is not it
    result = package_bisect.run_package_bisect(
        CHECK_ID, "n", "peft", "0.17.0", PIN, cell=CELL, log=lambda line: None
    )
    assert result.first_bad is None
    assert result.error == "--good 0.17.0 does not pass: regression (CRASH)"


def test_a_step_swaps_only_the_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(cellenv.ENVDIR_ENV, str(tmp_path))
    calls: list[list[str]] = []
    monkeypatch.setattr(
        package_bisect, "uv_pip_install", lambda venv, args: calls.append(args) or (True, "")
    )
    bench = package_bisect.PackageBench(CHECK_ID, "n", "peft", CELL, 60.0, {})
    bench.venv.mkdir(parents=True)
    assert bench.install("peft", "0.18.0") == (True, "")
    args = calls[0]
    assert args[:4] == ["--no-deps", "--reinstall-package", "peft", "peft==0.18.0"]
    assert "-r" not in args and not any(a.startswith("torch==") for a in args)
    # a package an earlier search moved is put back to the cell's pin before this one
    (bench.venv / "bin").mkdir()
    (bench.venv / "bin" / "python").touch()
    cellenv.write_stamp(bench.venv, bench.cell)
    (bench.venv / package_bisect.SWAP_FILE).write_text(json.dumps({"transformers": "5.3.0"}))
    package_bisect.PackageBench(CHECK_ID, "n", "peft", CELL, 60.0, {}).ensure_venv()
    pinned = package_bisect.lock_pins(cells.LOCK_DIR / f"{CELL}.txt")["transformers"]
    assert f"transformers=={pinned}" in calls[-1]


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input_is_one_line_each(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(
        package_bisect, "pypi_json", lambda name, offline=False: fake_index(RELEASES)
    )
    base = ["bisect", CHECK_ID, "--report", str(tmp_path / "none.json"), "--cell", CELL]
    cases = {
        ("--package", "nope"): "--package nope: not pinned in cell 0.38.0's lock",
        ("--package", "torch"): "torch is the cells' axis",
        ("--package", "peft", "--good", PIN, "--bad", "0.18.0"): f"--good {PIN} must be older",
        ("--package", "peft", "--good", PIN, "--bad", PIN): f"--good {PIN} must be older",
        ("--package", "peft", "--good", "0.19.0", "--bad", PIN): "peft has no final release "
        f"between 0.19.0 and {PIN}: nothing to bisect",
        ("--package", "peft", "--good", "0.18.0"): "give both --good and --bad, or neither",
        ("--package", "peft", "--cell", "0.99.0"): "--cell 0.99.0: not a matrix release",
    }
    for extra, message in cases.items():
        assert main([*base, *extra]) == 2, extra
        assert message in error_line(capsys), extra
    assert main(["bisect", CHECK_ID, "--report", str(tmp_path / "none.json"), "--package",
                 "peft"]) == 2  # fmt: skip
    assert "the report shows no first regression" in error_line(capsys)
    assert main([*base, "--good", "0.30.3", "--bad", "0.31.0"]) == 2
    assert "--cell goes with --package" in error_line(capsys)


def test_default_ends_are_the_pins_of_the_two_cells() -> None:
    older = cells.known_versions()[cells.known_versions().index(CELL) - 1]
    want = package_bisect.lock_pins(cells.LOCK_DIR / f"{older}.txt")["peft"]
    assert package_bisect.default_ends(CELL, "peft") == (want, PIN)


def test_lock_pins_parse_names_canonically(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\nHuggingFace_Hub==1.13.0\n    # via peft\npeft==0.19.1\n")
    assert package_bisect.lock_pins(lock) == {"huggingface-hub": "1.13.0", "peft": "0.19.1"}


# -- --blame ---------------------------------------------------------------------------------
PREVIOUS = cells.known_versions()[cells.known_versions().index(CELL) - 1]
OLD_PINS = package_bisect.lock_pins(cells.LOCK_DIR / f"{PREVIOUS}.txt")
NEW_PINS = package_bisect.lock_pins(cells.LOCK_DIR / f"{CELL}.txt")


@pytest.fixture
def blame_bench(monkeypatch):
    """A venv at the bad cell's pins whose installs are faked; returns (installed, runs).
    A run records which packages were off the bad cell's pins while the row ran."""
    installed = dict(NEW_PINS)
    runs: list[dict[str, str]] = []
    monkeypatch.setattr(package_bisect.PackageBench, "ensure_venv", lambda self: None)
    monkeypatch.setattr(package_bisect.PackageBench, "restore_pins", lambda self, keep="": None)

    def install(self, name: str, version: str) -> tuple[bool, str]:
        installed[name] = version
        return True, ""

    monkeypatch.setattr(package_bisect.PackageBench, "install", install)
    return installed, runs


def plant_needs(monkeypatch, installed, runs, needs: set[str]) -> None:
    """The row is green only when every package in ``needs`` is at the older cell's pin."""

    def run_row(self, version: str) -> tuple[str, str, str]:
        moved = {n: v for n, v in installed.items() if v != NEW_PINS[n]}
        runs.append(moved)
        if all(installed[n] == OLD_PINS[n] for n in needs):
            return "pass", "OK", ""
        return "regression", "CRASH", "planted"

    monkeypatch.setattr(package_bisect.PackageBench, "run_row", run_row)


def blame() -> package_bisect.Blame:
    return package_bisect.run_blame(CHECK_ID, "n", cell=CELL, log=lambda line: None)


def test_changed_pins_are_the_lock_difference_diffusers_first() -> None:
    previous, changes = package_bisect.changed_pins(CELL)
    assert previous == PREVIOUS
    want = {n for n in set(OLD_PINS) | set(NEW_PINS) if OLD_PINS.get(n) != NEW_PINS.get(n)}
    assert {c.package for c in changes} == want and "diffusers" in want
    assert changes[0] == package_bisect.PinChange("diffusers", PREVIOUS, CELL)
    assert all(OLD_PINS.get(c.package) == c.good and NEW_PINS.get(c.package) == c.bad
               for c in changes)  # fmt: skip


@pytest.mark.parametrize("planted", ["transformers", "peft", "diffusers"])
def test_the_planted_package_is_blamed(blame_bench, monkeypatch, planted) -> None:
    installed, runs = blame_bench
    plant_needs(monkeypatch, installed, runs, {planted})
    result = blame()
    assert result.error is None and result.baseline.verdict == "regression"
    assert result.blamed == [planted]
    _, changes = package_bisect.changed_pins(CELL)
    assert runs[0] == {}  # the first run is over the bad cell's pins as they are
    assert len(runs) == 1 + len(changes)
    # every other run has exactly one package moved, to the older cell's pin
    assert [set(r.items()) for r in runs[1:]] == [{(c.package, c.good)} for c in changes]
    assert installed == NEW_PINS  # the venv is left as the cell pins it
    summary = "\n".join(result.lines())
    assert f"blame: {planted} (alone" in summary
    assert "none alone" not in summary


def test_an_interaction_of_two_packages_blames_none_alone(blame_bench, monkeypatch) -> None:
    installed, runs = blame_bench
    plant_needs(monkeypatch, installed, runs, {"transformers", "peft"})
    result = blame()
    assert result.error is None and result.blamed == []
    assert all(step.verdict == "regression" for step in result.steps.values())
    assert installed == NEW_PINS
    assert "blame: none alone" in "\n".join(result.lines())


def test_a_row_green_over_the_bad_pins_has_nothing_to_blame(blame_bench, monkeypatch) -> None:
    installed, runs = blame_bench
    plant_needs(monkeypatch, installed, runs, set())  # green everywhere
    result = blame()
    assert result.blamed == [] and result.steps == {} and len(runs) == 1
    assert "not red: nothing to blame" in result.error


def test_blame_bad_input_is_one_line_each(tmp_path, capsys) -> None:
    base = ["bisect", CHECK_ID, "--report", str(tmp_path / "none.json"), "--blame"]
    cases = {
        ("--package", "peft"): "--blame takes only CHECK and --cell, not --package",
        ("--repo", str(tmp_path)): "--blame takes only CHECK and --cell, not --repo",
        ("--good", "0.37.1", "--bad", "0.38.0"): "not --good, --bad",
        ("--cell", cells.known_versions()[0]): "is the oldest: there is no previous cell",
        ("--cell", "0.99.0"): "--cell 0.99.0: not a matrix release",
        (): "the report shows no first regression",
    }
    for extra, message in cases.items():
        assert main([*base, *extra]) == 2, extra
        assert message in error_line(capsys), extra
