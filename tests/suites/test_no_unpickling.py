"""The harness never unpickles untrusted data.

Two checks, because each misses what the other sees:

* static: every ``torch.load`` call in ``harness/`` and ``suites/`` (however ``torch`` or
  ``load`` was imported) passes the literal ``weights_only=True``, and nothing calls the
  unrestricted unpicklers (``pickle.load(s)``, ``pickle.Unpickler``, ``numpy.load`` with
  ``allow_pickle=True``, ``joblib`` / ``dill``);
* runtime: with ``torch.load`` wrapped to refuse anything but ``weights_only=True``, every
  harness function that reads a ``.bin`` is handed a checkpoint whose pickle would create a
  marker file; the marker must never appear.

The checker itself is shown to fail on planted sources.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.inputs import pickles as pp

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("harness", "suites")

#: Calls that unpickle without restrictions, by dotted name after alias resolution.
FORBIDDEN = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "torch.serialization._legacy_load",
}
TORCH_LOADS = {"torch.load", "torch.serialization.load"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


class _Scanner(ast.NodeVisitor):
    """Resolves import aliases (``import torch as T``, ``from torch import load as L``)
    and reports unsafe calls."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.aliases: dict[str, str] = {}
        self.violations: list[Violation] = []
        self.load_functions: list[str] = []
        self._stack: list[str] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0]
            )

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module:
            for alias in node.names:
                self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self._stack.append(node.name)
        self.generic_visit(node)
        self._stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def _dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Call(self, node: ast.Call) -> None:
        name = self._dotted(node.func) or ""
        if name in TORCH_LOADS:
            self.load_functions.append(".".join(self._stack))
            flag = next((k for k in node.keywords if k.arg == "weights_only"), None)
            literal_true = (
                flag is not None
                and isinstance(flag.value, ast.Constant)
                and flag.value.value is True
            )
            if not literal_true:
                self.violations.append(
                    Violation(self.path, node.lineno, f"{name}(...) without weights_only=True")
                )
        elif name in FORBIDDEN:
            self.violations.append(Violation(self.path, node.lineno, f"unrestricted {name}(...)"))
        elif name in ("numpy.load", "np.load"):
            for k in node.keywords:
                if k.arg == "allow_pickle" and not (
                    isinstance(k.value, ast.Constant) and k.value.value is False
                ):
                    self.violations.append(
                        Violation(self.path, node.lineno, "numpy.load(allow_pickle=...)")
                    )
        self.generic_visit(node)


def scan_source(source: str, path: str = "<src>") -> _Scanner:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source))
    return scanner


def python_files() -> Iterator[Path]:
    for top in SCANNED:
        yield from sorted((ROOT / top).rglob("*.py"))


def test_every_torch_load_in_the_harness_is_weights_only():
    violations = []
    for path in python_files():
        violations += scan_source(path.read_text(), str(path.relative_to(ROOT))).violations
    assert not violations, "\n".join(map(str, violations))


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.load('x')",
        "import torch\ntorch.load('x', weights_only=False)",
        "import torch\nflag = True\ntorch.load('x', weights_only=flag)",
        "import torch as T\nT.load('x')",
        "from torch import load\nload('x')",
        "from torch import load as L\nL('x', map_location='cpu')",
        "import torch.serialization\ntorch.serialization.load('x')",
        "import pickle\npickle.loads(b'')",
        "from pickle import Unpickler\nUnpickler(f).load()",
        "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
    ],
)
def test_the_scanner_catches_planted_unsafe_loads(source):
    assert scan_source(source).violations


def test_the_scanner_accepts_the_safe_form():
    assert not scan_source(
        "import torch\ntorch.load('x', map_location='cpu', weights_only=True)"
    ).violations


# -- runtime ----------------------------------------------------------------------------------------
#: First-parameter names of readers the runtime check calls with just a path.
PATH_PARAMETERS = {"path", "file", "filename", "checkpoint", "checkpoint_file", "src", "source"}
#: Readers that need more than a path: (module, qualname) -> how to call them.
READERS: dict[tuple[str, str], Callable[[Callable[..., Any], Path], Any]] = {}


def torch_load_functions() -> list[tuple[str, str]]:
    """(module, qualname) of every harness function containing a ``torch.load`` call."""
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for qualname in scan_source(path.read_text(), str(path)).load_functions:
            found.append((module, qualname))
    return sorted(set(found))


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:  # imported defensively: a module of a missing extra
        pytest.skip(f"{module} does not import here: {exc}")
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _caller(module: str, qualname: str, fn: Callable[..., Any]) -> Callable[[Path], Any]:
    if (module, qualname) in READERS:
        return lambda path: READERS[(module, qualname)](fn, path)
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) == 1 and params[0].name in PATH_PARAMETERS:
        return lambda path: fn(path)
    raise AssertionError(
        f"{module}.{qualname} calls torch.load but the runtime check does not know how to "
        "call it: add it to READERS in tests/suites/test_no_unpickling.py"
    )


def test_there_are_readers_to_exercise():
    assert torch_load_functions(), "the scan found no torch.load at all: scanner broken?"


@pytest.mark.parametrize("reader", torch_load_functions(), ids=lambda r: f"{r[0]}:{r[1]}")
@pytest.mark.parametrize("variant", pp.VARIANTS)
def test_harness_readers_never_run_a_checkpoint_pickle(reader, variant, tmp_path, monkeypatch):
    module, qualname = reader
    call = _caller(module, qualname, _resolve(module, qualname))
    seen: list[Any] = []
    real_load = torch.load

    def guarded_load(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("weights_only", "<not passed>"))
        assert kwargs.get("weights_only") is True, f"torch.load called with {kwargs}"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", guarded_load)
    marker = tmp_path / "code-executed"
    tensors = {"image_proj": {"proj.weight": torch.ones(2, 2)}, "ip_adapter": {}}
    evil = pp.write_malicious(tmp_path / "evil.bin", tensors, marker, variant)
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; the marker decides
        call(evil)
    assert not marker.exists(), f"{module}.{qualname} ran code from a checkpoint"
    assert seen and all(flag is True for flag in seen)
