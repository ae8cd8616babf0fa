"""The lifecycle state machine: random sequences of adapter operations on a real pipeline,
checked after every step against the pure model (``model.py``).

Oracle after each step: the effective weight of every LoRA-targetable module equals the
pristine weight plus the model's contributions (reference deltas from the file itself,
``harness.oracles.lora``); every ``output_every`` steps and after each IP-Adapter step,
one denoising step equals the same step of a pristine copy patched by hand with those
deltas (plus the model's IP-Adapter, loaded once into that copy); the caller's state
dicts are unchanged. The failing sequence is shrunk by hypothesis and turned into a
standalone script (``repro.py``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.cell.classify import LibraryError
from harness.drivers.lora import save_kwargs
from harness.drivers.probe import accepts
from harness.inputs.checkpoints.lora.build import Built
from harness.inputs.checkpoints.lora.cases import Case, full_case, realise
from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.checkpoints.lora.layouts import DENOISER
from harness.inputs.models.run import run_step
from harness.oracles.compare import fingerprint_inputs, input_mutations, outputs_close
from harness.oracles.lora import Reference, allowance, effective_weight, parse
from harness.protocol.outcomes import Outcome
from harness.scenarios.lifecycle.model import LifecycleModel, Module, as_plain

#: Realistic adapter names (peft < 0.9 strips ``.<name>`` from saved keys: a one-letter
#: name would mangle module paths).
NAMES = ("style", "detail", "extra")
#: Target subsets of a LoRA: ``even``/``odd`` halves of the denoiser layers (overlapping in
#: the first), ``denoiser`` (no text encoder), ``all``.
PARTS = ("all", "even", "odd", "denoiser")
#: One machine row per family: the target subsets it draws and whether IP-Adapter rules are
#: drawn too. ``lora`` and ``lora-ip`` draw denoiser-only files, so a broken text-encoder
#: path (transformers 5 in 0.38-0.40) is the ``text-encoders`` row's finding and cannot end
#: every other run at the same first load.
FAMILIES: dict[str, tuple[tuple[str, ...], bool]] = {
    "lora": (("odd", "denoiser"), False),
    "text-encoders": (("all", "even"), False),
    "lora-ip": (("odd", "denoiser"), True),
}
RANKS = (1, 2, 4, 8)
WEIGHTS = (0.0, 0.5, 1.0, 1.5)
#: Rank the machine pads to with ``enable_lora_hotswap(target_rank=...)``.
HOTSWAP_TARGET_RANK = 8
#: IP-Adapter entries of the hub-like folder the machine switches between, per arch
#: (1024- and 1280-wide encoders). ``ADAPTER_COMPAT_LIFECYCLE_IP`` narrows the list.
IP_ENTRIES: dict[str, tuple[str, ...]] = {
    "sd15": ("sd15-base", "sd15-light", "sd15-base-vitG"),
    "sdxl": ("sdxl-base", "sdxl-base-vith"),
}


@dataclass(frozen=True)
class LoraSpec:
    """What a drawn LoRA file is: format, target subset, rank, alpha (None: no key), seed."""

    fmt: str
    part: str
    rank: int
    alpha: float | None
    seed: int

    @property
    def content(self) -> str:
        alpha = "-" if self.alpha is None else f"{self.alpha:g}"
        return f"{self.fmt}/{self.part}/r{self.rank}/a{alpha}/s{self.seed}"


@dataclass
class Lora:
    spec: LoraSpec
    built: Built
    ref: Reference
    modules: frozenset[Module]


class LoraBank:
    """Builds (once) and caches the LoRA files a machine draws, with their references."""

    def __init__(self, scene: Any) -> None:
        self.scene = scene
        self._cache: dict[LoraSpec, Lora] = {}
        self._by_content: dict[str, Lora] = {}
        self._deltas: dict[tuple[str, Module], torch.Tensor] = {}

    def get(self, spec: LoraSpec) -> Lora:
        if spec not in self._cache:
            scene = self.scene
            fmt = FORMATS[spec.fmt]
            alpha = spec.alpha if fmt.alpha else None
            case = full_case(fmt, scene.arch, scene.layout, rank=spec.rank, alpha=alpha)
            denoiser = DENOISER[scene.arch]
            # Block layers only: Flux's global layers are the formats suite's subject.
            picks = [
                p
                for p in case.picks
                if p.group.component != denoiser or "blocks." in p.group.native
            ]
            if scene.arch != "flux":
                picks = list(case.picks)
            den = [p for p in picks if p.group.component == denoiser]
            enc = [p for p in picks if p.group.component != denoiser]
            if spec.part == "even":
                picks = [p for i, p in enumerate(den) if i % 2 == 0] + enc
            elif spec.part == "odd":
                picks = [p for i, p in enumerate(den) if i % 2 == 1 or i == 0]
            elif spec.part == "denoiser":
                picks = den
            elif spec.part == "even-denoiser":
                picks = [p for i, p in enumerate(den) if i % 2 == 0]
            built = realise(fmt, scene.arch, scene.layout, Case(picks, 0, "float32", spec.seed, 0))
            ref = parse(built.state_dict, fmt, scene.arch, scene.layout)
            lora = Lora(spec, built, ref, frozenset(ref.terms))
            self._cache[spec] = lora
            self._by_content[spec.content] = lora
        return self._cache[spec]

    def by_content(self, content: str) -> Lora:
        return self._by_content[content]

    def delta(self, content: str, module: Module) -> torch.Tensor:
        key = (content, module)
        if key not in self._deltas:
            self._deltas[key] = self.by_content(content).ref.delta(*module)
        return self._deltas[key]


#: Target subsets a hotswap file may take (text-encoder free), largest first.
SWAP_PARTS = ("denoiser", "odd", "even-denoiser")


def swappable(bank: LoraBank, spec: LoraSpec, targets: set[Module]) -> LoraSpec | None:
    """``spec`` narrowed to the largest text-encoder-free part within ``targets``."""
    denoiser = DENOISER[bank.scene.arch]
    for part in SWAP_PARTS:
        candidate = LoraSpec(spec.fmt, part, spec.rank, spec.alpha, spec.seed)
        modules = bank.get(candidate).modules
        if all(c == denoiser for c, _ in modules) and modules <= targets:
            return candidate
    return None


def expected_delta(
    bank: LoraBank, model: LifecycleModel, module: Module, shape: torch.Size
) -> torch.Tensor | None:
    terms = model.contributions(module)
    if not terms:
        return None
    total = torch.zeros(shape, dtype=torch.float64)
    for content, weight in terms:
        total = total + weight * bank.delta(content, module).reshape(shape)
    return total


def probe(module: torch.nn.Module) -> torch.Tensor:
    """The weight a Linear / 1x1-Conv-like module acts with (one forward of ``[I; 0]``)."""
    return effective_weight(module)


def observe(scene: Any, pipe: Any, modules: set[Module] | None = None) -> dict[str, dict[str, Any]]:
    """Effective weights (identity probe) of ``modules`` (None: every targetable module)."""
    out: dict[str, dict[str, Any]] = {}
    for component in scene.layout:
        layers = scene.modules(pipe, component)
        out[component] = {
            name: probe(module)
            for name, module in layers.items()
            if modules is None or (component, name) in modules
        }
    return out


def touched(*models: LifecycleModel, extra: frozenset[Module] = frozenset()) -> set[Module]:
    """Modules a step can have changed: wrapped or baked in any of ``models``, or targeted
    by the step's file."""
    out = set(extra)
    for model in models:
        out |= set(model.layers) | set(model.baked)
    return out


