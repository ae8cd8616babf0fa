"""The robustness suite's session object, and the oracle that judges each load.

Shared by the in-process checks (``test_*.py`` through ``conftest.py``) and by the
memory-guarded forked child (:func:`harness.cell.forked.run_forked`), so a case judged in a
subprocess is judged by the very same code. The loader paths themselves - which file each
reads, the library call, the version table - live in :mod:`harness.drivers.state_dict`;
the malformed inputs in :mod:`harness.inputs.malformed` and the reference reader in
:mod:`harness.oracles.safetensors`. Every line here is version-agnostic.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.cell.classify import (
    FORMAT_ERROR_TYPES,
    CheckTimeout,
    Finding,
    LibraryError,
    NotRun,
)
from harness.cell.context import CheckContext
from harness.drivers.state_dict import (
    ENCODER,
    FILE_PATHS,
    IP_BIN,
    IP_SUBFOLDER,
    LORA_FILE,
    PICKLE_FILES,
    pickle_call,
    recording_torch_load,
    torch_weights_only_default,
    write_for_path,
)
from harness.inputs import pickles as pp
from harness.inputs.malformed.files import encode
from harness.inputs.malformed.ip_adapter import (
    IpExpectation,
    IpSlot,
    IpTarget,
    build_ip_adapter,
    flatten_ip,
    ip_case,
    ip_expectation,
)
from harness.inputs.malformed.lora import (
    LORA_TARGET_RE,
    Acceptable,
    Expectation,
    LinearTarget,
    build_lora,
    lora_case,
    lora_expectation,
    names_in,
)
from harness.oracles.compare import diff_state, snapshot, tolerance
from harness.oracles.safetensors import malformed_reason, reference_tensors
from harness.protocol.outcomes import Outcome

# -- judging vocabulary (data) ---------------------------------------------------------------------
#: Words a clear error about a damaged *file* mentions (any one suffices): the file format's
#: own vocabulary, which names what is wrong with the bytes. Generic words ("invalid",
#: "shape", "dtype", "checkpoint", "unable to load") name nothing of the case; a message
#: may also name the file or a tensor key of it (added per case).
FILE_ERROR_WORDS = (
    "header",
    "safetensors",
    "Safetensor",
    "deserializ",
    "offset",
    "incomplete",
    "truncat",
    "corrupt",
    "buffer",
    "metadata",
    "JSON",
    "json",
    "overflow",
)

# -- the session's pipeline (data) -----------------------------------------------------------------
PIPELINE = "sd15"
#: How many UNet attention projections the base LoRA targets (the first ones in module
#: order: one transformer block's attn1 + attn2, widths 16->16 and 32->16).
LORA_BASE_TARGETS = 8

# -- pickle variants, and what a refusal of one says (data) ----------------------------------------
#: Paths where refusing even the benign file is fine: with a damaged
#: ``pytorch_lora_weights.safetensors`` beside the ``.bin``, raising about the damaged file
#: is as good as falling back to the pickle.
PICKLE_MAY_REFUSE_BENIGN = frozenset({"lora-safetensors-fallback"})

PICKLE_ERROR_WORDS = ("weights_only", "Unsupported global", "pickle", "unpickl", "Weights only")

#: Variants run with torch's own default switched off: torch >= 2.6 loads with
#: ``weights_only=True`` unless told otherwise, so a loader that never asks for it is safe
#: only by that default. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (what users set to load old
#: checkpoints, and what torch < 2.6 does anyway) shows whether the *loader* asks for
#: ``weights_only=True`` itself. Variant -> (payload serialisation, environment).
TORCH_DEFAULT_OFF = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
PICKLE_ENVIRONMENTS: dict[str, tuple[str, dict[str, str]]] = {
    **{v: (v, {}) for v in pp.VARIANTS},
    "zip-torch-default-off": ("zip", TORCH_DEFAULT_OFF),
}

#: Pickle variants: the payload in three serialisations (one also with torch's default
#: off), and a benign control per path (the same checkpoint without payload) proving the
#: path really reads the file.
PICKLE_VARIANTS = ("benign", *PICKLE_ENVIRONMENTS)


# -- one library call, kept as data for the oracle -------------------------------------------------
def reclassify(exc: LibraryError) -> LibraryError:
    """A CRASH only because the type is not a stdlib one (see classify's FORMAT_ERROR_TYPES) becomes
    CLEAR_ERROR; everything else keeps the harness classification."""
    names = {cls.__name__ for cls in type(exc.original).__mro__}
    hit = sorted(names & set(FORMAT_ERROR_TYPES))
    if exc.outcome is Outcome.CRASH and hit and "unexpected exception type" in exc.reason:
        return LibraryError(exc.original, Outcome.CLEAR_ERROR, f"clear rejection ({hit[0]})")
    return exc


@contextlib.contextmanager
def loader_call(ctx: CheckContext, names: Sequence[str] = ()) -> Iterator[list[str]]:
    """``ctx.library_call`` plus :func:`reclassify`."""
    try:
        with ctx.library_call(names=names) as msgs:
            yield msgs
    except LibraryError as exc:
        raise reclassify(exc) from exc.original


@dataclass
class Attempt:
    """What one library call did: the exception it raised (classified) or its result."""

    error: LibraryError | None = None
    result: Any = None
    messages: list[str] = field(default_factory=list)


def attempt(ctx: CheckContext, call: Callable[[], Any], names: Sequence[str] = ()) -> Attempt:
    """Run ``call`` as a library call and keep what happened instead of raising, so the
    oracle can look at the pipeline (and the marker file) either way. Timeouts and our
    own exceptions still propagate."""
    out = Attempt()
    try:
        with loader_call(ctx, names) as msgs:
            out.messages = msgs
            out.result = call()
    except LibraryError as exc:
        out.error = exc
    return out


#: Errors that say the *environment* cannot exercise a path (not the file's fault):
#: message fragment -> why. Older diffusers check HF_HUB_OFFLINE *before* looking at a
#: local folder in ``_best_guess_weight_name``, so ``load_lora_weights(folder)`` without a
#: weight name cannot work in any offline cell; that path is then NOT_RUN (grey) rather
#: than a column of red cells repeating one environment fact.
ENVIRONMENT_REFUSALS: dict[str, str] = {
    "When using the offline mode, you must specify a `weight_name`": (
        "this diffusers refuses to guess a local folder's weight name under HF_HUB_OFFLINE=1"
    ),
}


def raise_error(found: Attempt) -> None:
    if found.error is None:
        return
    text = str(found.error.original)
    for fragment, why in ENVIRONMENT_REFUSALS.items():
        if fragment in text:
            raise NotRun(why)
    raise found.error


# -- environment: the pipeline, the base files, the observation --------------------------------------
@dataclass
class Env:
    """Per-process state of the suite: zoo, scratch folder, base checkpoints, and the
    pristine effective weights of every targeted UNet projection (computed once)."""

    zoo: Any
    root: Path
    _counter: int = 0
    _cache: dict[str, Any] = field(default_factory=dict)

    def folder(self, label: str) -> Path:
        """A new empty folder (unique across forked children too)."""
        self._counter += 1
        return Path(tempfile.mkdtemp(prefix=f"{self._counter:04d}-{label}-", dir=self.root))

    def pipe(self) -> Any:
        return self.zoo.get(PIPELINE)

    @property
    def reference(self) -> Any:
        """One untouched copy of the pipeline: the source of targets and pristine weights."""
        if "reference" not in self._cache:
            self._cache["reference"] = self.pipe()
        return self._cache["reference"]

    @property
    def dtype(self) -> torch.dtype:
        return self.zoo.dtype

    def ip_pipe(self) -> Any:
        pipe = self.pipe()
        pipe.register_modules(image_encoder=self.zoo.component(ENCODER))
        return pipe

    # -- LoRA ---------------------------------------------------------------------------------------
    @property
    def lora_targets(self) -> list[LinearTarget]:
        if "targets" not in self._cache:
            unet = self.reference.unet
            self._cache["targets"] = [
                LinearTarget(name, m.in_features, m.out_features)
                for name, m in unet.named_modules()
                if isinstance(m, torch.nn.Linear) and LORA_TARGET_RE.search(name)
            ]
        return self._cache["targets"]

    @property
    def base_targets(self) -> list[LinearTarget]:
        return self.lora_targets[:LORA_BASE_TARGETS]

    @property
    def pristine_state(self) -> dict[str, torch.Tensor]:
        """Snapshot of the pristine UNet (for the structural diff after a load)."""
        if "pristine_state" not in self._cache:
            self._cache["pristine_state"] = snapshot(self.reference.unet)
        return self._cache["pristine_state"]

    @property
    def pristine(self) -> dict[str, torch.Tensor]:
        if "pristine" not in self._cache:
            self._cache["pristine"] = effective_weights(self.reference.unet, self.lora_targets)
        return self._cache["pristine"]

    def lora_blob(self) -> bytes:
        return encode(build_lora(self.base_targets), metadata={"format": "pt"})

    def flux_blob(self) -> bytes:
        """A diffusers-format Flux LoRA for the zoo transformer's first block."""
        width = 32  # zoo flux: 2 heads x 16
        g = torch.Generator().manual_seed(5)
        sd: dict[str, torch.Tensor] = {}
        for proj in ("to_q", "to_k", "to_v"):
            stem = f"transformer.transformer_blocks.0.attn.{proj}"
            sd[f"{stem}.lora_A.weight"] = torch.randn(2, width, generator=g) * 0.3
            sd[f"{stem}.lora_B.weight"] = torch.randn(width, 2, generator=g) * 0.3
        return encode(sd, metadata={"format": "pt"})

    # -- IP-Adapter ----------------------------------------------------------------------------------
    @property
    def ip_target(self) -> IpTarget:
        if "ip_target" not in self._cache:
            self._cache["ip_target"] = ip_target_of(self.reference.unet)
        return self._cache["ip_target"]

    def ip_release(self) -> dict[str, dict[str, torch.Tensor]]:
        return build_ip_adapter(self.ip_target)

    def ip_blob(self) -> bytes:
        return encode(flatten_ip(self.ip_release()), metadata={"format": "pt"})

    def blob_for(self, path: str) -> bytes:
        """The valid file each file path starts from."""
        kind = FILE_PATHS[path].kind
        if kind == "ip":
            return self.ip_blob()
        if path == "flux-lora-state-dict":
            return self.flux_blob()
        return self.lora_blob()


def make_env(zoo: Any, root: str | Path | None = None) -> Env:
    base = Path(root) if root else Path(tempfile.mkdtemp(prefix="robustness-"))
    base.mkdir(parents=True, exist_ok=True)
    return Env(zoo=zoo, root=base)


def host_env(env: Env) -> Env:
    """``env`` itself on the CPU; on an accelerator, a CPU twin built on first use. A
    forked child must not touch CUDA (a CUDA context does not survive fork), and what the
    guard bounds - the file reader's memory - lives on the host anyway."""
    if torch.device(env.zoo.device).type == "cpu":
        return env
    from harness.inputs.models.zoo import Zoo

    return make_env(Zoo(device="cpu", dtype=env.zoo.dtype), env.root)


def ip_target_of(unet: Any) -> IpTarget:
    """Cross-attention processors in ``attn_processors`` order (the release numbering)."""
    modules = dict(unet.named_modules())
    slots = []
    for position, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            attn = modules[name.removesuffix(".processor")]
            slots.append(IpSlot(position, attn.to_k.out_features, attn.to_k.in_features))
    from harness.inputs.models.specs import ENCODER_SPECS

    cross = int(unet.config.cross_attention_dim)
    width = ENCODER_SPECS[ENCODER].output_width
    return IpTarget(slots=tuple(slots), cross_dim=cross, embed_dim=width)


@torch.no_grad()
def effective_weights(unet: Any, targets: Sequence[LinearTarget]) -> dict[str, torch.Tensor]:
    """W_eff of each target, observed from the module's own forward (backend-agnostic):
    ``f(I) - b`` is ``W_eff^T`` for any ``x @ W^T + b + lora(x)`` (``b``: the base layer's
    bias, which a LoRA leaves alone). Not ``f(I) - f(0)``: with an Inf weight ``f(0)`` is
    ``0 * Inf = NaN``."""
    modules = dict(unet.named_modules())
    out = {}
    for t in targets:
        module = modules[t.module]
        base = getattr(module, "base_layer", module)
        eye = torch.eye(t.in_features, device=base.weight.device, dtype=base.weight.dtype)
        result = module(eye)
        if base.bias is not None:
            result = result - base.bias
        out[t.module] = result.T.detach().float().cpu()
    return out


def _close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> bool:
    if a.shape != b.shape:
        return False
    rtol, atol = tolerance(dtype)
    return bool(torch.allclose(a, b, rtol=rtol, atol=max(atol, 1e-5), equal_nan=True))


def _lowest_precision(values: Any, floor: torch.dtype = torch.float32) -> torch.dtype:
    """The float dtype whose tolerance applies to a case: the least precise of the
    pipeline's dtype (``floor``) and the tensors' (fp16 files, bf16 files, ...)."""
    order = [torch.float32, torch.float16, torch.bfloat16]
    worst = floor if floor in order else torch.float32
    for v in _leaves(values):
        if isinstance(v, torch.Tensor) and v.dtype in order:
            if order.index(v.dtype) > order.index(worst):
                worst = v.dtype
    return worst


def _leaves(obj: Any) -> Iterator[Any]:
    if isinstance(obj, Mapping):
        for v in obj.values():
            yield from _leaves(v)
    else:
        yield obj


# -- judging a LoRA load ----------------------------------------------------------------------------
@dataclass
class Judgement:
    outcome: Outcome
    message: str
    details: dict[str, Any]


def meta_judgement(pipe: Any) -> Judgement | None:
    """WRONG_RESULT when a low-memory load left UNet parameters on the meta device (a
    missing key was never given values; its forward returns whatever memory held)."""
    meta = [n for n, p in pipe.unet.named_parameters() if p.device.type == "meta"]
    if not meta:
        return None
    return Judgement(
        Outcome.WRONG_RESULT,
        f"{len(meta)} parameter(s) left uninitialised on the meta device: {', '.join(meta[:3])}",
        {"meta_parameters": meta[:8]},
    )


def judge_lora(
    env: Env, pipe: Any, exp: Expectation, messages: Sequence[str], dtype: torch.dtype
) -> Judgement:
    """Compare every target's observed effect with the reference (see ``lora_expectation``).

    First the structure: a parameter left on the meta device was never given values (a
    low-memory load that skipped a missing key); its forward returns whatever memory held.
    Then every target's effective weight against its acceptable end states."""
    left_on_meta = meta_judgement(pipe)
    if left_on_meta is not None:
        return left_on_meta
    structure = diff_state(env.pristine_state, snapshot(pipe.unet))
    after = effective_weights(pipe.unet, env.lora_targets)
    wrong, dropped, unreported, changed = [], [], [], []
    outcome_of_module: dict[str, str] = {}  # silently resolved modules -> which reading won
    for t in env.lora_targets:
        before = env.pristine[t.module]
        delta = after[t.module] - before
        if not _close(after[t.module], before, dtype):
            changed.append(t.module)
        accs = exp.modules.get(t.module, [Acceptable(None)])
        match = next(
            (
                a
                for a in accs
                if _close(after[t.module], before if a.delta is None else before + a.delta, dtype)
            ),
            None,
        )
        if match is None:
            if t.module in exp.modules and t.module not in changed:
                dropped.append(t.module)
            else:
                wrong.append(
                    f"{t.module} (max |delta| {float(delta.abs().nan_to_num(1e9).max()):.3g})"
                )
        elif match.report and not names_in(messages, match.report):
            unreported.append(t.module)
            outcome_of_module[t.module] = match.label or "value"
    stray = [k for k in exp.stray if not names_in(messages, [k])]
    nothing = bool(exp.nothing) and not changed and not names_in(messages, exp.nothing)
    details = {
        "parameters_added": len(structure.added),
        "modules_changed": len(changed),
        "modules_expected": sum(
            1 for accs in exp.modules.values() if any(a.delta is not None for a in accs)
        ),
    }
    if wrong:
        details["wrong"] = wrong[:8]
        return Judgement(
            Outcome.WRONG_RESULT, "effective weights differ: " + ", ".join(wrong[:4]), details
        )
    silent = dropped + unreported + stray
    if silent or nothing:
        details.update(
            dropped=dropped[:8],
            unreported=unreported[:8],
            silently_resolved=outcome_of_module,
            stray_unreported=stray[:8],
        )
        outcome = Outcome.SILENT_NOOP if not changed else Outcome.DROPPED_KEYS
        parts = []
        if dropped:
            parts.append("no effect: " + ", ".join(dropped[:3]))
        if unreported:
            parts.append("applied or skipped without a word: " + ", ".join(unreported[:3]))
        if stray:
            parts.append("keys ignored without a word: " + ", ".join(stray[:3]))
        if nothing:
            parts.append("nothing loaded and nothing said")
        return Judgement(outcome, "load returned without error; " + "; ".join(parts), details)
    return Judgement(Outcome.OK, "", details)


def judge_against_original(judged: Judgement, fully_loaded_ok: bool) -> Judgement:
    """For a file that must be rejected but loaded: how much of the original landed."""
    if judged.outcome is Outcome.OK and fully_loaded_ok:
        return Judgement(Outcome.OK, "a malformed file loaded as if intact", judged.details)
    if judged.outcome is Outcome.OK:
        return judged
    return Judgement(
        judged.outcome, "malformed file accepted, partial load: " + judged.message, judged.details
    )


# -- judging an IP-Adapter load -------------------------------------------------------------------
def judge_ip(
    env: Env, pipe: Any, exp: IpExpectation, messages: Sequence[str], dtype: torch.dtype
) -> Judgement:
    """Usable tensors must sit where the release numbering puts them; invalid content must
    have been reported (the load returned, so by a warning naming it)."""
    left_on_meta = meta_judgement(pipe)
    if left_on_meta is not None:
        return left_on_meta
    procs = list(pipe.unet.attn_processors.values())
    landed, missing, wrong = 0, [], []
    for (ip_id, kind), tensor in exp.slots.items():
        layer = getattr(procs[ip_id], f"to_{kind}_ip", None) if ip_id < len(procs) else None
        if layer is None:
            missing.append(f"{ip_id}.to_{kind}_ip")
            continue
        weight = layer[0].weight.detach().float().cpu()
        if _close(weight, tensor, dtype):
            landed += 1
        else:
            wrong.append(f"{ip_id}.to_{kind}_ip")
    proj = getattr(pipe.unet, "encoder_hid_proj", None)
    proj_values = [v.detach().float().cpu() for v in proj.state_dict().values()] if proj else []
    for key, tensor in exp.image_proj.items():
        if any(_close(v, tensor, dtype) for v in proj_values):
            landed += 1
        else:
            missing.append(f"image_proj.{key}")
    expected = len(exp.slots) + len(exp.image_proj)
    details = {"tensors_landed": landed, "tensors_expected": expected}
    if wrong:
        details["wrong"] = wrong[:8]
        return Judgement(
            Outcome.WRONG_RESULT, "IP weights differ: " + ", ".join(wrong[:4]), details
        )
    unreported = [] if exp.fully_valid else [n for n in exp.names if not names_in(messages, [n])]
    if missing or unreported:
        details.update(missing=missing[:8], unreported=unreported[:8])
        outcome = Outcome.SILENT_NOOP if landed == 0 else Outcome.DROPPED_KEYS
        what = ", ".join((missing + unreported)[:4])
        return Judgement(
            outcome, f"load returned without error; not loaded / not reported: {what}", details
        )
    return Judgement(Outcome.OK, "", details)


def ip_flat_expectation(flat: Mapping[str, Any], target: IpTarget) -> IpExpectation:
    """Reference for a flat ``.safetensors`` IP-Adapter: keys outside the two prefixes are
    stray (must be reported), the rest is judged as the nested release layout."""
    nested: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
    stray = []
    for key, value in flat.items():
        section, _, rest = key.partition(".")
        if section in nested and rest:
            nested[section][rest] = value
        else:
            stray.append(key)
    exp = ip_expectation(nested, target)
    if stray:
        exp.fully_valid = False
        exp.names.extend(stray)
    return exp


# -- file cases ------------------------------------------------------------------------------------
def run_file_case(
    ctx: CheckContext, env: Env, path: str, blob: bytes, original: bytes, label: str = ""
) -> None:
    """Load ``blob`` through ``path`` and judge it against the reference reader.

    Valid by the spec: the load must give exactly the file's content (for adapters: every
    key has its effect or is reported). Invalid: a clear error is owed; a load that
    returns is judged against the *original* file to tell a silent no-op from a partial
    load. Raises what the plugin turns into the observed outcome."""
    reference = reference_tensors(blob)
    reason = malformed_reason(blob)
    ctx.detail(reference="valid" if reference is not None else f"invalid: {reason}")
    if label:
        ctx.detail(example=label)
    kind = FILE_PATHS[path].kind
    original_keys = list(reference_tensors(original) or {})
    names: list[str] = [*FILE_ERROR_WORDS, *original_keys]
    if reference is None:
        ctx.expect(Outcome.CLEAR_ERROR)
    elif kind == "reader":
        ctx.expect(Outcome.OK)
    else:
        _expect_for_content(ctx, env, path, reference)
        names += list(reference)
    folder, call = write_for_path(env, path, blob)
    names += [p.name for p in folder.rglob("*") if p.is_file()]
    found = attempt(ctx, call, names)
    raise_error(found)
    if kind == "reader":
        _judge_reader(ctx, found.result, reference, original)
        return
    content = reference if reference is not None else reference_tensors(original)
    assert content is not None, "the original file must be valid"
    judged = _judge_adapter(env, path, found.result, content, found.messages)
    ctx.detail(**judged.details)
    if reference is None:
        judged = judge_against_original(judged, judged.outcome is Outcome.OK)
        if judged.outcome is Outcome.OK:
            ctx.detail(accepted_malformed=True)
            return  # observed OK against an expected CLEAR_ERROR: a regression verdict
    if judged.outcome is not Outcome.OK:
        raise Finding(judged.outcome, judged.message)


def _expect_for_content(ctx: CheckContext, env: Env, path: str, content: Mapping[str, Any]) -> None:
    """A valid file with unusable content (a renamed key...) may be rejected clearly."""
    if FILE_PATHS[path].kind == "lora":
        exp = lora_expectation(content, env.lora_targets)
        ok = exp.fully_valid
    else:
        exp_ip = ip_flat_expectation(content, env.ip_target)
        ok = exp_ip.fully_valid and not exp_ip.may_refuse
    ctx.expect(Outcome.OK) if ok else ctx.expect(Outcome.OK, Outcome.CLEAR_ERROR)


def _judge_adapter(
    env: Env, path: str, pipe: Any, content: Mapping[str, Any], messages: Sequence[str]
) -> Judgement:
    dtype = _lowest_precision(content, env.dtype)
    if FILE_PATHS[path].kind == "lora":
        return judge_lora(env, pipe, lora_expectation(content, env.lora_targets), messages, dtype)
    return judge_ip(env, pipe, ip_flat_expectation(content, env.ip_target), messages, dtype)


def _judge_reader(
    ctx: CheckContext, result: Any, reference: Mapping[str, torch.Tensor] | None, original: bytes
) -> None:
    if reference is None:
        got = result if isinstance(result, Mapping) else {}
        ctx.detail(returned_keys=len(got))
        original_ref = reference_tensors(original) or {}
        outcome = Outcome.SILENT_NOOP if not got else Outcome.DROPPED_KEYS
        if len(got) >= len(original_ref):
            return  # returned as if intact: observed OK, expected CLEAR_ERROR
        raise Finding(
            outcome, f"malformed file read without error: {len(got)} of {len(original_ref)} tensors"
        )
    if not isinstance(result, Mapping):
        raise Finding(Outcome.WRONG_RESULT, f"reader returned {type(result).__name__}, not a dict")
    missing = sorted(set(reference) - set(result))
    extra = sorted(set(result) - set(reference))
    differ = [
        k
        for k in sorted(set(reference) & set(result))
        if not (
            isinstance(result[k], torch.Tensor)
            and result[k].dtype == reference[k].dtype
            and result[k].shape == reference[k].shape
            and bool(
                torch.equal(result[k].cpu(), reference[k])
                or _nan_equal(result[k].cpu(), reference[k])
            )
        )
    ]
    ctx.detail(returned_keys=len(result), reference_keys=len(reference))
    if missing and not extra and not differ:
        raise Finding(Outcome.DROPPED_KEYS, f"reader dropped {len(missing)} tensors: {missing[:4]}")
    if missing or extra or differ:
        raise Finding(
            Outcome.WRONG_RESULT,
            f"reader result differs from the file: missing {missing[:3]}, extra {extra[:3]}, differ {differ[:3]}",
        )


def _nan_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not a.is_floating_point():
        return False
    return bool(torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0), b.nan_to_num(0)))


