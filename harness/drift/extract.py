"""Phase 1: one source file -> one :class:`~harness.drift.summaries.ModuleSummary`.

A single pass over the AST records

* what each module-level name is bound to (def, class, import, alias, other), keeping
  every alternative of a conditional binding (``try: from x import f / except: f = None``);
* classes (bases, decorators, class-body bindings, ``self.<attr> =`` assignments,
  dataclass fields) and function signatures;
* every call site whose callee is a dotted name, ``self.`` / ``cls.`` attribute or
  ``super().`` attribute, with its positional count, keyword names, splats, the version
  guards around it (``if is_peft_version(">=", "0.13"):``) and whether an enclosing
  ``try`` catches ``TypeError``.

Names are classified with Python's scoping rules: a call whose root name is a local
variable is "dynamic" (not checkable); one whose root is a local ``import`` or nested
``def`` keeps that binding. Calls into packages that are not being checked (torch, numpy,
builtins) are only counted. Stdlib-only; runs in worker processes.

Longer than the other modules on purpose: it is one AST visitor (:class:`Extractor`) whose
methods share one scope stack during a single pass; split, that pass would be scattered.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterable

from harness.drift.summaries import (
    KEYWORD_ONLY,
    POSITIONAL_ONLY,
    POSITIONAL_OR_KEYWORD,
    VAR_KEYWORD,
    VAR_POSITIONAL,
    CallRecord,
    Chain,
    ClassInfo,
    Deco,
    FuncInfo,
    ModuleSummary,
    Param,
)

BUILTIN_NAMES = frozenset(dir(builtins))
_VERSION_FN = re.compile(r"^is_(\w+)_version$")
_OPS = frozenset({"<", "<=", ">", ">=", "==", "!="})
_COMPS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
#: Child expression fields of common expression nodes (faster than ast.iter_child_nodes).
_EXPR_FIELDS: dict[type, tuple[str, ...]] = {
    ast.Subscript: ("value", "slice"),
    ast.BinOp: ("left", "right"),
    ast.Compare: ("left", "comparators"),
    ast.Tuple: ("elts",),
    ast.List: ("elts",),
    ast.Set: ("elts",),
    ast.Dict: ("keys", "values"),
    ast.Starred: ("value",),
    ast.UnaryOp: ("operand",),
    ast.BoolOp: ("values",),
    ast.IfExp: ("test", "body", "orelse"),
    ast.JoinedStr: ("values",),
    ast.FormattedValue: ("value", "format_spec"),
    ast.Slice: ("lower", "upper", "step"),
    ast.Await: ("value",),
    ast.Yield: ("value",),
    ast.YieldFrom: ("value",),
}


def chain_of(node: ast.AST) -> Chain | None:
    """``a.b.c`` -> ``("a", "b", "c")``; anything that is not a dotted name -> None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return None


def params_of(args: ast.arguments, full: bool) -> tuple[Param, ...]:
    """Parameters of a def/lambda. ``full`` keeps default and annotation source text."""

    def default(node: ast.AST | None) -> str | None:
        if node is None:
            return None
        return ast.unparse(node) if full else "..."

    def ann(node: ast.AST | None) -> str | None:
        return ast.unparse(node) if (full and node is not None) else None

    out: list[Param] = []
    positional = list(args.posonlyargs) + list(args.args)
    defaults: list[ast.AST | None] = [None] * (len(positional) - len(args.defaults)) + list(
        args.defaults
    )
    for i, arg in enumerate(positional):
        kind = POSITIONAL_ONLY if i < len(args.posonlyargs) else POSITIONAL_OR_KEYWORD
        out.append(Param(arg.arg, kind, default(defaults[i]), ann(arg.annotation)))
    if args.vararg is not None:
        out.append(Param(args.vararg.arg, VAR_POSITIONAL, None, ann(args.vararg.annotation)))
    for arg, dflt in zip(args.kwonlyargs, args.kw_defaults, strict=False):
        out.append(Param(arg.arg, KEYWORD_ONLY, default(dflt), ann(arg.annotation)))
    if args.kwarg is not None:
        out.append(Param(args.kwarg.arg, VAR_KEYWORD, None, ann(args.kwarg.annotation)))
    return tuple(out)