def mismatches(
    scene: Any, bank: LoraBank, model: LifecycleModel, observed: dict[str, dict[str, Any]]
) -> dict[str, float]:
    """Modules whose observed effective weight is not pristine + the model's deltas."""
    out: dict[str, float] = {}
    for component, weights in observed.items():
        for name, obs in weights.items():
            base = scene.base[component][name]
            exp = expected_delta(bank, model, (component, name), base.shape)
            exp = torch.zeros_like(base) if exp is None else exp
            tol = allowance(exp, base, torch.float32, scene.dtype)
            err = float((obs - base - exp).abs().max())
            if err > tol:
                out[f"{component}.{name}"] = err
    return out


def patched_copy(scene: Any, bank: LoraBank, model: LifecycleModel) -> Any:
    """A pristine zoo copy whose weights were patched by hand with the model's deltas."""
    pipe = scene.fresh()
    with torch.no_grad():
        for component in scene.layout:
            for name, module in scene.modules(pipe, component).items():
                exp = expected_delta(bank, model, (component, name), module.weight.shape)
                if exp is not None:
                    module.weight += exp.to(device=module.weight.device, dtype=module.weight.dtype)
    return pipe


@dataclass
class MachineContext:
    """Everything one machine check shares across its hypothesis runs."""

    compat: Any
    arch: str
    scene: Any
    bank: LoraBank
    rules: dict[str, bool]
    device: torch.device
    ipa: Any = None
    family: str = "lora"
    #: A denoising-step comparison every this many steps (and at the end of each run).
    output_every: int = 8
    formats: tuple[str, ...] = ("peft", "kohya")
    ip_entries: tuple[str, ...] = ()
    #: peft semantics of a load (``harness.drivers.lifecycle.load_activates``).
    activates: bool = True
    runs: list[list[dict[str, Any]]] = field(default_factory=list)
    steps_total: int = 0
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lifecycle-")))

    @property
    def parts(self) -> tuple[str, ...]:
        """Target subsets this family draws, narrowed by ``ADAPTER_COMPAT_LIFECYCLE_PARTS``."""
        own = FAMILIES[self.family][0]
        return tuple(p for p in parts_in_focus() if p in own) or own

    @property
    def with_ip(self) -> bool:
        return FAMILIES[self.family][1]

    def drawn_rules(self) -> list[str]:
        out = [r for r, ok in self.rules.items() if ok and r != "ip_adapter"]
        if self.with_ip and self.rules.get("ip_adapter"):
            out.append("ip_adapter")
        return sorted(out)


