"""Matrix resolution: cell selection, the torch axis and the install recipe."""

import shutil

import pytest

from harness.errors import UsageError
from harness.matrix import cellenv, cells, pins

VERSIONS = cells.known_versions()


def test_seventeen_cells_latest_patch_of_each_minor():
    assert len(VERSIONS) == 17
    minors = [tuple(int(x) for x in v.split(".")[:2]) for v in VERSIONS]
    assert minors == [(0, m) for m in range(26, 43)]
    for cell in cells.all_cells("system" if cells.local_torch_wheel() is None else "local"):
        assert cell.lock_file.is_file(), f"missing committed lock for {cell.diffusers}"
        assert f"diffusers=={cell.diffusers}" in cell.lock_file.read_text()
        assert "\ntorch==" not in cell.lock_file.read_text(), (
            "torch is the torch axis, never locked"
        )


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("default", ["0.26.3", "0.33.1", "0.42.1"]),
        ("0.30", ["0.30.3"]),
        ("0.30.3,0.26", ["0.30.3", "0.26.3"]),
        ("0.28-0.31", ["0.28.2", "0.29.2", "0.30.3", "0.31.0"]),
    ],
)
def test_select_cells(selector, expected):
    assert [c.diffusers for c in cells.select_cells(selector, "system")] == expected


def test_all_selects_every_cell():
    assert len(cells.select_cells("all", "system")) == 17


@pytest.mark.parametrize("bad", ["0.99", "1.2.3", "latest-ish"])
def test_unknown_version_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="unknown diffusers version"):
        cells.select_cells(bad, "system")


def test_local_torch_wheel_found_in_find_links(tmp_path, monkeypatch):
    import sys

    py = f"{sys.version_info.major}{sys.version_info.minor}"
    for version in ("2.5.1", "2.13.0+cpu"):
        (tmp_path / f"torch-{version}-cp{py}-cp{py}-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (tmp_path / "torch-9.9.9-cp27-cp27-manylinux_2_28_x86_64.whl").write_bytes(b"")  # other Python
    monkeypatch.setenv(cells.FIND_LINKS_ENV, str(tmp_path))
    spec = cells.resolve_torch("local")
    assert (spec.kind, spec.version, spec.find_links) == ("wheel", "2.13.0+cpu", str(tmp_path))
    assert cells.resolve_torch("2.5.1").kind == "wheel"
    assert cells.resolve_torch("2.4.0").kind == "index"


def test_bad_torch_value_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown torch axis value"):
        cells.resolve_torch("newest please")


def test_second_torch_gets_its_own_cell_names():
    expanded = cells.all_cells("system,2.5.1")
    names = {c.name for c in expanded}
    assert "cell-0.26.3" in names and "cell-0.26.3-torch2.5.1" in names
    assert len(expanded) == 34


def test_install_args_online_offline_and_system(tmp_path):
    cell = cells.Cell(
        "0.30.3", "2024-09-17T05:40:41Z", cells.TorchSpec("wheel", "2.13.0+cpu", "/opt/w")
    )
    online = cellenv.install_args(cell, offline_dir="")
    assert online[:2] == ["-r", str(cell.lock_file)] and "torch==2.13.0+cpu" in online
    assert "--find-links" in online and "/opt/w" in online and "--no-index" not in online
    offline = cellenv.install_args(cell, offline_dir=str(tmp_path))
    assert offline[-3:] == ["--no-index", "--find-links", str(tmp_path)]
    system = cells.Cell("0.30.3", "2024-09-17T05:40:41Z", cells.TorchSpec("system", "2.11.0+cu130"))
    assert not any(a.startswith("torch==") for a in cellenv.install_args(system, offline_dir=""))
    assert cellenv.venv_params(system) == ["--system-site-packages"]


def test_fingerprint_follows_lock_and_torch():
    a = cells.Cell("0.30.3", "x", cells.TorchSpec("wheel", "2.13.0+cpu"))
    b = cells.Cell("0.30.3", "x", cells.TorchSpec("index", "2.5.1"))
    c = cells.Cell("0.31.0", "x", cells.TorchSpec("wheel", "2.13.0+cpu"))
    assert len({a.fingerprint(), b.fingerprint(), c.fingerprint()}) == 3


def test_cutoff_is_one_day_after_release():
    assert pins.cutoff_for("2024-02-13T08:36:07Z") == "2024-02-14T08:36:07Z"


def test_compile_command_dates_companions_but_not_torch(tmp_path):
    cell = cells.select_cells("0.26", "system")[0]
    cmd = pins.compile_command(cell, cell.torch, tmp_path / "o.txt", tmp_path / "in.txt")
    joined = " ".join(cmd)
    assert "--exclude-newer 2024-02-14T08:36:07Z" in joined
    assert "--exclude-newer-package torch=" in joined and "--no-emit-package torch" in joined


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv not installed")
def test_refresh_reproduces_the_committed_pins(tmp_path, monkeypatch):
    """Resolving 0.26.3 again (needs the package index) gives the committed companions."""
    cell = cells.select_cells("0.26", "local" if cells.local_torch_wheel() else "system")[0]
    committed = cell.lock_file.read_text()
    monkeypatch.setattr(pins, "LOCK_DIR", tmp_path)
    fresh_cell = cells.Cell(cell.diffusers, cell.released, cell.torch)
    monkeypatch.setattr(
        cells.Cell, "lock_file", property(lambda self: tmp_path / f"{self.diffusers}.txt")
    )
    written = pins.refresh([fresh_cell], log=lambda *_: None)
    assert written, "resolution failed"
    for pin in (
        "diffusers==0.26.3",
        "transformers==4.37.2",
        "huggingface-hub==0.20.3",
        "peft==0.8.2",
    ):
        assert pin in committed and pin in written[0].read_text()


def test_driver_runs_a_current_venv_directly_and_anything_else_through_nox(tmp_path, monkeypatch):
    """A stamped, current venv skips the nox hop (saves a start-up per cell); a missing
    or stale one goes through nox, which installs it."""
    from harness.matrix import runner

    monkeypatch.setenv(cellenv.ENVDIR_ENV, str(tmp_path))
    cell = cells.select_cells("0.30.3")[0]
    venv = cellenv.venv_path(cell)
    assert venv == tmp_path / "cell-0-30-3"
    env: dict[str, str] = {"PATH": "/usr/bin"}
    assert runner.cell_command(cell, ["-k", "x"], env)[1:4] == ["-m", "nox", "-f"]
    (venv / "bin").mkdir(parents=True)
    cellenv.cell_python(cell).write_text("")
    cellenv.write_stamp(venv, cell)
    command = runner.cell_command(cell, ["-k", "x"], env)
    assert command[:3] == [str(venv / "bin" / "python"), "-m", "harness.cell.run"]
    assert command[-3:] == ["--", "-k", "x"]
    assert env["VIRTUAL_ENV"] == str(venv) and env["PATH"].startswith(str(venv / "bin"))
    (venv / cellenv.STAMP_NAME).write_text("stale\n")
    assert runner.cell_command(cell, [], {})[1:3] == ["-m", "nox"]
