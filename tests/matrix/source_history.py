"""A tiny diffusers history built at test time, offline, from the diffusers installed here.

Three commits on ``main``: the released sources as they are (a plain pyproject builds
them), a planted bug in a LoRA loader, and an unrelated change after it. Author, committer
and dates are fixed, so the commits (and the wheels the cache keeps per commit) are the
same on every run: a second run of the self-tests builds nothing.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The row both self-tests use: cheap (one small SD1.5 pipeline), and the planted bug
#: (the loader returns before loading) leaves the file without any effect there.
CHECK_ID = "lora/formats::load[sd15-peft-complete]"
NODEID = "suites/lora/test_formats.py::test_load[sd15-peft-complete]"
PLANTED_PR = "4242"

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "diffusers"
version = "{version}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
diffusers = ["py.typed", "utils/*.md"]
"""


@dataclass(frozen=True)
class History:
    repo: Path
    base: str
    planted: str
    unrelated: str


def _git(repo: Path, *args: str, date: str = "2026-01-01T12:00:00+00:00") -> str:
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="adapter-compat",
        GIT_AUTHOR_EMAIL="selftest@adapter-compat.invalid",
        GIT_COMMITTER_NAME="adapter-compat",
        GIT_COMMITTER_EMAIL="selftest@adapter-compat.invalid",
        GIT_AUTHOR_DATE=date,
        GIT_COMMITTER_DATE=date,
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def plant_early_return(loader: Path) -> None:
    """``StableDiffusionLoraLoaderMixin.load_lora_weights`` returns before loading."""
    tree = ast.parse(loader.read_text(encoding="utf-8"))
    mixin = next(
        n
        for n in tree.body
        if isinstance(n, ast.ClassDef) and n.name == "StableDiffusionLoraLoaderMixin"
    )
    method = next(
        n for n in mixin.body if isinstance(n, ast.FunctionDef) and n.name == "load_lora_weights"
    )
    first = method.body[1] if ast.get_docstring(method) else method.body[0]
    lines = loader.read_text(encoding="utf-8").splitlines(keepends=True)
    indent = " " * first.col_offset
    lines.insert(first.lineno - 1, f"{indent}return None  # planted: nothing is loaded\n")
    loader.write_text("".join(lines), encoding="utf-8")


def build_history(where: Path) -> History:
    """The three-commit repository under ``where`` (from the diffusers importable here)."""
    import diffusers

    installed = Path(diffusers.__file__).parent
    repo = where / "diffusers"
    package = repo / "src" / "diffusers"
    shutil.copytree(installed, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (repo / "pyproject.toml").write_text(PYPROJECT.format(version=diffusers.__version__))
    (repo / "README.md").write_text("diffusers, rebuilt for the adapter-compat self-tests\n")
    _git(repo, "init", "--quiet", "--initial-branch=main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", f"Release: v{diffusers.__version__}")
    _git(repo, "tag", f"v{diffusers.__version__}")
    base = _git(repo, "rev-parse", "HEAD")
    plant_early_return(package / "loaders" / "lora_pipeline.py")
    _git(repo, "commit", "--quiet", "-am", f"[LoRA] simplify loading (#{PLANTED_PR})",
         date="2026-01-02T12:00:00+00:00")  # fmt: skip
    planted = _git(repo, "rev-parse", "HEAD")
    readme = repo / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "See the docs.\n", encoding="utf-8")
    _git(repo, "commit", "--quiet", "-am", "docs: README pointer (#4243)",
         date="2026-01-03T12:00:00+00:00")  # fmt: skip
    unrelated = _git(repo, "rev-parse", "HEAD")
    return History(repo, base, planted, unrelated)