def ranks_in_focus() -> tuple[int, ...]:
    """``ADAPTER_COMPAT_LIFECYCLE_RANKS`` (comma list) narrows the ranks drawn: one rank
    keeps peft's swap of differently sized tensors (a real INPUT_MUTATED finding of its
    own) out of a planted-bug run."""
    wanted = os.environ.get("ADAPTER_COMPAT_LIFECYCLE_RANKS")
    return tuple(int(r) for r in wanted.split(",")) if wanted else RANKS


def parts_in_focus() -> tuple[str, ...]:
    """``ADAPTER_COMPAT_LIFECYCLE_PARTS`` narrows the target subsets (self-tests use
    ``denoiser`` to keep text-encoder hotswap findings out of a planted-bug run)."""
    wanted = os.environ.get("ADAPTER_COMPAT_LIFECYCLE_PARTS")
    if not wanted:
        return PARTS
    return tuple(p for p in PARTS if p in {w.strip() for w in wanted.split(",")}) or PARTS


def rules_in_focus() -> set[str] | None:
    """``ADAPTER_COMPAT_LIFECYCLE_RULES`` (comma list of ``RULE_APIS`` families and
    ``hotswap``) narrows the rules drawn, e.g. a planted-bug self-test that needs a swap."""
    wanted = os.environ.get("ADAPTER_COMPAT_LIFECYCLE_RULES")
    return {w.strip() for w in wanted.split(",")} if wanted else None


def ip_entries(arch: str) -> tuple[str, ...]:
    wanted = os.environ.get("ADAPTER_COMPAT_LIFECYCLE_IP")
    entries = IP_ENTRIES.get(arch, ())
    if wanted:
        keep = {w.strip() for w in wanted.split(",")}
        entries = tuple(e for e in entries if e in keep)
    return entries


