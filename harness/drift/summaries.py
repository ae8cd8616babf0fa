"""Plain data the drift checker passes around (picklable: phase 1 runs in worker processes).

A module is reduced to a :class:`ModuleSummary`: what each top-level name is bound to, its
classes (bases, decorators, class-body bindings), its functions' signatures, and the call
sites found in it. Everything after that (name resolution across modules and packages,
MRO, decorators, binding checks) works on summaries only, never on ASTs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Parameter kinds, spelled like :class:`inspect.Parameter` kinds.
POSITIONAL_ONLY = "POSITIONAL_ONLY"
POSITIONAL_OR_KEYWORD = "POSITIONAL_OR_KEYWORD"
VAR_POSITIONAL = "VAR_POSITIONAL"
KEYWORD_ONLY = "KEYWORD_ONLY"
VAR_KEYWORD = "VAR_KEYWORD"

#: A dotted name as written in the source: ``("accelerate", "utils", "set_module_tensor_to_device")``.
Chain = tuple[str, ...]


@dataclass(slots=True, frozen=True)
class Param:
    name: str
    kind: str
    #: Source text of the default (``None`` when the parameter is required). In fast mode
    #: (call-site scan) only presence matters and the text is ``"..."``.
    default: str | None = None
    annotation: str | None = None

    @property
    def required(self) -> bool:
        return self.default is None and self.kind in (
            POSITIONAL_ONLY,
            POSITIONAL_OR_KEYWORD,
            KEYWORD_ONLY,
        )


@dataclass(slots=True, frozen=True)
class Deco:
    """A decorator: its dotted name (``None`` when not a plain name), whether it is called
    (``@torch.no_grad()``), and keyword arguments of the call that matter (``init=False``)."""

    chain: Chain | None
    called: bool = False
    kwargs: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class FuncInfo:
    name: str
    qualname: str
    lineno: int
    params: tuple[Param, ...]
    returns: str | None = None
    decorators: tuple[Deco, ...] = ()
    #: Body is only ``pass`` / ``...`` / ``raise NotImplementedError``.
    abstract: bool = False
    #: How this function behaves *as a decorator*: ``"preserving"`` (returns its argument,
    #: or a ``functools.wraps(arg)`` wrapper), ``"factory"`` (returns such a decorator), or None.
    deco_kind: str | None = None
    #: Keywords a ``preserving`` decorator's wrapper accepts on top of the wrapped function's
    #: parameters because it edits ``**kwargs`` before forwarding (huggingface_hub's
    #: ``validate_hf_hub_args`` drops legacy ``proxies=`` / ``use_auth_token=``).
    deco_extra: tuple[str, ...] = ()


@dataclass(slots=True)
class ClassInfo:
    name: str
    qualname: str
    lineno: int
    bases: tuple[Chain | None, ...] = ()
    metaclass: Chain | None = None
    has_other_keywords: bool = False
    decorators: tuple[Deco, ...] = ()
    #: name -> bindings in the class body (methods, aliases, nested classes).
    body: dict[str, list[tuple]] = field(default_factory=dict)
    #: names assigned as ``self.<name> = ...`` in the class's methods.
    self_attrs: set[str] = field(default_factory=set)
    #: dataclass-style fields: (name, has_default, in_init).
    fields: tuple[tuple[str, bool, bool], ...] = ()


# Bindings are tuples, first item the kind:
#   ("def", FuncInfo) ("class", ClassInfo) ("import", module, name|None)
#   ("alias", chain)  ("none",)  ("other",)  ("param",)


@dataclass(slots=True)
class CallRecord:
    """One call site, with what phase 1 could tell about its callee."""

    lineno: int
    end_lineno: int
    col: int
    caller: str
    #: "name" (root resolved at module level or through ``local``), "self", "cls",
    #: "super" (``super().m``), "localdef" (a nested function of the caller).
    kind: str
    chain: Chain
    ctx_class: str | None
    #: "instance" or "class": how ``self`` / ``cls`` / ``super()`` is bound in the caller.
    access: str | None
    npos: int
    star: bool
    keywords: tuple[str, ...]
    dstar: bool
    guards: tuple = ()
    #: "TypeError" when an enclosing ``try`` catches TypeError, "Exception" for broad catches.
    handled: str | None = None
    local: tuple | None = None
    localdef: FuncInfo | None = None
    #: ``super(X, self).m``: the class named in the call (None for plain ``super()``).
    super_of: Chain | None = None


@dataclass(slots=True)
class ModuleSummary:
    name: str
    relpath: str
    is_package: bool
    bindings: dict[str, list[tuple]] = field(default_factory=dict)
    stars: list[str] = field(default_factory=list)
    all_names: tuple[str, ...] | None = None
    import_structure: dict[str, str] = field(default_factory=dict)
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    functions: dict[str, FuncInfo] = field(default_factory=dict)
    calls: list[CallRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
