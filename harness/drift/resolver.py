"""Phase 2 substrate: where packages live, their module summaries, and name resolution.

A :class:`World` knows a set of top-level packages (the one under test and its
companions), each by its directory, and loads module summaries lazily. It answers:

* ``lookup(module, name)``: what ``from module import name`` gives, following re-exports,
  star imports, submodules and ``_import_structure`` tables;
* ``resolve(module, chain)``: what a dotted name in a module means;
* ``mro(class)`` / ``class_attr(class, name)``: C3 method resolution over the classes
  whose source we have, with external bases as opaque placeholders (an attribute that
  may come from one is *unknown*, never guessed);
* ``callable_of(target, access)``: the effective signature of a call target after
  decorators (``classmethod``, ``functools.wraps`` wrappers, known signature-keeping
  decorators) and ``self``/``cls`` binding.

Everything unknown is returned as :class:`Unknown` with a short reason that is counted.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.drift.extract import BUILTIN_NAMES, summarize
from harness.drift.summaries import (
    KEYWORD_ONLY,
    POSITIONAL_ONLY,
    POSITIONAL_OR_KEYWORD,
    VAR_KEYWORD,
    VAR_POSITIONAL,
    Chain,
    ClassInfo,
    FuncInfo,
    ModuleSummary,
    Param,
)
from harness.errors import UsageError

#: Packages whose call sites from diffusers are checked as "cross-package".
COMPANIONS = ("peft", "transformers", "huggingface_hub", "accelerate", "safetensors")

#: External decorators known to keep the decorated function's call signature,
#: as (top-level package, last name).
KEEPS_SIGNATURE = frozenset(
    {
        ("torch", "no_grad"),
        ("torch", "inference_mode"),
        ("torch", "enable_grad"),
        ("torch", "disable"),  # torch.compiler.disable / torch._dynamo.disable
        ("torch", "unused"),
        ("torch", "ignore"),
        ("torch", "allow_in_graph"),
        ("functools", "lru_cache"),
        ("functools", "cache"),
        ("functools", "wraps"),  # the wrapper's own parameters are what callers bind to
        ("contextlib", "contextmanager"),
        ("abc", "abstractmethod"),
        ("typing", "final"),
        ("typing_extensions", "final"),
        ("typing", "no_type_check"),
        ("huggingface_hub", "validate_hf_hub_args"),
    }
)
_PROPERTY = frozenset({"property", "cached_property", "setter", "getter", "deleter"})
_IGNORED_BASES = frozenset({"object", "Generic", "Protocol", "ABC"})
_ALL_RE = re.compile(rb"^__all__\s*[:+]?=", re.M)
_VERSION_RE = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.M)


# -- targets -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mod:
    name: str


@dataclass(frozen=True, slots=True)
class Cls:
    module: str
    info: ClassInfo

    @property
    def key(self) -> tuple[str, str]:
        return (self.module, self.info.qualname)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cls) and other.key == self.key


@dataclass(frozen=True, slots=True)
class Func:
    module: str
    info: FuncInfo
    owner: Cls | None = None
    #: how it was reached: "module" (plain name), "class" (``C.m`` / ``cls.m``),
    #: "instance" (``self.m``).
    access: str = "module"

    def __hash__(self) -> int:
        return hash((self.module, self.info.qualname, self.access))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Func) and (other.module, other.info.qualname, other.access) == (
            self.module,
            self.info.qualname,
            self.access,
        )


@dataclass(frozen=True, slots=True)
class External:
    qualname: str


@dataclass(frozen=True, slots=True)
class Unknown:
    reason: str


Target = Mod | Cls | Func | External | Unknown


@dataclass(slots=True)
class Callable:
    """What a call binds against: parameters after dropping ``self``/``cls``."""

    params: tuple[Param, ...]
    qualname: str
    module: str
    lineno: int
    full_params: tuple[Param, ...]


# -- locating packages ---------------------------------------------------------------------
def _version_from_source(pkg_dir: Path) -> str | None:
    init = pkg_dir / "__init__.py"
    try:
        match = _VERSION_RE.search(init.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    if match:
        return match.group(1)
    version_py = pkg_dir / "version.py"
    if version_py.exists():
        match = _VERSION_RE.search(version_py.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1)
    return None


def _dist_version(name: str) -> str | None:
    for candidate in (name, name.replace("_", "-")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def find_in_dir(root: Path, name: str) -> Path | None:
    """The package directory of ``name`` under a site/source dir, a src-layout checkout, or
    the package directory itself."""
    for candidate in (root / name, root / "src" / name):
        if (candidate / "__init__.py").is_file():
            return candidate
    if root.name == name and (root / "__init__.py").is_file():
        return root
    return None


def find_installed(name: str) -> Path | None:
    """The installed package directory, located without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location)
        if (path / "__init__.py").is_file():
            return path
    return None