def make_machine(ctx: MachineContext) -> type:
    """The RuleBasedStateMachine class for one check (rules the cell lacks are never drawn)."""
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

    compat, scene, bank = ctx.compat, ctx.scene, ctx.bank
    specs = st.builds(
        LoraSpec,
        fmt=st.sampled_from(ctx.formats),
        part=st.sampled_from(ctx.parts),
        rank=st.sampled_from(ranks_in_focus()),
        alpha=st.sampled_from((None, 1.0, 2.0)),
        seed=st.integers(0, 3),
    )
    focus = rules_in_focus()
    has = {rule: ok and (focus is None or rule in focus) for rule, ok in ctx.rules.items()}
    ip_allowed = ctx.with_ip and has.get("ip_adapter") and bool(ctx.ip_entries)

    class LifecycleMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[dict[str, Any]] = []
            ctx.runs.append(self.steps)
            self.pipe = scene.fresh()  # our zoo copy: its failures are ours
            self.model = LifecycleModel()
            self.ever_loaded = False
            self.saved = 0
            self.clean = True  # no finding raised in this run so far
            self.output_at = 0  # step count at the last output comparison

        # -- helpers ------------------------------------------------------------------
        def _free_name(self) -> str:
            return next(n for n in NAMES if n not in self.model.adapters)

        def _record(self, op: str, **kw: Any) -> dict[str, Any]:
            step = {"op": op, **kw}
            self.steps.append(step)
            ctx.steps_total += 1
            # Until the step's check passes: a finding raised inside the step (e.g. an
            # INPUT_MUTATED load, before the model learns of the adapter) must not be
            # followed by teardown's output check, which would report the model/pipe
            # disagreement as WRONG_RESULT and mask the real finding.
            self.clean = False
            return step

        def _call(
            self,
            step: dict[str, Any],
            fn: Callable[[], Any],
            rejectable: bool = False,
            names: Iterable[str] = (),
        ) -> bool:
            """Run a library call; a clear rejection (one naming something of ``names``) is
            allowed where ``rejectable`` (the model then stays as it was); any other step
            is valid, so its refusal is REFUSED. Returns whether the call went through."""
            compat.input_valid = not rejectable
            try:
                with compat.library_call(names=names):
                    fn()
            except LibraryError as exc:
                if rejectable and exc.outcome is Outcome.CLEAR_ERROR:
                    step["rejected"] = f"{type(exc.original).__name__}: {exc.original}"[:300]
                    return False
                step["error"] = f"{type(exc.original).__name__}: {exc.original}"[:300]
                raise LibraryError(
                    exc.original,
                    exc.outcome,
                    f"step {len(self.steps)} ({_describe(step)}): {exc.reason}: "
                    f"{type(exc.original).__name__}: {str(exc.original)[:200]}",
                ) from exc.original
            return True

        def _check(
            self,
            step: dict[str, Any],
            before: LifecycleModel,
            output: bool = False,
            files: frozenset[Module] = frozenset(),
        ) -> None:
            step["expected"] = as_plain(self.model.expected())
            with compat.library_call():
                observed = observe(scene, self.pipe, touched(before, self.model, extra=files))
            bad = mismatches(scene, bank, self.model, observed)
            where = f"step {len(self.steps)} ({_describe(step)})"
            if bad and "rejected" in step:
                step["mismatch"] = dict(list(bad.items())[:10])
                compat.detail(mismatched_modules=dict(list(bad.items())[:20]))
                compat.finding(
                    Outcome.STALE_STATE,
                    f"{where} was rejected ({step['rejected'][:160]}) but left {len(bad)} "
                    "module(s) changed: " + ", ".join(list(bad)[:4]),
                )
            if bad:
                stale = not mismatches(scene, bank, before, observed)
                step["mismatch"] = dict(list(bad.items())[:10])
                compat.detail(mismatched_modules=dict(list(bad.items())[:20]))
                compat.finding(
                    Outcome.STALE_STATE if stale else Outcome.WRONG_RESULT,
                    f"after {where}: {len(bad)} module(s) differ from the model "
                    f"{'(the step had no effect)' if stale else ''}: " + ", ".join(list(bad)[:4]),
                )
            if output or len(self.steps) % ctx.output_every == 0:
                self._check_output(step, where)
            self.clean = True

        def teardown(self) -> None:
            """One denoising step at the end of every run whose weights all matched (the
            weight oracle ran after each step; the output one covers what weights cannot)."""
            if self.clean and self.steps and self.output_at != len(self.steps):
                step = self.steps[-1]
                self._check_output(step, f"step {len(self.steps)} ({_describe(step)}, end)")

        def _check_output(self, step: dict[str, Any], where: str) -> None:
            self.output_at = len(self.steps)
            expected_pipe = patched_copy(scene, bank, self.model)
            entry = self.model.ip_adapter
            if entry is not None:
                ctx.ipa.load(compat, expected_pipe, entry)
                want = ctx.ipa.run(compat, expected_pipe, entry)
                got = ctx.ipa.run(compat, self.pipe, entry)
            else:
                want = run_step(expected_pipe)
                with compat.library_call():
                    got = run_step(self.pipe)
            close, delta = outputs_close(got, want, scene.dtype)
            step["output_max_abs_diff"] = delta
            if not close and delta > 1e-4:
                compat.finding(
                    Outcome.STALE_STATE if step["op"].endswith("ip") else Outcome.WRONG_RESULT,
                    f"after {where}: one denoising step differs from a fresh pipeline "
                    f"given only the model's state (max {delta:.3g})",
                )

        def _load(self, spec: LoraSpec, hotswap: bool, index: int = 0) -> None:
            lora = bank.get(spec)
            before = self.model.clone()
            if hotswap:
                name = self.model.adapters[index % len(self.model.adapters)]
            else:
                name = self._free_name()
            step = self._record("load", name=name, spec=asdict(spec), hotswap=hotswap)
            # A fresh copy per load: with low_cpu_mem_usage (the default where peft and
            # transformers > 4.45.2 are installed) the adapter's parameters ARE the caller's
            # tensors and a later hotswap writes into them (test_hotswap ``swap-back``);
            # the bank's file must stay what the model thinks it is.
            state_dict = {k: v.clone() for k, v in lora.built.state_dict.items()}
            print_ = fingerprint_inputs(state_dict)
            kwargs = {"hotswap": True} if hotswap else {}
            # Only a hot-swap may be refused: a load under a free name (a name deleted or
            # unloaded before included) is valid in every documented semantics.
            ok = self._call(
                step,
                lambda: self.pipe.load_lora_weights(state_dict, adapter_name=name, **kwargs),
                rejectable=hotswap,
                names=[name, *state_dict] if hotswap else (),
            )
            mutated = input_mutations(print_, state_dict)
            if mutated:
                compat.finding(
                    Outcome.INPUT_MUTATED,
                    f"step {len(self.steps)} load_lora_weights changed the caller's dict: "
                    + "; ".join(mutated[:3]),
                )
            if ok:
                self.ever_loaded = True
                if hotswap:
                    extra = sorted(f"{c}.{m}" for c, m in lora.modules - self.model.targets(name))
                    if extra:
                        step["mismatch"] = {"ignored_by_hotswap": extra[:10]}
                        compat.finding(
                            Outcome.DROPPED_KEYS,
                            f"step {len(self.steps)}: hotswap into {name!r} accepted a file "
                            f"targeting {len(extra)} module(s) the adapter does not have "
                            f"({', '.join(extra[:3])}) without an error",
                        )
                    self.model.hotswap(name, spec.content, lora.modules)
                else:
                    self.model.load(name, spec.content, lora.modules, ctx.activates)
            self._check(step, before, files=lora.modules)

        # -- rules --------------------------------------------------------------------
        def _lora_ok(self) -> bool:
            return not self.model.fused and not self.model.disabled

        @precondition(
            lambda self: (
                has.get("load") and len(self.model.adapters) < len(NAMES) and self._lora_ok()
            )
        )
        @rule(spec=specs)
        def load_lora(self, spec: LoraSpec) -> None:
            self._load(spec, hotswap=False)

        @precondition(
            lambda self: has.get("hotswap") and bool(self.model.adapters) and self._lora_ok()
        )
        @rule(spec=specs, index=st.integers(0, 2))
        def hotswap_lora(self, spec: LoraSpec, index: int) -> None:
            """Only files peft can swap in: no text-encoder keys, targets within the
            adapter's. Those two rejections (and a swap of a fused adapter) have their own
            deterministic checks in test_hotswap.py; drawn here they would end every run
            at the same known finding and hide sequence bugs."""
            name = self.model.adapters[index % len(self.model.adapters)]
            spec = swappable(bank, spec, self.model.targets(name))
            if spec is not None:
                self._load(spec, hotswap=True, index=index)

        @precondition(
            lambda self: (
                has.get("hotswap") and not self.ever_loaded and not self.model.hotswap_enabled
            )
        )
        @rule()
        def enable_lora_hotswap(self) -> None:
            before = self.model.clone()
            step = self._record("enable_hotswap", target_rank=HOTSWAP_TARGET_RANK)
            self._call(step, lambda: self.pipe.enable_lora_hotswap(target_rank=HOTSWAP_TARGET_RANK))
            self.model.hotswap_enabled = True
            self._check(step, before)

        @precondition(
            lambda self: has.get("set_adapters") and bool(self.model.adapters) and self._lora_ok()
        )
        @rule(
            picks=st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
            weights=st.lists(st.sampled_from(WEIGHTS), min_size=3, max_size=3),
        )
        def set_adapters(self, picks: list[int], weights: list[float]) -> None:
            adapters = self.model.adapters
            names = list(dict.fromkeys(adapters[i % len(adapters)] for i in picks))
            ws = weights[: len(names)]
            before = self.model.clone()
            step = self._record("set_adapters", names=names, weights=ws)
            self._call(step, lambda: self.pipe.set_adapters(names, ws))
            self.model.set_adapters(names, ws)
            self._check(step, before)

        @precondition(
            lambda self: has.get("fuse") and bool(self.model.adapters) and self._lora_ok()
        )
        @rule()
        def fuse_lora(self) -> None:
            before = self.model.clone()
            kwargs = scene.fuse_kwargs(self.pipe)
            step = self._record("fuse", kwargs=kwargs)
            self._call(step, lambda: self.pipe.fuse_lora(**kwargs))
            self.model.fuse()
            self._check(step, before)

        @precondition(lambda self: has.get("fuse") and self.model.fused)
        @rule()
        def unfuse_lora(self) -> None:
            before = self.model.clone()
            kwargs = scene.fuse_kwargs(self.pipe)
            step = self._record("unfuse", kwargs=kwargs)
            self._call(step, lambda: self.pipe.unfuse_lora(**kwargs))
            self.model.unfuse()
            self._check(step, before)

        @precondition(
            lambda self: (
                has.get("disable") and bool(self.model.adapters) and not self.model.disabled
            )
        )
        @rule()
        def disable_lora(self) -> None:
            before = self.model.clone()
            step = self._record("disable")
            self._call(step, self.pipe.disable_lora)
            self.model.disable()
            self._check(step, before)

        @precondition(lambda self: has.get("disable") and self.model.disabled)
        @rule()
        def enable_lora(self) -> None:
            before = self.model.clone()
            step = self._record("enable")
            self._call(step, self.pipe.enable_lora)
            self.model.enable()
            self._check(step, before)

        @precondition(
            lambda self: has.get("delete") and bool(self.model.adapters) and self._lora_ok()
        )
        @rule(index=st.integers(0, 2))
        def delete_adapters(self, index: int) -> None:
            name = self.model.adapters[index % len(self.model.adapters)]
            before = self.model.clone()
            step = self._record("delete", name=name)
            self._call(step, lambda: self.pipe.delete_adapters(name))
            self.model.delete(name)
            self._check(step, before)

        @precondition(lambda self: has.get("unload") and bool(self.model.layers))
        @rule()
        def unload_lora_weights(self) -> None:
            before = self.model.clone()
            step = self._record("unload")
            self._call(step, self.pipe.unload_lora_weights)
            self.model.unload()
            self._check(step, before)

        @precondition(
            lambda self: (
                has.get("set_lora_device") and bool(self.model.adapters) and self._lora_ok()
            )
        )
        @rule(index=st.integers(0, 2), to_cpu=st.booleans())
        def set_lora_device(self, index: int, to_cpu: bool) -> None:
            name = self.model.adapters[index % len(self.model.adapters)]
            target = "cpu" if to_cpu else str(ctx.device)
            before = self.model.clone()
            step = self._record("set_lora_device", names=[name], device=target)
            self._call(step, lambda: self.pipe.set_lora_device([name], target))
            if target != "cpu" or str(ctx.device) == "cpu":
                self._check(step, before)
            else:  # adapters on the CPU, base on the GPU: forward cannot run; move back
                self._call(step, lambda: self.pipe.set_lora_device([name], str(ctx.device)))
                self._check(step, before)

        @precondition(
            lambda self: (
                has.get("save_reload")
                and 0 < len(self.model.adapters) < len(NAMES)
                and self._lora_ok()
            )
        )
        @rule(index=st.integers(0, 2))
        def save_and_reload(self, index: int) -> None:
            source = self.model.adapters[index % len(self.model.adapters)]
            name = self._free_name()
            before = self.model.clone()
            self.saved += 1
            folder = ctx.tmp / f"save{random.getrandbits(40)}"
            folder.mkdir(parents=True, exist_ok=True)
            weight_name = "adapter.safetensors"
            step = self._record("save_reload", source=source, name=name)

            def save() -> None:
                kwargs = save_kwargs(scene.arch, self.pipe, source)
                save_fn = type(self.pipe).save_lora_weights
                for component in list(kwargs):
                    meta = component.replace("_lora_layers", "_lora_adapter_metadata")
                    if accepts(save_fn, meta):
                        module = getattr(self.pipe, component.replace("_lora_layers", ""))
                        kwargs[meta] = module.peft_config[source].to_dict()
                step["components"] = sorted(kwargs)
                save_fn(str(folder), weight_name=weight_name, **kwargs)

            self._call(step, save)
            ok = self._call(
                step,
                lambda: self.pipe.load_lora_weights(
                    str(folder), weight_name=weight_name, adapter_name=name
                ),
            )  # reloading what the library itself saved, under a free name: valid
            if ok:
                self.model.load_layers(name, self.model.contents(source), ctx.activates)
            self._check(step, before)

        @precondition(lambda self: ip_allowed)
        @rule(entry=st.sampled_from(ctx.ip_entries or ("none",)))
        def load_ip(self, entry: str) -> None:
            before = self.model.clone()
            step = self._record("load_ip", entry=entry, swap_from=self.model.ip_adapter)
            ctx.ipa.load(compat, self.pipe, entry)
            self.model.load_ip(entry)
            self._check(step, before, output=True)

        @precondition(lambda self: ip_allowed and self.model.ip_adapter is not None)
        @rule()
        def unload_ip(self) -> None:
            before = self.model.clone()
            step = self._record("unload_ip")
            ctx.ipa.unload(compat, self.pipe)
            self.model.unload_ip()
            self._check(step, before, output=True)

    return LifecycleMachine


