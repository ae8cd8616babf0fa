"""API contract snapshots: the adapter-loading API of one diffusers version, as data.

Static (ast), not ``inspect``: no import of torch or diffusers, so a snapshot of any wheel
(all 17 versions in a few seconds) can be taken on a machine without either, and the
result does not depend on which optional backends happen to be installed. Decorators are
read the same way the call-site checker reads them: a ``functools.wraps`` wrapper keeps
the wrapped signature (what ``inspect.signature`` would also report via ``__wrapped__``).

What is recorded is listed in ``fixtures/api/targets.json`` (data, not code).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Any

from harness.drift.resolver import Cls, Func, World, iter_modules, locate, package_version
from harness.drift.summaries import ClassInfo, FuncInfo, Param
from harness.errors import UsageError

SCHEMA = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
API_DIR = REPO_ROOT / "fixtures" / "api"
TARGETS = API_DIR / "targets.json"
_VERSION_FILE = re.compile(r"^\d+(\.\d+)+([a-z0-9.+-]*)?\.json$")


def load_targets(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    path = Path(path) if path is not None else TARGETS
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"targets table {path} not found; restore fixtures/api/targets.json"
        ) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"targets table {path} is not valid JSON ({exc}); fix the file") from None


def params_json(params: tuple[Param, ...]) -> list[dict[str, Any]]:
    out = []
    for p in params:
        item: dict[str, Any] = {"name": p.name, "kind": p.kind}
        if p.default is not None:
            item["default"] = p.default
        if p.annotation is not None:
            item["annotation"] = p.annotation
        out.append(item)
    return out


def _deco_names(info: FuncInfo | ClassInfo) -> list[str]:
    return [
        ".".join(d.chain) + ("()" if d.called else "") if d.chain else "<expr>"
        for d in info.decorators
    ]


def _kind(info: FuncInfo, in_class: bool) -> str:
    names = {d.chain[-1] for d in info.decorators if d.chain}
    if not in_class:
        return "function"
    if names & {"property", "cached_property", "setter", "getter"}:
        return "property"
    if "classmethod" in names:
        return "classmethod"
    if "staticmethod" in names:
        return "staticmethod"
    return "method"


def _file_of(world: World, modname: str) -> str:
    found = world.module_file(modname)
    return world.relpath(modname, found[0]) if found else modname


def _entry(world: World, modname: str, info: FuncInfo, owner: ClassInfo | None) -> dict[str, Any]:
    return {
        "kind": _kind(info, owner is not None),
        "module": modname,
        "defined_in": owner.qualname if owner is not None else None,
        "file": _file_of(world, modname),
        "line": info.lineno,
        "decorators": _deco_names(info),
        "params": params_json(info.params),
        "returns": info.returns,
    }


def _modules_matching(world: World, package: str, patterns: list[str]) -> list[str]:
    names = [m for m, _, _ in iter_modules(package, world.packages[package])]
    out = []
    for pattern in patterns:
        for name in names:
            if fnmatch.fnmatchcase(name, pattern) and name not in out:
                out.append(name)
    return out


def _defines_class(world: World, modname: str, name: str) -> bool:
    found = world.module_file(modname)
    if found is None:
        return False
    return (
        re.search(rb"^\s*class\s+" + re.escape(name.encode()) + rb"\b", found[0].read_bytes(), re.M)
        is not None
    )


def _importable_from(
    world: World, modules: list[str], name: str, want: tuple[str, int]
) -> list[str]:
    """Public modules from which ``name`` resolves to the definition ``want`` (module, line)."""
    out = []
    for modname in modules:
        if world.module_file(modname) is None:
            continue
        for target in world.lookup(modname, name):
            if isinstance(target, (Func, Cls)) and (target.module, target.info.lineno) == want:
                out.append(modname)
                break
    return out


def take_snapshot(
    package: str = "diffusers",
    path: str | os.PathLike[str] | None = None,
    targets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The contract of the installed package (or the one under ``path``) as a JSON-able dict."""
    targets = targets or load_targets()
    pkg_dir = locate(package, path)
    world = World({package: pkg_dir}, {package: package_version(package, pkg_dir)})
    world.full = True
    public = [m for m in targets.get("public_modules", []) if world.module_file(m) is not None]
    api: dict[str, dict[str, Any]] = {}
    classes: dict[str, dict[str, Any]] = {}

    class_modules = _modules_matching(
        world, package, targets.get("class_modules", [f"{package}.*"])
    )
    method_patterns = targets.get("methods", [])
    for class_name in targets.get("classes", []):
        modname = next((m for m in class_modules if _defines_class(world, m, class_name)), None)
        summary = world.get(modname) if modname else None
        info = summary.classes.get(class_name) if summary else None
        if info is None or modname is None:
            continue
        cls = Cls(modname, info)
        mro = [e for e in world.mro(cls) if isinstance(e, Cls)]
        classes[class_name] = {
            "module": modname,
            "file": _file_of(world, modname),
            "line": info.lineno,
            "bases": [".".join(b) if b else "<expr>" for b in info.bases],
            "mro": [e.info.qualname for e in mro],
            "importable_from": _importable_from(world, public, class_name, (modname, info.lineno)),
        }
        seen: set[str] = set()
        for entry in mro:
            for attr, bindings in entry.info.body.items():
                if attr in seen or not any(fnmatch.fnmatchcase(attr, p) for p in method_patterns):
                    continue
                seen.add(attr)
                defs = [b[1] for b in bindings if b[0] == "def"]
                if not defs:
                    continue
                api[f"{class_name}.{attr}"] = _entry(world, entry.module, defs[-1], entry.info)

    for spec in targets.get("functions", []):
        modname = spec["module"]
        summary = world.get(modname) if world.module_file(modname) else None
        if summary is None:
            continue
        for qualname, info in summary.functions.items():
            if "." in qualname or not any(
                fnmatch.fnmatchcase(info.name, p) for p in spec.get("names", ["*"])
            ):
                continue
            if info.name in api:
                api[info.name].setdefault("also_defined_in", []).append(modname)
                continue
            entry = _entry(world, modname, info, None)
            entry["importable_from"] = _importable_from(
                world, public, info.name, (modname, info.lineno)
            )
            api[info.name] = entry

    return {
        "schema": SCHEMA,
        "package": package,
        "version": world.versions[package],
        "generator": "harness.drift.snapshot (static ast; targets from fixtures/api/targets.json)",
        "classes": dict(sorted(classes.items())),
        "api": dict(sorted(api.items())),
    }