def locate(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Directory of package ``name``: under ``path`` when given, else the installed one.

    Raises UsageError (one line, with what to do) when it cannot be found."""
    if path is not None:
        root = Path(path)
        if not root.exists():
            raise UsageError(
                f"--path {root} does not exist; give a site-packages or unpacked wheel directory"
            )
        found = find_in_dir(root, name)
        if found is None:
            raise UsageError(
                f"no package {name!r} under {root} (looked for {name}/__init__.py and src/{name}/__init__.py); "
                "point --path at the directory that contains the package folder"
            )
        return found
    found = find_installed(name)
    if found is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            raise UsageError(f"{name!r} is a single module, not a package; drift checks packages")
        raise UsageError(
            f"package {name!r} is not installed in this environment ({sys.executable}); "
            "install it or pass --path to an unpacked source/wheel directory"
        )
    return found


def package_version(name: str, pkg_dir: Path) -> str:
    version = _version_from_source(pkg_dir)
    if version is None:
        installed = find_installed(name)
        if installed is not None and installed.resolve() == pkg_dir.resolve():
            version = _dist_version(name)
    return version or "unknown"


def iter_modules(top: str, pkg_dir: Path) -> Iterator[tuple[str, Path, bool]]:
    """(dotted module name, file, is_package) for every .py file of a package, sorted."""
    for dirpath, dirnames, filenames in os.walk(pkg_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        rel = Path(dirpath).relative_to(pkg_dir)
        prefix = [top, *rel.parts] if rel.parts else [top]
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            if filename == "__init__.py":
                yield ".".join(prefix), Path(dirpath) / filename, True
            else:
                yield ".".join([*prefix, filename[:-3]]), Path(dirpath) / filename, False


# -- the world -----------------------------------------------------------------------------
class World:
    def __init__(self, packages: dict[str, Path], versions: dict[str, str] | None = None) -> None:
        self.packages = dict(packages)
        self.versions = dict(versions or {})
        self.summaries: dict[str, ModuleSummary | None] = {}
        self._lookup_memo: dict[tuple[str, str], tuple[Target, ...]] = {}
        self._resolve_memo: dict[tuple[str, Chain], tuple[Target, ...]] = {}
        self._mro_memo: dict[tuple[str, str], list[Cls | str]] = {}
        self._active: set[tuple[str, str]] = set()
        self._texts: dict[str, tuple[bytes, bool]] = {}
        self.full = False

    @classmethod
    def for_package(
        cls,
        name: str,
        path: str | os.PathLike[str] | None = None,
        companions: Iterable[str] = COMPANIONS,
    ) -> World:
        """The package under test and the companions found next to it (or installed)."""
        main = locate(name, path)
        packages = {name: main}
        versions = {name: package_version(name, main)}
        for comp in companions:
            if comp == name:
                continue
            found = find_in_dir(Path(path), comp) if path is not None else None
            if found is None:
                found = find_installed(comp)
            if found is not None:
                packages[comp] = found
                versions[comp] = package_version(comp, found)
        for extra in ("torch",):
            version = _dist_version(extra)
            if version and extra not in versions:
                versions[extra] = version
        return cls(packages, versions)

    # -- modules ------------------------------------------------------------------------
    def top_of(self, modname: str) -> str:
        return modname.split(".", 1)[0]

    def knows(self, modname: str) -> bool:
        return self.top_of(modname) in self.packages

    def module_file(self, modname: str) -> tuple[Path, bool] | None:
        parts = modname.split(".")
        base = self.packages.get(parts[0])
        if base is None:
            return None
        path = base.joinpath(*parts[1:])
        init = path / "__init__.py"
        if init.is_file():
            return init, True
        file = path.with_suffix(".py") if parts[1:] else None
        if file is not None and file.is_file():
            return file, False
        return None

    def relpath(self, modname: str, file: Path) -> str:
        base = self.packages[self.top_of(modname)]
        return str(Path(self.top_of(modname)) / file.relative_to(base)).replace(os.sep, "/")

    def get(self, modname: str) -> ModuleSummary | None:
        if modname in self.summaries:
            return self.summaries[modname]
        found = self.module_file(modname)
        summary = None
        if found is not None:
            file, is_pkg = found
            summary = summarize(
                file.read_bytes(),
                modname,
                self.relpath(modname, file),
                is_pkg,
                calls=False,
                full=self.full,
            )
            if summary.error:
                summary = None
        self.summaries[modname] = summary
        return summary

    def _may_provide(self, modname: str, name: str) -> bool:
        """Cheap text test before parsing a star-imported module: a module whose source
        neither mentions ``name`` nor re-exports with ``*`` cannot provide it. Keeps a
        lookup through ``from .models import *`` (transformers 5) from parsing every model."""
        if modname in self.summaries or not self.knows(modname):
            return True
        entry = self._texts.get(modname)
        if entry is None:
            found = self.module_file(modname)
            if found is None:
                return True
            text = found[0].read_bytes()
            entry = (text, bool(_ALL_RE.search(text)))
            self._texts[modname] = entry
        text, has_all = entry
        raw = name.encode()
        if has_all:  # a star import exports exactly __all__
            return b'"' + raw + b'"' in text or b"'" + raw + b"'" in text
        return raw in text or b"import *" in text

    def put(self, summary: ModuleSummary) -> None:
        self.summaries[summary.name] = summary if not summary.error else None

    # -- names --------------------------------------------------------------------------
    def lookup(self, modname: str, name: str) -> tuple[Target, ...]:
        key = (modname, name)
        memo = self._lookup_memo.get(key)
        if memo is not None:
            return memo
        if key in self._active:
            return (Unknown("import cycle"),)
        self._active.add(key)
        try:
            result = self._lookup(modname, name)
        finally:
            self._active.discard(key)
        self._lookup_memo[key] = result
        return result

    def _lookup(self, modname: str, name: str) -> tuple[Target, ...]:
        if not self.knows(modname):
            return (External(f"{modname}.{name}"),)
        summary = self.get(modname)
        if summary is None:
            sub = f"{modname}.{name}"
            if self.module_file(sub) is not None:
                return (Mod(sub),)
            return (Unknown("module without Python source"),)
        bindings = summary.bindings.get(name)
        if bindings is not None:
            out: list[Target] = []
            for binding in bindings:
                out.extend(self.binding_targets(modname, binding))
            if out:
                return tuple(out)
        sub = f"{modname}.{name}"
        if summary.is_package and self.module_file(sub) is not None:
            return (Mod(sub),)
        for star in summary.stars:
            if not self._may_provide(star, name):
                continue
            star_summary = self.get(star) if self.knows(star) else None
            if star_summary is not None:
                visible = (
                    name in star_summary.all_names
                    if star_summary.all_names is not None
                    else not name.startswith("_")
                )
                if not visible:
                    continue
            found = self.lookup(star, name)
            if found and not all(isinstance(t, Unknown) for t in found):
                return found
        if name in summary.import_structure:
            return self.lookup(f"{modname}.{summary.import_structure[name]}", name)
        return (Unknown("name not found in module"),)

    def binding_targets(
        self, modname: str, binding: tuple, owner: Cls | None = None
    ) -> tuple[Target, ...]:
        kind = binding[0]
        if kind == "def":
            return (Func(modname, binding[1], owner),)
        if kind == "class":
            return (Cls(modname, binding[1]),)
        if kind == "import":
            module, name = binding[1], binding[2]
            if name is None:
                if not self.knows(module):
                    return (External(module),)
                if self.module_file(module) is None:
                    return (Unknown("module without Python source"),)
                return (Mod(module),)
            if not self.knows(module):
                return (External(f"{module}.{name}"),)
            return self.lookup(module, name)
        if kind == "alias":
            return self.resolve(modname, binding[1])
        if kind == "none":
            return ()
        return (Unknown("assigned value"),)

    def resolve(self, modname: str, chain: Chain, local: tuple | None = None) -> tuple[Target, ...]:
        """What the dotted name ``chain`` means in module ``modname`` (``local``: bindings
        of the root name inside a function, e.g. a function-level import)."""
        key = (modname, chain)
        if local is None:
            memo = self._resolve_memo.get(key)
            if memo is not None:
                return memo
        root = chain[0]
        if local is not None:
            targets: list[Target] = []
            for binding in local:
                targets.extend(self.binding_targets(modname, binding))
        else:
            targets = list(self.lookup(modname, root))
            if (
                len(targets) == 1
                and isinstance(targets[0], Unknown)
                and targets[0].reason == "name not found in module"
            ):
                if root in BUILTIN_NAMES:
                    targets = [External(f"builtins.{root}")]
        for attr in chain[1:]:
            nxt: list[Target] = []
            for target in targets:
                nxt.extend(self.getattr(target, attr))
            targets = nxt
        result = tuple(dict.fromkeys(targets))
        if local is None:
            self._resolve_memo[key] = result
        return result

    def getattr(self, target: Target, attr: str) -> tuple[Target, ...]:
        if isinstance(target, Mod):
            return self.lookup(target.name, attr)
        if isinstance(target, Cls):
            return self.class_attr(target, attr, access="class")
        if isinstance(target, External):
            return (External(f"{target.qualname}.{attr}"),)
        if isinstance(target, Unknown):
            return (target,)
        return (Unknown("attribute of a function"),)

    # -- classes ------------------------------------------------------------------------
    def _base_target(self, modname: str, chain: Chain | None) -> Cls | str | None:
        if chain is None:
            return "<?>"
        if chain[-1] in _IGNORED_BASES and len(chain) <= 2:
            return None
        targets = self.resolve(modname, chain)
        classes = [t for t in targets if isinstance(t, Cls)]
        if len(targets) == 1 and classes:
            return classes[0]
        if len(targets) == 1 and isinstance(targets[0], External):
            return f"<{targets[0].qualname}>"
        return f"<{'.'.join(chain)}>"

    def mro(self, cls: Cls) -> list[Cls | str]:
        """C3 linearisation; strings are placeholders for bases we have no source for."""
        key = cls.key
        memo = self._mro_memo.get(key)
        if memo is not None:
            return memo
        self._mro_memo[key] = [cls, "<cycle>"]
        bases = [
            b for b in (self._base_target(cls.module, c) for c in cls.info.bases) if b is not None
        ]
        seqs = [self.mro(b) if isinstance(b, Cls) else [b] for b in bases]
        seqs.append(list(bases))
        result: list[Cls | str] = [cls]
        seqs = [list(s) for s in seqs if s]
        while seqs:
            for seq in seqs:
                head = seq[0]
                if not any(head in s[1:] for s in seqs):
                    break
            else:  # inconsistent hierarchy: fall back to depth-first order
                for seq in seqs:
                    for item in seq:
                        if item not in result:
                            result.append(item)
                break
            result.append(head)
            seqs = [[x for x in s if x != head] for s in seqs]
            seqs = [s for s in seqs if s]
        self._mro_memo[key] = result
        return result

    def class_attr(
        self, cls: Cls, name: str, access: str, after: Cls | None = None
    ) -> tuple[Target, ...]:
        """Attribute ``name`` looked up along the MRO (``after``: start past that class, as
        ``super()`` does)."""
        order = self.mro(cls)
        if after is not None:
            try:
                order = order[order.index(after) + 1 :]
            except ValueError:
                return (Unknown("super() outside the class hierarchy"),)
        for entry in order:
            if isinstance(entry, str):
                return (Unknown("may be inherited from a base without source"),)
            if access == "instance" and name in entry.info.self_attrs:
                return (Unknown("instance attribute"),)
            bindings = entry.info.body.get(name)
            if bindings:
                out: list[Target] = []
                for binding in bindings:
                    for target in self.binding_targets(entry.module, binding, owner=entry):
                        if isinstance(target, Func):
                            owner = entry if binding[0] == "def" else target.owner
                            target = Func(target.module, target.info, owner or entry, access)
                        out.append(target)
                return tuple(out) if out else (Unknown("assigned value"),)
        return (Unknown("not defined in the class or its bases (set by a subclass?)"),)

    def instance_attr_known(self, cls: Cls, name: str) -> bool:
        return any(isinstance(e, Cls) and name in e.info.self_attrs for e in self.mro(cls))

    def class_by_qualname(self, modname: str, qualname: str) -> Cls | None:
        summary = self.get(modname)
        if summary is None:
            return None
        info = summary.classes.get(qualname)
        return Cls(modname, info) if info is not None else None

    # -- decorators and signatures ------------------------------------------------------
    def _decorator_ok(self, modname: str, deco) -> bool | tuple[str, ...]:  # type: ignore[no-untyped-def]
        """False unless the decorator keeps the call signature; a tuple of extra accepted
        keywords when it keeps it but its wrapper edits ``**kwargs``."""
        if deco.chain is None:
            return False
        targets = self.resolve(modname, deco.chain)
        extra: tuple[str, ...] = ()
        for target in targets:
            if isinstance(target, External):
                parts = target.qualname.split(".")
                if (parts[0], parts[-1]) not in KEEPS_SIGNATURE:
                    return False
            elif isinstance(target, Func):
                wanted = "factory" if deco.called else "preserving"
                if target.info.deco_kind != wanted:
                    return False
                extra += target.info.deco_extra
            else:
                return False
        if not targets:
            return False
        return extra or True

    def effective(self, func: Func) -> tuple[str, FuncInfo, tuple[str, ...]] | Unknown:
        """("function" | "method" | "classmethod" | "staticmethod", info, extra keywords
        accepted by kwargs-editing wrappers) after decorators."""
        kind = "method" if func.owner is not None else "function"
        extra: tuple[str, ...] = ()
        for deco in reversed(func.info.decorators):
            last = deco.chain[-1] if deco.chain else None
            if (
                deco.chain is not None
                and len(deco.chain) == 1
                and last in ("staticmethod", "classmethod")
            ):
                kind = last
                continue
            if last in _PROPERTY:
                return Unknown("property")
            if last == "overload":
                return Unknown("typing.overload stub")
            ok = self._decorator_ok(func.module, deco)
            if not ok:
                return Unknown("decorator not known to keep the signature")
            if isinstance(ok, tuple):
                extra += ok
        return kind, func.info, extra

    def callable_of(self, target: Target) -> Callable | Unknown | External | None:
        """The signature a call to ``target`` binds against, or why there is none."""
        if isinstance(target, Func):
            eff = self.effective(target)
            if isinstance(eff, Unknown):
                return eff
            kind, info, extra = eff
            if target.owner is not None and info.abstract:
                return Unknown("abstract method")
            drop = False
            if target.owner is not None:
                if target.access == "instance":
                    drop = kind in ("method", "classmethod")
                elif target.access == "class":
                    drop = kind == "classmethod"
            params = info.params
            if drop:
                params = _drop_first(params)
                if params is None:
                    return Unknown("method without a self parameter")
            if extra:
                names = {p.name for p in params}
                params = _with_extra(params, [e for e in dict.fromkeys(extra) if e not in names])
            qual = f"{target.module}.{info.qualname}"
            return Callable(params, qual, target.module, info.lineno, info.params)
        if isinstance(target, Cls):
            return self.init_of(target)
        if isinstance(target, External):
            return target
        if isinstance(target, Mod):
            return Unknown("calling a module")
        return target

    def init_of(self, cls: Cls) -> Callable | Unknown:
        """Signature of ``cls(...)``: the first ``__init__`` along the MRO, a synthesised
        dataclass ``__init__``, or ``()`` when the hierarchy is fully known and has none."""
        info = cls.info
        if info.metaclass is not None:
            meta = self.resolve(cls.module, info.metaclass)
            if not (
                len(meta) == 1
                and isinstance(meta[0], External)
                and meta[0].qualname.endswith("ABCMeta")
            ):
                return Unknown("class with a metaclass")
        for deco in info.decorators:
            if deco.chain and deco.chain[-1] == "dataclass":
                continue
            if not self._decorator_ok(cls.module, deco):
                return Unknown("class decorator not known to keep __init__")
        for entry in self.mro(cls):
            if isinstance(entry, str):
                return Unknown("__init__ may come from a base without source")
            if "__new__" in entry.info.body:
                return Unknown("class defines __new__")
            if "__init__" in entry.info.body:
                targets = self.class_attr(entry, "__init__", access="instance")
                funcs = [t for t in targets if isinstance(t, Func)]
                if len(targets) != 1 or not funcs:
                    return Unknown("__init__ is not a plain def")
                result = self.callable_of(funcs[0])
                if isinstance(result, Callable):
                    result.qualname = f"{cls.module}.{cls.info.qualname}"
                    if entry is not cls:
                        result.qualname += f" (__init__ of {entry.info.qualname})"
                return result  # type: ignore[return-value]
            deco = _dataclass_deco(entry.info)
            if deco is not None:
                return self._dataclass_init(cls, entry, deco)
        return Callable((), f"{cls.module}.{info.qualname}", cls.module, info.lineno, ())

    def _dataclass_init(self, cls: Cls, entry: Cls, deco) -> Callable | Unknown:  # type: ignore[no-untyped-def]
        opts = dict(deco.kwargs)
        if opts.get("init") == "False" or "kw_only" in opts:
            return Unknown("dataclass options")
        fields: dict[str, bool] = {}
        for base in reversed(self.mro(entry)):
            if isinstance(base, Cls) and _dataclass_deco(base.info) is not None:
                for name, has_default, in_init in base.info.fields:
                    if in_init:
                        fields[name] = has_default
                    else:
                        fields.pop(name, None)
        params = tuple(
            Param(n, POSITIONAL_OR_KEYWORD, "..." if d else None) for n, d in fields.items()
        )
        return Callable(
            params,
            f"{cls.module}.{cls.info.qualname} (dataclass)",
            cls.module,
            cls.info.lineno,
            params,
        )


def _dataclass_deco(info: ClassInfo):  # type: ignore[no-untyped-def]
    for deco in info.decorators:
        if deco.chain and deco.chain[-1] == "dataclass":
            return deco
    return None


def _with_extra(params: tuple[Param, ...], extra: list[str]) -> tuple[Param, ...]:
    """Add keyword-only parameters (before ``**kwargs`` if there is one)."""
    added = tuple(Param(name, KEYWORD_ONLY, "...") for name in extra)
    if params and params[-1].kind == VAR_KEYWORD:
        return params[:-1] + added + params[-1:]
    return params + added


def _drop_first(params: tuple[Param, ...]) -> tuple[Param, ...] | None:
    for i, param in enumerate(params):
        if param.kind in (POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD):
            return params[:i] + params[i + 1 :]
        if param.kind == VAR_POSITIONAL:
            return params
        break
    return None


def bind_problems(
    params: tuple[Param, ...], npos: int, star: bool, keywords: tuple[str, ...], dstar: bool
) -> list[str]:
    """Why binding a call to ``params`` would raise TypeError (empty when it would not).

    Only what the call site pins down is checked: with ``*args`` the number of positionals
    is unknown (no missing-argument check), with ``**kw`` extra keywords may fill anything.
    """
    positional = [p for p in params if p.kind in (POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD)]
    has_varargs = any(p.kind == VAR_POSITIONAL for p in params)
    has_varkw = any(p.kind == VAR_KEYWORD for p in params)
    by_name = {p.name: p for p in params if p.kind in (POSITIONAL_OR_KEYWORD, KEYWORD_ONLY)}
    problems: list[str] = []
    if npos > len(positional) and not has_varargs:
        problems.append(f"takes {len(positional)} positional argument(s) but {npos} given")
    filled = {p.name for p in positional[:npos]}
    for kw in keywords:
        param = by_name.get(kw)
        if param is None:
            if not has_varkw:
                problems.append(f"unexpected keyword argument {kw!r}")
        elif kw in filled:
            problems.append(f"multiple values for argument {kw!r}")
        else:
            filled.add(kw)
    if not star and not dstar:
        missing = [p.name for p in params if p.required and p.name not in filled]
        if missing:
            problems.append("missing required argument(s): " + ", ".join(repr(m) for m in missing))
    elif not dstar:
        missing = [
            p.name for p in params if p.required and p.kind == KEYWORD_ONLY and p.name not in filled
        ]
        if missing:
            problems.append(
                "missing required keyword-only argument(s): " + ", ".join(repr(m) for m in missing)
            )
    return problems


def render_signature(name: str, params: tuple[Param, ...]) -> str:
    parts: list[str] = []
    seen_kwonly = False
    last_posonly = max((i for i, p in enumerate(params) if p.kind == POSITIONAL_ONLY), default=-1)
    for i, p in enumerate(params):
        if p.kind == KEYWORD_ONLY and not seen_kwonly:
            seen_kwonly = True
            if not any(q.kind == VAR_POSITIONAL for q in params):
                parts.append("*")
        if p.kind == VAR_POSITIONAL:
            parts.append(f"*{p.name}")
        elif p.kind == VAR_KEYWORD:
            parts.append(f"**{p.name}")
        else:
            parts.append(p.name if p.default is None else f"{p.name}={p.default}")
        if i == last_posonly:
            parts.append("/")
    return f"{name}({', '.join(parts)})"