# -- state-dict cases ---------------------------------------------------------------------------------
def run_lora_dict(ctx: CheckContext, env: Env, case_id: str, as_file: bool = False) -> None:
    """Load a (possibly bad) LoRA state dict, as a dict or written as a file, and judge it."""
    case = lora_case(case_id)
    ctx.detail(note=case.note)
    state_dict = case.build(env.base_targets)
    exp = lora_expectation(state_dict, env.lora_targets)
    ctx.expect(Outcome.OK) if exp.fully_valid else ctx.expect(Outcome.OK, Outcome.CLEAR_ERROR)
    pipe = env.pipe()
    if as_file:
        if not case.file_ok:
            raise NotRun(f"case {case_id} is not representable as safetensors")
        folder = env.folder(f"lora-{case_id}")
        (folder / LORA_FILE).write_bytes(encode(state_dict, metadata={"format": "pt"}))
        found = attempt(
            ctx, lambda: pipe.load_lora_weights(str(folder), weight_name=LORA_FILE), exp.names
        )
    else:
        found = attempt(ctx, lambda: pipe.load_lora_weights(state_dict), exp.names)
    raise_error(found)
    judged = judge_lora(env, pipe, exp, found.messages, _lowest_precision(state_dict, env.dtype))
    ctx.detail(**judged.details)
    if judged.outcome is not Outcome.OK:
        raise Finding(judged.outcome, judged.message)


