"""The loader contract and the InvokeAI cells: registry look-ups, claims per release,
install recipes (torch pinned exactly, the app --no-deps), target cells in the grid."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.loaders.registry import get_spec
from harness.matrix import targets
from harness.report.grid import Cell as GridCell

ROOT = Path(__file__).resolve().parents[2]


def test_built_in_and_module_attribute_specs() -> None:
    invokeai = get_spec("invokeai")
    assert invokeai.naming == "bfl"
    assert invokeai.claim("5.4.0").formats == ("peft", "kohya")
    assert invokeai.claim("5.3.1") is None  # before the first claimed release
    assert get_spec("tests.loaders.fake_flux_loader:SPEC").name == "fake"
    with pytest.raises(KeyError, match="unknown loader"):
        get_spec("no-such-app")
    with pytest.raises(TypeError, match="not a LoaderSpec"):
        get_spec("tests.loaders.fake_flux_loader:PLANT")


def test_spec_and_registry_import_without_torch() -> None:
    """The outer tool reads recipes before any cell venv exists."""
    code = textwrap.dedent(
        """
        import sys
        for blocked in ("torch", "diffusers", "invokeai"):
            sys.modules[blocked] = None
        import harness.loaders.registry, harness.loaders.spec, harness.matrix.targets
        """
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_invokeai_cells_and_recipes() -> None:
    every = targets.target_cells("invokeai", "all")
    versions = [c.version for c in every if c.default_torch]
    assert {"5.4.0", "5.4.1"} <= set(versions)
    assert [c.version for c in targets.target_cells("invokeai", "5.4")] == [
        "5.4.0",
        "5.4.1",
        "5.4.3",
    ]
    cell = targets.target_cells("invokeai", "5.4.1")[0]
    assert cell.name == "invokeai-5.4.1" and cell.lock_file.is_file()
    first, second = targets.install_commands(cell, Path("/venv/bin/python"))
    assert f"torch=={cell.torch.version}" in first  # never an unpinned torch (CUDA wheels)
    assert "--no-deps" in second and "invokeai==5.4.1" in second
    assert not any(line.startswith("torch") for line in cell.lock_file.read_text().splitlines())
    with pytest.raises(Exception, match="unknown invokeai version"):
        targets.target_cells("invokeai", "9.9")


def test_fingerprint_follows_the_recipe() -> None:
    a, b = (targets.target_cells("invokeai", v)[0] for v in ("5.4.0", "5.4.1"))
    assert a.fingerprint() != b.fingerprint()


def test_target_cells_sort_after_diffusers_and_say_whose() -> None:
    cells = [
        GridCell("invokeai-5.4.1", versions={"invokeai": "5.4.1", "diffusers": "absent"}),
        GridCell("cell-0.42.1", versions={"diffusers": "0.42.1"}),
        GridCell("invokeai-5.4.0", status="install_failed"),
        GridCell("cell-0.30.3"),
    ]
    ordered = sorted(cells, key=GridCell.sort_key)
    assert [c.name for c in ordered] == [
        "cell-0.30.3",
        "cell-0.42.1",
        "invokeai-5.4.0",
        "invokeai-5.4.1",
    ]
    assert ordered[3].version_label == "invokeai 5.4.1"
    assert ordered[1].target == "diffusers"


def _full_cells() -> list[targets.TargetCell]:
    return [c for c in targets.target_cells("invokeai", "all") if not c.recipe.no_deps]


def test_full_cells_bring_their_own_torch_pair() -> None:
    """A full cell installs the torch + torchvision its lock was resolved with, both named
    exactly (an unpinned torch pulls CUDA wheels; a torchvision beside another torch fails
    to load its kernels), and the lock pins the same pair."""
    data = targets.TARGETS["invokeai"]()
    pairs = {c["version"]: c["torch_pair"] for c in data["cells"] if "torch_pair" in c}
    full = _full_cells()
    assert full and all(c.version in pairs for c in full)
    for cell in full:
        pair = pairs[cell.version]
        assert cell.torch.version == pair["torch"] and cell.default_torch
        (command,) = targets.install_commands(cell, Path("/venv/bin/python"))
        assert f"torch=={pair['torch']}" in command
        assert f"torchvision=={pair['torchvision']}" in command
        lock = cell.lock_file.read_text().splitlines()
        assert f"torch=={pair['torch']}" in lock and f"torchvision=={pair['torchvision']}" in lock
        assert f"invokeai=={cell.version}" in lock


def test_full_cells_ignore_the_torch_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTER_COMPAT_TORCH", "local,2.5.1")
    every = targets.target_cells("invokeai", "all")
    no_deps = [c for c in every if c.recipe.no_deps]
    assert {c.torch.version.split("+")[0] for c in no_deps} >= {"2.5.1"}  # the axis, twice
    full_names = [c.name for c in every if not c.recipe.no_deps]
    assert full_names == [f"invokeai-{c.version}" for c in _full_cells()]  # once each


def test_pair_torch_from_the_app_wheel_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = _full_cells()[-1]
    version = cell.torch.version
    monkeypatch.delenv(targets.APP_FIND_LINKS_ENV, raising=False)
    assert targets.pair_torch("0.0.1").kind == "index"
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    (tmp_path / f"torch-{version}-{py}-{py}-manylinux_2_28_x86_64.whl").write_bytes(b"")
    monkeypatch.setenv(targets.APP_FIND_LINKS_ENV, str(tmp_path))
    assert targets.pair_torch(version) == targets.cells.TorchSpec("wheel", version, str(tmp_path))
    full = targets.target_cells("invokeai", cell.version)[0]
    (command,) = targets.install_commands(full, Path("/venv/bin/python"))
    assert str(tmp_path) in command
    no_deps = targets.target_cells("invokeai", "5.4.1")[0]
    first, _ = targets.install_commands(no_deps, Path("/venv/bin/python"))
    assert str(tmp_path) not in first  # the diffusers-free cells keep their local torch
