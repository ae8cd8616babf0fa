"""The package layout is the architecture: these rules keep it that way.

Imports are read with ``ast`` (function-level imports included), so a lazy import that
crosses a boundary fails here just like a top-level one. The runtimes:

* outer code (``matrix``, ``report``, ``triage``, ``commands``) runs before any cell venv
  exists, so it must import without torch;
* in-cell code (``protocol``, ``cell``, ``inputs``, ``oracles``, ``drivers``, ``scenarios``,
  ``drift``, ``byo``, ``convert``, ``loaders``) never reaches back into the outer code;
* ``oracles`` judge the library, so they never import it (no diffusers, no peft);
* ``protocol`` is the stdlib vocabulary every side shares.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"

OUTER = ("matrix", "report", "triage", "commands")
IN_CELL = (
    "protocol",
    "cell",
    "inputs",
    "oracles",
    "drivers",
    "scenarios",
    "drift",
    "byo",
    "convert",
    "loaders",
)
TORCH_FREE = ("protocol", "matrix", "report", "triage", "commands")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, wherever the import statement stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules_of(package: str) -> list[Path]:
    return sorted((HARNESS / package).rglob("*.py"))


def violations(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for package in packages:
        for path in modules_of(package):
            for name in sorted(imported(path)):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def test_every_layer_package_exists() -> None:
    for package in (*OUTER, *IN_CELL):
        assert (HARNESS / package / "__init__.py").is_file(), package


def test_in_cell_code_never_imports_outer_code() -> None:
    forbidden = tuple(f"harness.{p}" for p in OUTER)
    assert violations(IN_CELL, forbidden) == []


def test_report_never_imports_triage() -> None:
    assert violations(("report",), ("harness.triage", "harness.commands")) == []


def test_oracles_never_import_the_library_under_test() -> None:
    assert violations(("oracles",), ("diffusers", "peft", "harness.drivers")) == []


def test_protocol_is_stdlib_vocabulary() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    for path in modules_of("protocol"):
        for name in imported(path):
            top = name.split(".")[0]
            if top == "harness":
                if not (name.startswith("harness.protocol") or name.startswith("harness.errors")):
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
            elif top not in stdlib:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_suites_hold_test_files_only() -> None:
    """No support modules, no sys.path edits, no imports between test modules."""
    bad = []
    for path in sorted((ROOT / "suites").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if not (path.name.startswith("test_") or path.name in ("conftest.py", "__init__.py")):
            bad.append(f"{rel}: support module (move it to harness/scenarios/)")
        text = path.read_text(encoding="utf-8")
        if "sys.path" in text:
            bad.append(f"{rel}: edits sys.path")
        for name in imported(path):
            if name.startswith("suites") or name.split(".")[-1].startswith("test_"):
                bad.append(f"{rel}: imports {name}")
    assert bad == []


def test_suite_test_modules_have_distinct_import_names() -> None:
    """A cell collects every suite in one pytest session: two ``test_lifecycle.py`` outside
    packages import as the same module name and the whole cell fails to collect. A suite
    folder with an ``__init__.py`` is a package, so its modules are named after it."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "suites").rglob("test_*.py")):
        if path.parent.name == "invokeai":  # its own cells run it alone (matrix.targets)
            continue
        package = (path.parent / "__init__.py").exists()
        name = f"{path.parent.name}.{path.stem}" if package else path.stem
        seen.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_test_modules_do_not_import_each_other() -> None:
    bad = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for name in imported(path):
            if name.split(".")[-1].startswith("test_") and name.startswith("tests"):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_module_names_do_not_collide_within_a_role() -> None:
    """One name, one job: no two ``model.py`` / ``bench.py`` / ``repro.py`` / ``world.py``."""
    seen: dict[str, list[str]] = {}
    for path in HARNESS.rglob("*.py"):
        if path.name != "__init__.py" and path.parent.name != "commands":
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    twice = {
        name: paths
        for name, paths in seen.items()
        if len(paths) > 1 and name in ("model.py", "bench.py", "repro.py", "world.py")
    }
    assert twice == {}


@pytest.mark.parametrize("package", TORCH_FREE)
def test_outer_and_protocol_modules_import_without_torch(package: str) -> None:
    """Each module in a fresh interpreter where ``import torch`` (and diffusers) fails."""
    names = [module_name(p) for p in modules_of(package)]
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for blocked in ("torch", "diffusers", "transformers", "peft", "safetensors"):
            sys.modules[blocked] = None  # import raises ImportError
        failed = []
        for name in {names!r}:
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{{name}}: {{type(exc).__name__}}: {{exc}}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