def run_ip_dict(ctx: CheckContext, env: Env, case_id: str) -> None:
    case = ip_case(case_id)
    ctx.detail(note=case.note)
    state_dict = case.build(env.ip_target)
    exp = ip_expectation(state_dict, env.ip_target)
    if exp.fully_valid and not exp.may_refuse:
        ctx.expect(Outcome.OK)
    else:
        ctx.expect(Outcome.CLEAR_ERROR, Outcome.OK)
    pipe = env.ip_pipe()
    names = [*exp.names, "image_proj", "ip_adapter", "to_k_ip", "to_v_ip"]
    found = attempt(
        ctx,
        lambda: pipe.load_ip_adapter(state_dict, subfolder=IP_SUBFOLDER, weight_name=IP_BIN),
        names,
    )
    raise_error(found)
    judged = judge_ip(env, pipe, exp, found.messages, _lowest_precision(state_dict, env.dtype))
    ctx.detail(**judged.details)
    if judged.outcome is not Outcome.OK:
        raise Finding(judged.outcome, judged.message)


# -- malicious pickles ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of one library call."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_pickle(ctx: CheckContext, env: Env, path: str, variant: str) -> None:
    """Hand a payload-carrying pickle to ``path``; the marker file is the verdict.

    benign: the same checkpoint without payload must load (the path really reads it).
    Payload variants: OK (loaded safely) or CLEAR_ERROR (refused); a marker means the
    loader executed code from the checkpoint."""
    if variant == "benign" and path not in PICKLE_MAY_REFUSE_BENIGN:
        ctx.expect(Outcome.OK)
    else:
        ctx.expect(Outcome.OK, Outcome.CLEAR_ERROR)
    marker = env.folder("marker") / "code-executed"
    serialisation, environment = PICKLE_ENVIRONMENTS.get(variant, (variant, {}))
    call = pickle_call(env, path, serialisation, marker)
    names = [*PICKLE_ERROR_WORDS, PICKLE_FILES[path]]
    with recording_torch_load() as calls, _environment(environment):
        found = attempt(ctx, call, names)
        default = torch_weights_only_default()
    executed = marker.exists()
    ctx.detail(
        code_executed=executed,
        security=True,
        torch_load_calls=calls[:6],
        torch_weights_only_default=default,
    )
    if environment:
        ctx.detail(environment=environment)
    if executed:
        raise Finding(Outcome.WRONG_RESULT, "checkpoint pickle executed code: marker created")
    raise_error(found)


# -- generated examples ---------------------------------------------------------------------------------
def run_example(parent: CheckContext, body: Callable[[CheckContext], None], label: str) -> None:
    """Run one generated example with its own context; pass when it met *its* expectation.

    The generated check as a whole expects OK ("every example behaves as the reference
    says"). A failing example hands its evidence to ``parent`` and re-raises what it
    observed (a CRASH stays a CRASH); a malformed file that loaded without error becomes
    WRONG_RESULT ("accepted a malformed file")."""
    from harness.cell.classify import outcome_of

    ctx = CheckContext()
    exc: BaseException | None = None
    try:
        body(ctx)
    except CheckTimeout:
        raise
    except BaseException as caught:  # noqa: BLE001 - judged below
        exc = caught
    outcome, _ = outcome_of(exc)
    if outcome in ctx.expected:
        return
    parent.details.update(ctx.details)
    parent.library_messages[:] = ctx.library_messages[-20:]
    parent.detail(failing_example=label, example_expected=sorted(o.value for o in ctx.expected))
    if exc is None:
        raise Finding(
            Outcome.WRONG_RESULT, f"{label}: accepted without error, expected a clear error"
        )
    raise exc