def _describe(step: dict[str, Any]) -> str:
    op = step["op"]
    if op == "load":
        what = "hotswap" if step.get("hotswap") else "load"
        return f"{what} {step['name']}={LoraSpec(**step['spec']).content}"
    if op == "set_adapters":
        return f"set_adapters({step['names']}, {step['weights']})"
    if op in ("delete",):
        return f"delete_adapters({step['name']!r})"
    if op == "save_reload":
        return f"save {step['source']!r} -> reload as {step['name']!r}"
    if op == "load_ip":
        return f"load_ip_adapter {step['entry']}"
    if op == "set_lora_device":
        return f"set_lora_device({step['names']}, {step['device']!r})"
    return op


def describe_steps(steps: list[dict[str, Any]]) -> list[str]:
    return [_describe(s) for s in steps]


@dataclass
class MachineBudget:
    """Hypothesis settings of one machine check (from the profile; see conftest)."""

    max_examples: int
    step_count: int
    shrink_seconds: int


#: Hypothesis profile -> (examples, steps per run, shrink seconds) of one machine check.
#: 8 steps by default: stale state shows in sequences like load > fuse > set_adapters >
#: unfuse > delete > load, which 5 steps rarely reach (every drawn run is full length:
#: ``details.run_lengths``; the consecutive rule pairs drawn are ``details.rule_pairs``).
BUDGETS: dict[str, tuple[int, int, int]] = {
    "default": (2, 8, 5),
    "ci": (1, 8, 5),
    "nightly": (50, 20, 300),
}