_PARAM_BLOCK = re.compile(
    r'\{\n(?:[ ]+"(?:name|kind|default|annotation)": "(?:[^"\\]|\\.)*",?\n)+[ ]+\}'
)


def dumps(snapshot: dict[str, Any]) -> str:
    """Indented JSON with one line per parameter (readable diffs in review)."""
    text = json.dumps(snapshot, indent=1, sort_keys=False)
    text = _PARAM_BLOCK.sub(
        lambda m: json.dumps(json.loads(m.group(0)), separators=(", ", ": ")), text
    )
    return text + "\n"


def write_snapshot(snapshot: dict[str, Any], out_dir: str | os.PathLike[str] = API_DIR) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out} ({exc}); pass a writable --out") from None
    path = out / f"{snapshot['version']}.json"
    path.write_text(dumps(snapshot), encoding="utf-8")
    return path


def committed_versions(api_dir: str | os.PathLike[str] = API_DIR) -> list[str]:
    """Versions with a committed snapshot, oldest first."""
    from harness.protocol.versions import version_tuple

    names = [p.name[:-5] for p in Path(api_dir).glob("*.json") if _VERSION_FILE.match(p.name)]
    return sorted(names, key=version_tuple)


def load_snapshot(version: str, api_dir: str | os.PathLike[str] = API_DIR) -> dict[str, Any]:
    path = Path(api_dir) / f"{version}.json"
    if not path.is_file():
        have = ", ".join(committed_versions(api_dir)) or "none"
        raise UsageError(
            f"no snapshot for {version} in {api_dir} (have: {have}); run `adapter-compat drift snapshot`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def source_versions(
    src: str | os.PathLike[str], package: str = "diffusers"
) -> list[tuple[str, Path]]:
    """(version, directory) for every ``<src>/<version>/<package>/`` tree, oldest first."""
    from harness.protocol.versions import version_tuple

    root = Path(src)
    if not root.is_dir():
        raise UsageError(
            f"--src {root} is not a directory; run `adapter-compat drift fetch --src {root}` first"
        )
    found = [
        (d.name, d)
        for d in root.iterdir()
        if d.is_dir() and (d / package / "__init__.py").is_file()
    ]
    if not found:
        raise UsageError(
            f"no <version>/{package}/ trees under {root}; run `adapter-compat drift fetch --src {root}`"
        )
    return sorted(found, key=lambda item: version_tuple(item[0]))