def deco_of(node: ast.expr) -> Deco:
    if isinstance(node, ast.Call):
        kwargs = tuple(
            (k.arg, repr(k.value.value))
            for k in node.keywords
            if k.arg is not None and isinstance(k.value, ast.Constant)
        )
        return Deco(chain_of(node.func), True, kwargs)
    return Deco(chain_of(node), False)


def _docstring_free(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            return body[1:]
    return body


def is_abstract(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    rest = _docstring_free(node.body)
    if not rest:
        return True
    if len(rest) != 1:
        return False
    stmt = rest[0]
    if isinstance(stmt, ast.Pass):
        return True
    if (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and stmt.value.value is Ellipsis
    ):
        return True
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _shallow(body: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements of a body including nested control flow, excluding nested defs' bodies."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for name in ("body", "orelse", "finalbody"):
            sub = getattr(stmt, name, None)
            if sub:
                yield from _shallow(sub)
        for handler in getattr(stmt, "handlers", ()) or ():
            yield from _shallow(handler.body)


def _wraps_target(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    for dec in fn.decorator_list:
        if isinstance(dec, ast.Call) and dec.args and isinstance(dec.args[0], ast.Name):
            chain = chain_of(dec.func)
            if chain and chain[-1] == "wraps":
                return dec.args[0].id
    return None


_KWARGS_MUTATORS = frozenset({"pop", "update", "setdefault", "clear", "popitem"})


def _mutated_kwargs(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[set[str], set[str]] | None:
    """When a wrapper edits its ``**kwargs`` before forwarding: identifier-like string
    literals in its body and the names of functions it hands ``kwargs`` to. None when
    ``kwargs`` is forwarded untouched."""
    if fn.args.kwarg is None:
        return None
    name = fn.args.kwarg.arg
    mutated = False
    literals: set[str] = set()
    helpers: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                base = target.value if isinstance(target, ast.Subscript) else target
                if isinstance(base, ast.Name) and base.id == name:
                    mutated = True
        elif isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == name
                and func.attr in _KWARGS_MUTATORS
            ):
                mutated = True
            passes = any(isinstance(a, ast.Name) and a.id == name for a in node.args) or any(
                isinstance(k.value, ast.Name) and k.value.id == name and k.arg is not None
                for k in node.keywords
            )
            if passes and isinstance(func, ast.Name):
                helpers.add(func.id)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.isidentifier()
        ):
            literals.add(node.value)
    return (literals, helpers) if mutated else None


def decorator_kind(
    node: ast.FunctionDef | ast.AsyncFunctionDef, depth: int = 0
) -> tuple[str | None, tuple[set[str], set[str]] | None]:
    """``preserving`` when every ``return`` hands back the decorated function itself or a
    ``functools.wraps(<it>)`` wrapper; ``factory`` when every return is such a decorator.
    The second item is set when a wrapper edits ``**kwargs`` (see :func:`_mutated_kwargs`)."""
    positional = node.args.posonlyargs + node.args.args
    first = positional[0].arg if positional else None
    inner: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    returns: list[ast.expr | None] = []
    for stmt in _shallow(node.body):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner[stmt.name] = stmt
        elif isinstance(stmt, ast.Return):
            returns.append(stmt.value)
    if not returns or not all(isinstance(r, ast.Name) for r in returns):
        return None, None
    names = [r.id for r in returns]  # type: ignore[union-attr]
    if first is not None and all(
        n == first or (n in inner and _wraps_target(inner[n]) == first) for n in names
    ):
        edits: tuple[set[str], set[str]] | None = None
        for n in set(names):
            if n in inner:
                found = _mutated_kwargs(inner[n])
                if found is not None:
                    edits = edits or (set(), set())
                    edits[0].update(found[0])
                    edits[1].update(found[1])
        return "preserving", edits
    if depth == 0:
        kinds = [decorator_kind(inner[n], 1) if n in inner else (None, None) for n in names]
        if all(k[0] == "preserving" for k in kinds):
            edits = None
            for _, found in kinds:
                if found is not None:
                    edits = edits or (set(), set())
                    edits[0].update(found[0])
                    edits[1].update(found[1])
            return "factory", edits
    return None, None


def _literals(fn: ast.AST) -> set[str]:
    return {
        n.value
        for n in ast.walk(fn)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier()
    }


def condition_of(node: ast.expr) -> tuple:
    """A guard condition as data: ("ver", pkg, op, version) leaves, and/or/not, "?" else."""
    if isinstance(node, ast.BoolOp):
        return (
            "and" if isinstance(node.op, ast.And) else "or",
            tuple(condition_of(v) for v in node.values),
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ("not", condition_of(node.operand))
    if isinstance(node, ast.Call) and len(node.args) == 2 and not node.keywords:
        chain = chain_of(node.func)
        match = _VERSION_FN.match(chain[-1]) if chain else None
        a, b = node.args
        if (
            match
            and isinstance(a, ast.Constant)
            and isinstance(b, ast.Constant)
            and a.value in _OPS
            and isinstance(b.value, str)
        ):
            return ("ver", match.group(1), a.value, b.value)
    return ("?",)


def has_version_leaf(cond: tuple) -> bool:
    tag = cond[0]
    if tag == "ver":
        return True
    if tag == "not":
        return has_version_leaf(cond[1])
    if tag in ("and", "or"):
        return any(has_version_leaf(c) for c in cond[1])
    return False


def _handled(node: ast.Try) -> str | None:
    found: str | None = None
    for handler in node.handlers:
        if handler.type is None:
            found = found or "Exception"
            continue
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        for t in types:
            chain = chain_of(t)
            name = chain[-1] if chain else ""
            if name == "TypeError":
                return "TypeError"
            if name in ("Exception", "BaseException"):
                found = "Exception"
    return found


def _target_names(node: ast.AST) -> Iterable[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _target_names(elt)
    elif isinstance(node, ast.Starred):
        yield from _target_names(node.value)


def _str_list(node: ast.AST) -> list[str] | None:
    if isinstance(node, (ast.List, ast.Tuple)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return [e.value for e in node.elts]  # type: ignore[attr-defined]
    return None


class _Scope:
    __slots__ = (
        "kind",
        "qualname",
        "bindings",
        "pending",
        "globals",
        "nonlocals",
        "cond",
        "self_name",
        "ctx",
        "access",
        "classinfo",
    )

    def __init__(self, kind: str, qualname: str) -> None:
        self.kind = kind
        self.qualname = qualname
        self.bindings: dict[str, list[tuple]] = {}
        self.pending: list[CallRecord] = []
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.cond = 0
        self.self_name: str | None = None
        self.ctx: ClassInfo | None = None
        self.access: str | None = None
        self.classinfo: ClassInfo | None = None


class Extractor:
    """Builds a ModuleSummary. ``interesting``: top-level packages whose calls are kept."""

    def __init__(
        self,
        modname: str,
        relpath: str,
        is_package: bool,
        *,
        calls: bool = True,
        interesting: frozenset[str] = frozenset(),
        full: bool = False,
    ) -> None:
        self.summary = ModuleSummary(modname, relpath, is_package)
        self.package = modname if is_package else modname.rpartition(".")[0]
        self.want_calls = calls
        self.interesting = interesting | {modname.split(".")[0]}
        self.full = full
        self.counts = {"calls": 0, "external": 0, "dynamic": 0, "unbound": 0}
        self.guards: list[tuple] = []
        self.handled: list[str] = []
        self.module = _Scope("module", "")
        self.scopes: list[_Scope] = [self.module]
        self._module_defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self._kwarg_editors: list[tuple[FuncInfo, tuple[set[str], set[str]]]] = []

    # -- driver -------------------------------------------------------------------------
    def run(self, tree: ast.Module) -> ModuleSummary:
        self.stmts(tree.body)
        self._close_module()
        self._resolve_kwarg_editors()
        self.summary.bindings = self.module.bindings
        self.summary.counts = self.counts
        return self.summary

    @property
    def scope(self) -> _Scope:
        return self.scopes[-1]

    def _fscope(self) -> _Scope:
        """Innermost scope where names resolve (class bodies are skipped, as in Python)."""
        for scope in reversed(self.scopes):
            if scope.kind != "class":
                return scope
        return self.module

    # -- bindings -----------------------------------------------------------------------
    def bind(self, name: str, binding: tuple, scope: _Scope | None = None) -> None:
        scope = scope or self.scope
        if scope.kind == "function" and name in scope.globals:
            self.module.bindings.setdefault(name, []).append(binding)
            return
        if scope.kind in ("module", "class") and scope.cond == 0:
            scope.bindings[name] = [binding]
        else:
            scope.bindings.setdefault(name, []).append(binding)

    def absolute(self, module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        parts = self.package.split(".") if self.package else []
        if level > 1:
            parts = parts[: len(parts) - (level - 1)]
        base = ".".join(parts)
        if module:
            return f"{base}.{module}" if base else module
        return base

    def imports(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.bind(alias.asname, ("import", alias.name, None))
                else:
                    top = alias.name.split(".")[0]
                    self.bind(top, ("import", top, None))
            return
        module = self.absolute(node.module, node.level)
        for alias in node.names:
            if alias.name == "*":
                if self.scope is self.module:
                    self.summary.stars.append(module)
                continue
            self.bind(alias.asname or alias.name, ("import", module, alias.name))

    def assign_binding(self, value: ast.expr) -> tuple:
        if isinstance(value, ast.Constant) and value.value is None:
            return ("none",)
        if self.scope.kind in ("module", "class"):
            chain = chain_of(value)
            if chain is not None:
                return ("alias", chain)
        return ("other",)

    def bind_targets(self, target: ast.AST, binding: tuple = ("other",)) -> None:
        for name in _target_names(target):
            self.bind(name, binding)
        self._self_attr(target)

    def _self_attr(self, target: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._self_attr(elt)
            return
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            scope = self._fscope()
            if scope.ctx is not None and target.value.id == scope.self_name:
                scope.ctx.self_attrs.add(target.attr)

    # -- statements ---------------------------------------------------------------------
    def stmts(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.stmt(stmt)

    def stmt(self, node: ast.stmt) -> None:  # noqa: C901 - a dispatcher
        t = type(node)
        if t is ast.FunctionDef or t is ast.AsyncFunctionDef:
            self.funcdef(node)  # type: ignore[arg-type]
        elif t is ast.ClassDef:
            self.classdef(node)  # type: ignore[arg-type]
        elif t is ast.Import or t is ast.ImportFrom:
            self.imports(node)  # type: ignore[arg-type]
        elif t is ast.Assign:
            self.expr(node.value)  # type: ignore[attr-defined]
            targets = node.targets  # type: ignore[attr-defined]
            binding = self.assign_binding(node.value) if len(targets) == 1 else ("other",)  # type: ignore[attr-defined]
            for target in targets:
                if isinstance(target, ast.Name):
                    self.bind(target.id, binding)
                else:
                    self.bind_targets(target)
                    self.expr_targets(target)
            if self.scope is self.module:
                self._module_assign(targets, node.value)  # type: ignore[attr-defined]
        elif t is ast.AugAssign:
            self.expr(node.value)  # type: ignore[attr-defined]
            target = node.target  # type: ignore[attr-defined]
            if isinstance(target, ast.Name):
                if self.scope.kind == "function":
                    self.bind(target.id, ("other",))
            else:
                self.expr_targets(target)
            if self.scope is self.module:
                self._structure_add(target, node.value)  # type: ignore[attr-defined]
        elif t is ast.AnnAssign:
            value = node.value  # type: ignore[attr-defined]
            target = node.target  # type: ignore[attr-defined]
            if value is not None:
                self.expr(value)
            if isinstance(target, ast.Name):
                if value is not None or self.scope.kind == "function":
                    self.bind(
                        target.id, self.assign_binding(value) if value is not None else ("other",)
                    )
                if self.scope.kind == "class" and self.scope.classinfo is not None:
                    self._field(target.id, node)  # type: ignore[arg-type]
            else:
                self._self_attr(target)
                self.expr_targets(target)
        elif t is ast.If:
            self.expr(node.test)  # type: ignore[attr-defined]
            cond = condition_of(node.test)  # type: ignore[attr-defined]
            guarded = has_version_leaf(cond)
            self.scope.cond += 1
            if guarded:
                self.guards.append(cond)
            self.stmts(node.body)  # type: ignore[attr-defined]
            if guarded:
                self.guards[-1] = ("not", cond)
            self.stmts(node.orelse)  # type: ignore[attr-defined]
            if guarded:
                self.guards.pop()
            self.scope.cond -= 1
        elif t is ast.Try or t.__name__ == "TryStar":
            handled = _handled(node)  # type: ignore[arg-type]
            self.scope.cond += 1
            if handled:
                self.handled.append(handled)
            self.stmts(node.body)  # type: ignore[attr-defined]
            if handled:
                self.handled.pop()
            for handler in node.handlers:  # type: ignore[attr-defined]
                if handler.type is not None:
                    self.expr(handler.type)
                if handler.name:
                    self.bind(handler.name, ("other",))
                self.stmts(handler.body)
            self.stmts(node.orelse)  # type: ignore[attr-defined]
            self.stmts(node.finalbody)  # type: ignore[attr-defined]
            self.scope.cond -= 1
        elif t is ast.For or t is ast.AsyncFor:
            self.expr(node.iter)  # type: ignore[attr-defined]
            self.scope.cond += 1
            self.bind_targets(node.target)  # type: ignore[attr-defined]
            self.stmts(node.body)  # type: ignore[attr-defined]
            self.stmts(node.orelse)  # type: ignore[attr-defined]
            self.scope.cond -= 1
        elif t is ast.While:
            self.expr(node.test)  # type: ignore[attr-defined]
            self.scope.cond += 1
            self.stmts(node.body)  # type: ignore[attr-defined]
            self.stmts(node.orelse)  # type: ignore[attr-defined]
            self.scope.cond -= 1
        elif t is ast.With or t is ast.AsyncWith:
            for item in node.items:  # type: ignore[attr-defined]
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.bind_targets(item.optional_vars)
            self.stmts(node.body)  # type: ignore[attr-defined]
        elif t is ast.Expr:
            self.expr(node.value)  # type: ignore[attr-defined]
            if self.scope is self.module:
                self._structure_call(node.value)  # type: ignore[attr-defined]
        elif t is ast.Global:
            self._fscope().globals.update(node.names)  # type: ignore[attr-defined]
        elif t is ast.Nonlocal:
            self._fscope().nonlocals.update(node.names)  # type: ignore[attr-defined]
        else:
            self.scope.cond += 1
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self.stmt(child)
                elif isinstance(child, ast.expr):
                    self.expr(child)
                elif isinstance(child, ast.match_case):
                    if child.guard is not None:
                        self.expr(child.guard)
                    self.stmts(child.body)
            self.scope.cond -= 1

    def expr_targets(self, target: ast.AST) -> None:
        """Walk the sub-expressions of an assignment target (``a[f(x)] = ...``)."""
        if isinstance(target, (ast.Attribute, ast.Subscript, ast.Starred)):
            self.expr(target)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self.expr_targets(elt)

    # module-level bookkeeping: __all__ and diffusers/transformers-style _import_structure
    def _module_assign(self, targets: list[ast.expr], value: ast.expr) -> None:
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "__all__":
                names = _str_list(value)
                if names is not None:
                    self.summary.all_names = tuple(names)
            elif isinstance(target, ast.Name) and target.id == "_import_structure":
                if isinstance(value, ast.Dict):
                    for key, val in zip(value.keys, value.values, strict=False):
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            for name in _str_list(val) or ():
                                self.summary.import_structure.setdefault(name, key.value)
            else:
                self._structure_add(target, value)

    def _structure_key(self, target: ast.AST) -> str | None:
        if (
            isinstance(target, ast.Subscript)
            and isinstance(target.value, ast.Name)
            and target.value.id == "_import_structure"
            and isinstance(target.slice, ast.Constant)
            and isinstance(target.slice.value, str)
        ):
            return target.slice.value
        return None

    def _structure_add(self, target: ast.AST, value: ast.expr) -> None:
        key = self._structure_key(target)
        if key is not None:
            for name in _str_list(value) or ():
                self.summary.import_structure.setdefault(name, key)

    def _structure_call(self, value: ast.expr) -> None:
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.args:
            key = self._structure_key(value.func.value)
            if key is None:
                return
            arg = value.args[0]
            if value.func.attr == "extend":
                self._structure_add(value.func.value, arg)
            elif (
                value.func.attr == "append"
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                self.summary.import_structure.setdefault(arg.value, key)

    def _field(self, name: str, node: ast.AnnAssign) -> None:
        info = self.scope.classinfo
        assert info is not None
        if "ClassVar" in ast.unparse(node.annotation):
            return
        has_default = node.value is not None
        in_init = True
        if isinstance(node.value, ast.Call):
            chain = chain_of(node.value.func)
            if chain and chain[-1] == "field":
                has_default = any(
                    k.arg in ("default", "default_factory") for k in node.value.keywords
                )
                for k in node.value.keywords:
                    if (
                        k.arg == "init"
                        and isinstance(k.value, ast.Constant)
                        and k.value.value is False
                    ):
                        in_init = False
        info.fields = info.fields + ((name, has_default, in_init),)

    # -- definitions --------------------------------------------------------------------
    def funcdef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        parent = self.scope
        for dec in node.decorator_list:
            self.expr(dec)
        for dflt in node.args.defaults:
            self.expr(dflt)
        for dflt in node.args.kw_defaults:
            if dflt is not None:
                self.expr(dflt)
        prefix = (
            parent.qualname + ("." if parent.kind == "class" else ".<locals>.")
            if parent.qualname
            else ""
        )
        qualname = prefix + node.name
        info = FuncInfo(
            name=node.name,
            qualname=qualname,
            lineno=node.lineno,
            params=params_of(node.args, self.full),
            returns=ast.unparse(node.returns) if (self.full and node.returns is not None) else None,
            decorators=tuple(deco_of(d) for d in node.decorator_list),
            abstract=parent.kind == "class" and is_abstract(node),
        )
        if parent.kind == "module" and (node.args.args or node.args.posonlyargs):
            info.deco_kind, edits = decorator_kind(node)  # decorators are module-level functions
            if edits is not None:
                self._kwarg_editors.append((info, edits))
        if parent.kind == "module":
            self._module_defs[node.name] = node
        self.bind(node.name, ("def", info))
        if parent.kind != "function":
            self.summary.functions[qualname] = info

        scope = _Scope("function", qualname)
        enclosing = self._fscope()
        if parent.kind == "class":
            names = {d.chain[-1] for d in info.decorators if d.chain}
            positional = node.args.posonlyargs + node.args.args
            scope.ctx = parent.classinfo
            if "staticmethod" not in names and positional:
                scope.self_name = positional[0].arg
                scope.access = "class" if "classmethod" in names else "instance"
        elif enclosing.kind == "function":
            scope.self_name, scope.ctx, scope.access = (
                enclosing.self_name,
                enclosing.ctx,
                enclosing.access,
            )
        for param in info.params:
            scope.bindings[param.name] = [("param",)]
        if parent.kind != "class" and scope.self_name in scope.bindings:
            scope.self_name = None  # a closure that rebinds the name: no longer the instance
        handled, self.handled = self.handled, []
        self.scopes.append(scope)
        self.stmts(node.body)
        self.scopes.pop()
        self.handled = handled
        self._close(scope)

    def classdef(self, node: ast.ClassDef) -> None:
        parent = self.scope
        for dec in node.decorator_list:
            self.expr(dec)
        for base in node.bases:
            self.expr(base)
        metaclass = None
        other_kw = False
        for kw in node.keywords:
            self.expr(kw.value)
            if kw.arg == "metaclass":
                metaclass = chain_of(kw.value) or ("?",)
            else:
                other_kw = True
        prefix = (
            parent.qualname + ("." if parent.kind == "class" else ".<locals>.")
            if parent.qualname
            else ""
        )
        qualname = prefix + node.name
        bases = []
        for base in node.bases:
            if isinstance(base, ast.Subscript):
                base = base.value
            bases.append(chain_of(base))
        info = ClassInfo(
            name=node.name,
            qualname=qualname,
            lineno=node.lineno,
            bases=tuple(bases),
            metaclass=metaclass,
            has_other_keywords=other_kw,
            decorators=tuple(deco_of(d) for d in node.decorator_list),
        )
        self.bind(node.name, ("class", info))
        self.summary.classes[qualname] = info
        scope = _Scope("class", qualname)
        scope.classinfo = info
        scope.bindings = info.body
        self.scopes.append(scope)
        self.stmts(node.body)
        self.scopes.pop()

    # -- expressions --------------------------------------------------------------------
    def expr(self, node: ast.AST) -> None:
        stack = [node]
        pop = stack.pop
        push = stack.append
        extend = stack.extend
        while stack:
            n = pop()
            t = type(n)
            if t is ast.Name or t is ast.Constant:
                continue
            if t is ast.Call:
                if self.want_calls:
                    self.call(n)  # type: ignore[arg-type]
                push(n.func)  # type: ignore[attr-defined]
                extend(n.args)  # type: ignore[attr-defined]
                for kw in n.keywords:  # type: ignore[attr-defined]
                    push(kw.value)
            elif t is ast.Attribute:
                push(n.value)  # type: ignore[attr-defined]
            elif t is ast.Lambda:
                self.lambda_(n)  # type: ignore[arg-type]
            elif t in _COMPS:
                self.comprehension(n)
            elif t is ast.NamedExpr:
                self.bind(n.target.id, ("other",), self._fscope())  # type: ignore[attr-defined]
                push(n.value)  # type: ignore[attr-defined]
            else:
                fields = _EXPR_FIELDS.get(t)
                if fields is None:
                    extend(ast.iter_child_nodes(n))
                    continue
                for name in fields:
                    value = getattr(n, name)
                    if value is None:
                        continue
                    if type(value) is list:
                        extend(v for v in value if v is not None)
                    else:
                        push(value)

    def _inner_scope(self, qualname: str) -> _Scope:
        scope = _Scope("function", qualname)
        enclosing = self._fscope()
        scope.self_name, scope.ctx, scope.access = (
            enclosing.self_name,
            enclosing.ctx,
            enclosing.access,
        )
        return scope

    def lambda_(self, node: ast.Lambda) -> None:
        for dflt in node.args.defaults:
            self.expr(dflt)
        scope = self._inner_scope(self._fscope().qualname or "<module>")
        for param in params_of(node.args, False):
            scope.bindings[param.name] = [("param",)]
        if scope.self_name in scope.bindings:
            scope.self_name = None
        self.scopes.append(scope)
        self.expr(node.body)
        self.scopes.pop()
        self._close(scope)

    def comprehension(self, node: ast.AST) -> None:
        gens: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
        self.expr(gens[0].iter)
        scope = self._inner_scope(self._fscope().qualname or "<module>")
        self.scopes.append(scope)
        for i, gen in enumerate(gens):
            if i:
                self.expr(gen.iter)
            for name in _target_names(gen.target):
                scope.bindings.setdefault(name, []).append(("other",))
            for cond in gen.ifs:
                self.expr(cond)
        if isinstance(node, ast.DictComp):
            self.expr(node.key)
            self.expr(node.value)
        else:
            self.expr(node.elt)  # type: ignore[attr-defined]
        self.scopes.pop()
        self._close(scope)

    # -- calls --------------------------------------------------------------------------
    def call(self, node: ast.Call) -> None:
        self.counts["calls"] += 1
        func = node.func
        scope = self._fscope()
        kind = "name"
        chain = None
        explicit_super = None
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "super"
        ):
            if scope.ctx is None or scope.access is None:
                self.counts["dynamic"] += 1
                return
            chain, kind = (func.attr,), "super"
            if func.value.args:
                super_of = chain_of(func.value.args[0])
                if super_of is None:
                    self.counts["dynamic"] += 1
                    return
                explicit_super = super_of if super_of != (scope.ctx.name,) else None
        else:
            chain = chain_of(func)
            if chain is None:
                self.counts["dynamic"] += 1
                return
            if scope.self_name is not None and chain[0] == scope.self_name and len(chain) > 1:
                kind = "self"
                chain = chain[1:]
        npos = 0
        star = False
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                star = True
            else:
                npos += 1
        keywords = []
        dstar = False
        for kw in node.keywords:
            if kw.arg is None:
                dstar = True
            else:
                keywords.append(kw.arg)
        record = CallRecord(
            lineno=node.lineno,
            end_lineno=getattr(node, "end_lineno", None) or node.lineno,
            col=node.col_offset,
            caller=scope.qualname or "<module>",
            kind=kind,
            chain=chain,
            ctx_class=scope.ctx.qualname if (kind in ("self", "super") and scope.ctx) else None,
            access=scope.access if kind in ("self", "super") else None,
            npos=npos,
            star=star,
            keywords=tuple(keywords),
            dstar=dstar,
            guards=tuple(self.guards),
            handled=(
                "TypeError"
                if "TypeError" in self.handled
                else (self.handled[-1] if self.handled else None)
            ),
        )
        record.super_of = explicit_super
        if kind in ("self", "super"):
            self.summary.calls.append(record)
        else:
            scope.pending.append(record)

    def _external(self, bindings: list[tuple]) -> bool:
        """All bindings are imports from packages we do not check (torch, numpy, stdlib)."""
        for b in bindings:
            if b[0] != "import" or b[1].split(".")[0] in self.interesting:
                return False
        return True

    def _close(self, scope: _Scope) -> None:
        parent = None
        for record in scope.pending:
            root = record.chain[0]
            if root in scope.globals:
                self.module.pending.append(record)
                continue
            bindings = None if root in scope.nonlocals else scope.bindings.get(root)
            if bindings is None:
                if parent is None:
                    parent = self._fscope()  # ``scope`` is already popped
                parent.pending.append(record)
                continue
            kinds = {b[0] for b in bindings}
            if kinds == {"import"}:
                if self._external(bindings):
                    self.counts["external"] += 1
                else:
                    record.local = tuple(bindings)
                    self.summary.calls.append(record)
            elif kinds == {"def"} and len(bindings) == 1 and len(record.chain) == 1:
                record.kind = "localdef"
                record.localdef = bindings[0][1]
                self.summary.calls.append(record)
            else:
                self.counts["dynamic"] += 1
        scope.pending = []

    def _resolve_kwarg_editors(self) -> None:
        """A decorator whose wrapper edits ``**kwargs`` keeps the signature *plus* the
        keywords its edits mention, when the editing helpers are in this module; otherwise
        its effect is unknown and calls through it are skipped."""
        for info, (literals, helpers) in self._kwarg_editors:
            extra = set(literals)
            for helper in helpers:
                node = self._module_defs.get(helper)
                if node is None:
                    info.deco_kind = None
                    break
                extra |= _literals(node)
            else:
                info.deco_extra = tuple(sorted(extra))

    def _close_module(self) -> None:
        module = self.module
        for record in module.pending:
            root = record.chain[0]
            bindings = module.bindings.get(root)
            if bindings is None:
                if self.summary.stars:
                    self.summary.calls.append(record)
                elif root in BUILTIN_NAMES:
                    self.counts["external"] += 1
                else:
                    self.counts["unbound"] += 1
            elif self._external(bindings):
                self.counts["external"] += 1
            else:
                self.summary.calls.append(record)
        module.pending = []


def summarize(
    source: bytes | str,
    modname: str,
    relpath: str,
    is_package: bool,
    *,
    calls: bool = True,
    interesting: frozenset[str] = frozenset(),
    full: bool = False,
) -> ModuleSummary:
    """Parse one module; a file that does not parse yields a summary with ``error`` set."""
    try:
        tree = ast.parse(source, filename=relpath)
    except (SyntaxError, ValueError) as exc:
        summary = ModuleSummary(modname, relpath, is_package)
        summary.error = f"{type(exc).__name__}: {exc}"
        return summary
    extractor = Extractor(
        modname, relpath, is_package, calls=calls, interesting=interesting, full=full
    )
    return extractor.run(tree)