def machine_budget() -> MachineBudget:
    """The budget of the active hypothesis profile; ``ADAPTER_COMPAT_LIFECYCLE_*`` override it."""
    profile = os.environ.get("HYPOTHESIS_PROFILE", "default")
    examples, steps, shrink = BUDGETS.get(profile, BUDGETS["default"])
    return MachineBudget(
        max_examples=int(os.environ.get("ADAPTER_COMPAT_LIFECYCLE_EXAMPLES", examples)),
        step_count=int(os.environ.get("ADAPTER_COMPAT_LIFECYCLE_STEPS", steps)),
        shrink_seconds=int(os.environ.get("ADAPTER_COMPAT_LIFECYCLE_SHRINK_S", shrink)),
    )


@contextlib.contextmanager
def shrink_time_limit(seconds: int) -> Iterator[None]:
    """Cap the wall time hypothesis spends shrinking one failing sequence.

    Hypothesis has no public setting for this (its maintainers keep the shrinker's 300 s
    give-up internal on purpose: HypothesisWorks/hypothesis#3243); ``phases`` can only turn
    shrinking off, which would leave 5-step sequences unshrunk. So the limit is set on the
    engine's module constant for the duration of one check and restored after; a hypothesis
    release without that constant keeps its own default, nothing breaks.
    """
    try:
        from hypothesis.internal.conjecture import engine
    except ImportError:  # pragma: no cover - a hypothesis without the module
        yield
        return
    saved = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if saved is None:
        yield
        return
    engine.MAX_SHRINKING_SECONDS = seconds
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved


def run_machine(ctx: MachineContext, budget: MachineBudget, repro_for: Callable[..., str]) -> None:
    """Run the machine as ONE check; attach step counts/speed, and on failure the shrunk
    sequence and its standalone reproduction script."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    compat = ctx.compat
    compat.detail(rules_available=ctx.drawn_rules(), formats=list(ctx.formats))
    machine = make_machine(ctx)
    config = settings(
        max_examples=budget.max_examples,
        stateful_step_count=budget.step_count,
        deadline=None,
        derandomize=True,
        database=None,
        report_multiple_bugs=False,  # one shrunk sequence per check, not an ExceptionGroup
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    start = time.perf_counter()
    try:
        with shrink_time_limit(budget.shrink_seconds):
            run_state_machine_as_test(machine, settings=config)
    except BaseException:
        steps = ctx.runs[-1] if ctx.runs else []
        compat.detail(shrunk_steps=describe_steps(steps), shrunk_length=len(steps))
        try:
            compat.repro(repro_for(ctx, steps))
        except Exception as exc:  # noqa: BLE001 - a repro failure must not hide the finding
            compat.detail(repro_error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
        seconds = time.perf_counter() - start
        pairs = Counter(
            f"{a['op']}>{b['op']}" for run in ctx.runs for a, b in zip(run, run[1:], strict=False)
        )
        compat.detail(
            machine_runs=len(ctx.runs),
            machine_steps=ctx.steps_total,
            run_lengths=[len(run) for run in ctx.runs],
            rule_pairs=dict(pairs.most_common()),
            machine_seconds=round(seconds, 2),
            steps_per_second=round(ctx.steps_total / seconds, 2) if seconds else None,
            max_examples=budget.max_examples,
            stateful_step_count=budget.step_count,
            shrink_seconds=budget.shrink_seconds,
        )
