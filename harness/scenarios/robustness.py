"""The loader paths the robustness suite drives, and the oracle that judges each load.

Shared by the in-process checks (``test_*.py`` through ``conftest.py``) and by the
memory-guarded forked child (:func:`run_forked`), so a case judged in a subprocess is
judged by the very same code. Everything a user calls is called the way users call it:
``pipe.load_lora_weights(folder, weight_name=...)``, ``pipe.load_ip_adapter(folder,
subfolder, weight_name)``, diffusers' own ``load_state_dict``, ``FluxPipeline.lora_state_dict``,
``CLIPVisionModelWithProjection.from_pretrained``, ``pipe.load_textual_inversion``.

Version facts live in the tables at the top (one place per concern); every other line is
version-agnostic.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.cell.classify import CheckTimeout, Finding, LibraryError, NotRun, Unsupported
from harness.cell.context import CheckContext
from harness.inputs import malformed as mf
from harness.inputs import pickles as pp
from harness.oracles.compare import diff_state, snapshot, tolerance
from harness.protocol.outcomes import Outcome

# -- version facts (data) -----------------------------------------------------------------------
#: Where diffusers keeps ``load_state_dict(checkpoint_file)``: (first version, module).
#: It moved to ``model_loading_utils`` in 0.28. Checked at run time: a row that does not
#: resolve is a HARNESS_ERROR (our table is wrong), never a library finding.
STATE_DICT_READERS: tuple[tuple[str, str], ...] = (
    ("0.28.0", "diffusers.models.model_loading_utils"),
    ("0.0.0", "diffusers.models.modeling_utils"),
)

#: Exception types that are a loader's *clear* refusal of a malformed or unsafe file even
#: though ``harness.cell.classify`` does not list them (they are not stdlib types): the format
#: library's own error, and a weights-only unpickler refusing a global. Matched by type
#: name along the MRO so no import of the library is needed. (Proposed for classify.py.)
FORMAT_ERROR_TYPES: dict[str, str] = {
    "SafetensorError": "safetensors' own exception for a malformed file",
    "UnpicklingError": "torch.load(weights_only=True) refusing a non-tensor global",
}

#: Words a clear error about a damaged *file* mentions (any one suffices).
FILE_ERROR_WORDS = (
    "header",
    "safetensors",
    "deserializ",
    "offset",
    "dtype",
    "shape",
    "incomplete",
    "invalid",
    "truncat",
    "corrupt",
    "checkpoint",
    "length",
    "buffer",
    "metadata",
    "JSON",
    "json",
    "overflow",
    "Unable to load",
    "unable to load",
)

# -- file layout of the paths (data) --------------------------------------------------------------
PIPELINE = "sd15"
ENCODER = "clip-vision-1024"
LORA_FILE = "adapter.safetensors"
LORA_DEFAULT_SAFE = "pytorch_lora_weights.safetensors"
LORA_DEFAULT_BIN = "pytorch_lora_weights.bin"
LORA_PT = "adapter.pt"
IP_SUBFOLDER = "models"
IP_SAFE = "ip-adapter.safetensors"
IP_BIN = "ip-adapter.bin"
ENCODER_FOLDER = "image_encoder"  # under IP_SUBFOLDER: where diffusers looks by default
ENCODER_BIN = "pytorch_model.bin"
STATE_DICT_SAFE = "diffusion_pytorch_model.safetensors"
STATE_DICT_BIN = "diffusion_pytorch_model.bin"
EMBEDDING_PT = "embedding.pt"
EMBEDDING_TOKEN = "<robust-token>"
#: How many UNet attention projections the base LoRA targets (the first ones in module
#: order: one transformer block's attn1 + attn2, widths 16->16 and 32->16).
LORA_BASE_TARGETS = 8


@dataclass(frozen=True)
class FilePath:
    """A loader path that reads a ``.safetensors`` file."""

    kind: str  # lora | ip | reader
    call: str  # how users call it (for records and the README)


FILE_PATHS: dict[str, FilePath] = {
    "lora": FilePath("lora", "pipe.load_lora_weights(folder, weight_name='adapter.safetensors')"),
    "lora-default-name": FilePath(
        "lora", "pipe.load_lora_weights(folder)  # pytorch_lora_weights.safetensors"
    ),
    "ip-adapter": FilePath(
        "ip",
        "pipe.load_ip_adapter(folder, subfolder='models', weight_name='ip-adapter.safetensors')",
    ),
    "state-dict": FilePath("reader", "diffusers load_state_dict(file)"),
    "flux-lora-state-dict": FilePath(
        "reader", "FluxPipeline.lora_state_dict(folder, weight_name='adapter.safetensors')"
    ),
}

#: Loader paths that accept pickled ``.bin`` / ``.pt`` files.
PICKLE_PATHS: dict[str, str] = {
    "lora-bin": "pipe.load_lora_weights(folder, weight_name='pytorch_lora_weights.bin')",
    "lora-pt": "pipe.load_lora_weights(folder, weight_name='adapter.pt')",
    "lora-safetensors-fallback": (
        "pipe.load_lora_weights(folder)  # damaged .safetensors beside a .bin: pickle fallback"
    ),
    "ip-adapter-bin": "pipe.load_ip_adapter(folder, subfolder='models', weight_name='ip-adapter.bin')",
    "image-encoder-bin": (
        "pipe.load_ip_adapter(folder, 'models', 'ip-adapter.safetensors')"
        "  # pipe has no image_encoder: loads models/image_encoder/pytorch_model.bin"
    ),
    "image-encoder-from-pretrained": (
        "CLIPVisionModelWithProjection.from_pretrained(folder)  # pytorch_model.bin only"
    ),
    "state-dict-bin": "diffusers load_state_dict('diffusion_pytorch_model.bin')",
    "flux-lora-state-dict-bin": "FluxPipeline.lora_state_dict(folder, weight_name='pytorch_lora_weights.bin')",
    "textual-inversion-pt": "pipe.load_textual_inversion(folder, weight_name='embedding.pt', token=...)",
}

#: Paths where refusing even the benign file is fine: with a damaged
#: ``pytorch_lora_weights.safetensors`` beside the ``.bin``, raising about the damaged file
#: is as good as falling back to the pickle.
PICKLE_MAY_REFUSE_BENIGN = frozenset({"lora-safetensors-fallback"})

#: The pickled file each path reads (a clear refusal names it, or says why).
PICKLE_FILES: dict[str, str] = {
    "lora-bin": LORA_DEFAULT_BIN,
    "lora-pt": LORA_PT,
    "lora-safetensors-fallback": LORA_DEFAULT_SAFE,
    "ip-adapter-bin": IP_BIN,
    "image-encoder-bin": ENCODER_BIN,
    "image-encoder-from-pretrained": ENCODER_BIN,
    "state-dict-bin": STATE_DICT_BIN,
    "flux-lora-state-dict-bin": LORA_DEFAULT_BIN,
    "textual-inversion-pt": EMBEDDING_PT,
}
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


# -- small helpers ----------------------------------------------------------------------------------
def installed_diffusers() -> str:
    import diffusers

    return diffusers.__version__


def _version_tuple(text: str) -> tuple[int, ...]:
    from packaging.version import Version

    return Version(text).release


def state_dict_reader() -> tuple[str, Callable[..., Any]]:
    """diffusers' ``load_state_dict`` for the installed version (per STATE_DICT_READERS)."""
    installed = _version_tuple(installed_diffusers())
    for first, module in STATE_DICT_READERS:
        if installed >= _version_tuple(first):
            mod = importlib.import_module(module)
            fn = getattr(mod, "load_state_dict", None)
            if fn is None:
                raise RuntimeError(f"version table wrong: {module} has no load_state_dict")
            return module, fn
    raise RuntimeError("version table has no row for this diffusers")


def flux_lora_state_dict() -> Callable[..., Any]:
    """``FluxPipeline.lora_state_dict`` (UNSUPPORTED where the class or method is absent)."""
    import diffusers

    cls = getattr(diffusers, "FluxPipeline", None)
    if cls is None:
        raise Unsupported(f"diffusers {diffusers.__version__} has no FluxPipeline")
    fn = getattr(cls, "lora_state_dict", None)
    if fn is None:
        raise Unsupported(
            f"FluxPipeline has no lora_state_dict in diffusers {diffusers.__version__}"
        )
    return fn


def first_of(result: Any) -> Any:
    """``lora_state_dict`` returns a dict, or a tuple starting with it, by version."""
    return result[0] if isinstance(result, tuple) else result


def reclassify(exc: LibraryError) -> LibraryError:
    """A CRASH only because the type is not a stdlib one (see FORMAT_ERROR_TYPES) becomes
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
    def lora_targets(self) -> list[mf.LinearTarget]:
        if "targets" not in self._cache:
            unet = self.reference.unet
            self._cache["targets"] = [
                mf.LinearTarget(name, m.in_features, m.out_features)
                for name, m in unet.named_modules()
                if isinstance(m, torch.nn.Linear) and mf.LORA_TARGET_RE.search(name)
            ]
        return self._cache["targets"]

    @property
    def base_targets(self) -> list[mf.LinearTarget]:
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
        return mf.encode(mf.build_lora(self.base_targets), metadata={"format": "pt"})

    def flux_blob(self) -> bytes:
        """A diffusers-format Flux LoRA for the zoo transformer's first block."""
        width = 32  # zoo flux: 2 heads x 16
        g = torch.Generator().manual_seed(5)
        sd: dict[str, torch.Tensor] = {}
        for proj in ("to_q", "to_k", "to_v"):
            stem = f"transformer.transformer_blocks.0.attn.{proj}"
            sd[f"{stem}.lora_A.weight"] = torch.randn(2, width, generator=g) * 0.3
            sd[f"{stem}.lora_B.weight"] = torch.randn(width, 2, generator=g) * 0.3
        return mf.encode(sd, metadata={"format": "pt"})

    # -- IP-Adapter ----------------------------------------------------------------------------------
    @property
    def ip_target(self) -> mf.IpTarget:
        if "ip_target" not in self._cache:
            self._cache["ip_target"] = ip_target_of(self.reference.unet)
        return self._cache["ip_target"]

    def ip_release(self) -> dict[str, dict[str, torch.Tensor]]:
        return mf.build_ip_adapter(self.ip_target)

    def ip_blob(self) -> bytes:
        return mf.encode(mf.flatten_ip(self.ip_release()), metadata={"format": "pt"})

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


def ip_target_of(unet: Any) -> mf.IpTarget:
    """Cross-attention processors in ``attn_processors`` order (the release numbering)."""
    modules = dict(unet.named_modules())
    slots = []
    for position, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            attn = modules[name.removesuffix(".processor")]
            slots.append(mf.IpSlot(position, attn.to_k.out_features, attn.to_k.in_features))
    from harness.inputs.models.specs import ENCODER_SPECS

    cross = int(unet.config.cross_attention_dim)
    width = ENCODER_SPECS[ENCODER].output_width
    return mf.IpTarget(slots=tuple(slots), cross_dim=cross, embed_dim=width)


@torch.no_grad()
def effective_weights(unet: Any, targets: Sequence[mf.LinearTarget]) -> dict[str, torch.Tensor]:
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
    env: Env, pipe: Any, exp: mf.Expectation, messages: Sequence[str], dtype: torch.dtype
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
        accs = exp.modules.get(t.module, [mf.Acceptable(None)])
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
        elif match.report and not mf.names_in(messages, match.report):
            unreported.append(t.module)
            outcome_of_module[t.module] = match.label or "value"
    stray = [k for k in exp.stray if not mf.names_in(messages, [k])]
    nothing = bool(exp.nothing) and not changed and not mf.names_in(messages, exp.nothing)
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
    env: Env, pipe: Any, exp: mf.IpExpectation, messages: Sequence[str], dtype: torch.dtype
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
    unreported = [] if exp.fully_valid else [n for n in exp.names if not mf.names_in(messages, [n])]
    if missing or unreported:
        details.update(missing=missing[:8], unreported=unreported[:8])
        outcome = Outcome.SILENT_NOOP if landed == 0 else Outcome.DROPPED_KEYS
        what = ", ".join((missing + unreported)[:4])
        return Judgement(
            outcome, f"load returned without error; not loaded / not reported: {what}", details
        )
    return Judgement(Outcome.OK, "", details)


def ip_flat_expectation(flat: Mapping[str, Any], target: mf.IpTarget) -> mf.IpExpectation:
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
    exp = mf.ip_expectation(nested, target)
    if stray:
        exp.fully_valid = False
        exp.names.extend(stray)
    return exp


# -- file cases ---------------------------------------------------------------------------------------
def _write_for_path(env: Env, path: str, blob: bytes) -> tuple[Path, Callable[[], Any]]:
    """Place ``blob`` where ``path`` reads it; return the folder and the library call."""
    folder = env.folder(path)
    if path == "lora":
        (folder / LORA_FILE).write_bytes(blob)
        pipe = env.pipe()
        return folder, lambda: (pipe.load_lora_weights(str(folder), weight_name=LORA_FILE), pipe)[1]
    if path == "lora-default-name":
        (folder / LORA_DEFAULT_SAFE).write_bytes(blob)
        pipe = env.pipe()
        return folder, lambda: (pipe.load_lora_weights(str(folder)), pipe)[1]
    if path == "ip-adapter":
        (folder / IP_SUBFOLDER).mkdir()
        (folder / IP_SUBFOLDER / IP_SAFE).write_bytes(blob)
        pipe = env.ip_pipe()

        def load_ip() -> Any:
            pipe.load_ip_adapter(str(folder), subfolder=IP_SUBFOLDER, weight_name=IP_SAFE)
            return pipe

        return folder, load_ip
    if path == "state-dict":
        _, reader = state_dict_reader()
        (folder / STATE_DICT_SAFE).write_bytes(blob)
        return folder, lambda: reader(str(folder / STATE_DICT_SAFE))
    if path == "flux-lora-state-dict":
        fn = flux_lora_state_dict()
        (folder / LORA_FILE).write_bytes(blob)
        return folder, lambda: first_of(fn(str(folder), weight_name=LORA_FILE))
    raise KeyError(path)


def run_file_case(
    ctx: CheckContext, env: Env, path: str, blob: bytes, original: bytes, label: str = ""
) -> None:
    """Load ``blob`` through ``path`` and judge it against the reference reader.

    Valid by the spec: the load must give exactly the file's content (for adapters: every
    key has its effect or is reported). Invalid: a clear error is owed; a load that
    returns is judged against the *original* file to tell a silent no-op from a partial
    load. Raises what the plugin turns into the observed outcome."""
    reference = mf.reference_tensors(blob)
    reason = mf.malformed_reason(blob)
    ctx.detail(reference="valid" if reference is not None else f"invalid: {reason}")
    if label:
        ctx.detail(example=label)
    kind = FILE_PATHS[path].kind
    names: list[str] = [*FILE_ERROR_WORDS]
    if reference is None:
        ctx.expect(Outcome.CLEAR_ERROR)
    elif kind == "reader":
        ctx.expect(Outcome.OK)
    else:
        _expect_for_content(ctx, env, path, reference)
        names += list(reference)
    _, call = _write_for_path(env, path, blob)
    found = attempt(ctx, call, names)
    raise_error(found)
    if kind == "reader":
        _judge_reader(ctx, found.result, reference, original)
        return
    content = reference if reference is not None else mf.reference_tensors(original)
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
        exp = mf.lora_expectation(content, env.lora_targets)
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
        return judge_lora(
            env, pipe, mf.lora_expectation(content, env.lora_targets), messages, dtype
        )
    return judge_ip(env, pipe, ip_flat_expectation(content, env.ip_target), messages, dtype)


def _judge_reader(
    ctx: CheckContext, result: Any, reference: Mapping[str, torch.Tensor] | None, original: bytes
) -> None:
    if reference is None:
        got = result if isinstance(result, Mapping) else {}
        ctx.detail(returned_keys=len(got))
        original_ref = mf.reference_tensors(original) or {}
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
    case = mf.lora_case(case_id)
    ctx.detail(note=case.note)
    state_dict = case.build(env.base_targets)
    exp = mf.lora_expectation(state_dict, env.lora_targets)
    ctx.expect(Outcome.OK) if exp.fully_valid else ctx.expect(Outcome.OK, Outcome.CLEAR_ERROR)
    pipe = env.pipe()
    if as_file:
        if not case.file_ok:
            raise NotRun(f"case {case_id} is not representable as safetensors")
        folder = env.folder(f"lora-{case_id}")
        (folder / LORA_FILE).write_bytes(mf.encode(state_dict, metadata={"format": "pt"}))
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
    case = mf.ip_case(case_id)
    ctx.detail(note=case.note)
    state_dict = case.build(env.ip_target)
    exp = mf.ip_expectation(state_dict, env.ip_target)
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
def recording_torch_load() -> Iterator[list[dict[str, Any]]]:
    """Wrap ``torch.load`` to record who calls it with which ``weights_only`` (evidence of
    the loader side; the verdict comes from the marker file)."""
    calls: list[dict[str, Any]] = []
    original = torch.load

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        frame = sys._getframe(1)
        filename = frame.f_code.co_filename
        for anchor in ("site-packages" + os.sep, "harness" + os.sep):
            if anchor in filename:
                filename = filename.split(anchor, 1)[1]
                break
        calls.append(
            {
                "caller": f"{filename}:{frame.f_lineno}",
                "weights_only": kwargs["weights_only"] if "weights_only" in kwargs else "default",
            }
        )
        return original(*args, **kwargs)

    torch.load = wrapper
    try:
        yield calls
    finally:
        torch.load = original


def torch_weights_only_default() -> Any:
    """What ``torch.load`` does without ``weights_only`` in this torch (True from 2.6, unless
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set)."""
    probe = getattr(torch.serialization, "_default_to_weights_only", None)
    if probe is None:
        return "unknown"
    try:
        import pickle

        return bool(probe(pickle))
    except Exception:  # noqa: BLE001 - evidence only
        return "unknown"


def _encoder_folder(env: Env, folder: Path, variant: str, marker: Path) -> Path:
    """``folder`` holds config.json + pytorch_model.bin of the zoo's image encoder."""
    encoder = env.zoo.component(ENCODER)
    folder.mkdir(parents=True, exist_ok=True)
    encoder.config.to_json_file(str(folder / "config.json"))
    tensors = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    _write_pickle(folder / ENCODER_BIN, tensors, variant, marker)
    return folder


def _write_pickle(
    path: Path, obj: Mapping[str, Any], variant: str, marker: Path, section: str | None = None
) -> None:
    if variant == "benign":
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(obj), path)
    else:
        pp.write_malicious(path, obj, marker, variant, section=section)


def _pickle_call(env: Env, path: str, variant: str, marker: Path) -> Callable[[], Any]:
    """Lay out the folder for ``path`` with a (malicious) pickle; return the library call."""
    folder = env.folder(f"{path}-{variant}")
    lora = mf.build_lora(env.base_targets)
    if path in ("lora-bin", "lora-pt", "lora-safetensors-fallback"):
        name = LORA_PT if path == "lora-pt" else LORA_DEFAULT_BIN
        _write_pickle(folder / name, lora, variant, marker)
        pipe = env.pipe()
        if path == "lora-safetensors-fallback":
            damaged = mf.truncate(mf.encode(lora, metadata={"format": "pt"}), 40)
            (folder / LORA_DEFAULT_SAFE).write_bytes(damaged)
            return lambda: pipe.load_lora_weights(str(folder))
        return lambda: pipe.load_lora_weights(str(folder), weight_name=name)
    if path == "ip-adapter-bin":
        _write_pickle(
            folder / IP_SUBFOLDER / IP_BIN, env.ip_release(), variant, marker, "ip_adapter"
        )
        pipe = env.ip_pipe()
        return lambda: pipe.load_ip_adapter(str(folder), subfolder=IP_SUBFOLDER, weight_name=IP_BIN)
    if path == "image-encoder-bin":
        (folder / IP_SUBFOLDER).mkdir()
        (folder / IP_SUBFOLDER / IP_SAFE).write_bytes(env.ip_blob())
        _encoder_folder(env, folder / IP_SUBFOLDER / ENCODER_FOLDER, variant, marker)
        pipe = env.pipe()  # no image encoder: diffusers loads models/image_encoder
        return lambda: pipe.load_ip_adapter(
            str(folder), subfolder=IP_SUBFOLDER, weight_name=IP_SAFE
        )
    if path == "image-encoder-from-pretrained":
        from transformers import CLIPVisionModelWithProjection

        enc = _encoder_folder(env, folder / ENCODER_FOLDER, variant, marker)
        return lambda: CLIPVisionModelWithProjection.from_pretrained(str(enc))
    if path == "state-dict-bin":
        _, reader = state_dict_reader()
        _write_pickle(folder / STATE_DICT_BIN, lora, variant, marker)
        return lambda: reader(str(folder / STATE_DICT_BIN))
    if path == "flux-lora-state-dict-bin":
        fn = flux_lora_state_dict()
        flux = mf.reference_tensors(env.flux_blob()) or {}
        _write_pickle(folder / LORA_DEFAULT_BIN, flux, variant, marker)
        return lambda: first_of(fn(str(folder), weight_name=LORA_DEFAULT_BIN))
    if path == "textual-inversion-pt":
        pipe = env.pipe()
        if not hasattr(pipe, "load_textual_inversion"):
            raise Unsupported("pipeline has no load_textual_inversion")
        width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
        embedding = {"string_to_param": {"*": torch.randn(1, width)}, "name": "robust"}
        if variant == "benign":
            torch.save(embedding, folder / EMBEDDING_PT)
        else:
            pp.write_malicious(folder / EMBEDDING_PT, embedding, marker, variant)
        return lambda: pipe.load_textual_inversion(
            str(folder), weight_name=EMBEDDING_PT, token=EMBEDDING_TOKEN
        )
    raise KeyError(path)


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
    call = _pickle_call(env, path, serialisation, marker)
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


# -- memory-guarded runs ---------------------------------------------------------------------------------
#: Address-space head-room a guarded case gets above what the process already maps.
GUARD_LIMIT_BYTES = 2 * 1024**3
#: Growth of peak RSS during one guarded case that counts as unbounded memory.
GUARD_RSS_BUDGET_MB = 512
GUARD_TIMEOUT_S = 60
#: Messages of an allocation that hit the limit (torch, Rust's allocator, Python).
ALLOCATION_FAILED = ("can't allocate memory", "out of memory", "memory allocation", "MemoryError")


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _allocation_failure(exc: BaseException | None) -> str | None:
    """Whether an exception (or its cause chain) is an allocation refused by the limit."""
    seen = 0
    while exc is not None and seen < 8:
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError) or any(w in text for w in ALLOCATION_FAILED):
            return text[:300]
        original = exc.original if isinstance(exc, LibraryError) else None
        exc = original or exc.__cause__ or exc.__context__
        seen += 1
    return None


def _child(job: Callable[[CheckContext], None], write_fd: int, limit_bytes: int) -> None:
    """Body of the forked child: cap the address space, run the job, report as JSON."""
    import resource

    torch.set_num_threads(1)  # OpenMP pools do not survive fork; one thread is enough
    limit = _vm_bytes() + limit_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    ctx = CheckContext()
    before = _peak_rss_mb()
    exc: BaseException | None = None
    try:
        job(ctx)
    except BaseException as caught:  # noqa: BLE001 - every ending is data
        exc = caught
    growth = round(_peak_rss_mb() - before, 1)
    failed = _allocation_failure(exc)
    if failed:
        exc = Finding(Outcome.CRASH, f"allocation beyond the memory limit: {failed}")
    elif growth > GUARD_RSS_BUDGET_MB:
        exc = Finding(Outcome.CRASH, f"unbounded memory: peak RSS grew {growth} MB")
    extra = {"rss_growth_mb": growth, "address_space_limit_gb": round(limit / 1024**3, 2)}
    payload = dump_result(ctx, exc, extra).encode()
    view = memoryview(payload)
    while view:
        view = view[os.write(write_fd, view) :]


def run_forked(
    job: Callable[[CheckContext], None],
    limit_bytes: int = GUARD_LIMIT_BYTES,
    timeout_s: float = GUARD_TIMEOUT_S,
) -> dict[str, Any]:
    """Run ``job`` in a forked child under ``RLIMIT_AS`` and return its result as data.

    Why fork: the child inherits the imported libraries and the built zoo (a fresh
    interpreter would pay the import again for every cell), yet a loader that believes a
    header declaring terabytes can only kill the child. A child that dies or hangs is
    recorded as CRASH / TIMEOUT for this case; the cell goes on."""
    import select
    import signal
    import time

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_fd)
            _child(job, write_fd, limit_bytes)
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    timed_out = False
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], left)
            if not ready:
                continue
            data = os.read(read_fd, 1 << 16)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(read_fd)
        if timed_out or sys.exc_info()[0] is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"outcome": "TIMEOUT", "message": f"guarded case exceeded {timeout_s:g} s"}
    if chunks:
        return json.loads(b"".join(chunks))
    if os.WIFSIGNALED(status):
        how = f"killed by signal {os.WTERMSIG(status)} ({signal.Signals(os.WTERMSIG(status)).name})"
    else:
        how = f"exited with status {os.WEXITSTATUS(status)} without a result"
    return {
        "outcome": "CRASH",
        "message": f"guarded child process {how}",
        "details": {"child": how},
    }


def replay(ctx: CheckContext, result: Mapping[str, Any]) -> None:
    """Turn a guarded child's result back into this check's outcome."""
    if "expected" in result:
        ctx.expect(*(Outcome(o) for o in result["expected"]))
    ctx.detail(**result.get("details", {}))
    ctx.detail(guarded=True)
    outcome = Outcome(result["outcome"])
    message = result.get("message") or result.get("reason", "")
    if result.get("exc_type"):
        ctx.detail(library_exception=result["exc_type"])
    if outcome is Outcome.OK:
        return
    if outcome is Outcome.UNSUPPORTED:
        raise Unsupported(message)
    if outcome is Outcome.NOT_RUN:
        raise NotRun(message)
    if outcome is Outcome.HARNESS_ERROR:
        raise RuntimeError(f"guarded child: {message}")
    if outcome is Outcome.TIMEOUT:
        raise CheckTimeout(message)
    kind = result.get("exc_type")
    raise Finding(outcome, message if kind in (None, "Finding") else f"{kind}: {message}")


def dump_result(ctx: CheckContext, exc: BaseException | None, extra: Mapping[str, Any]) -> str:
    """One JSON object describing how a guarded job ended."""
    from harness.cell.classify import outcome_of

    outcome, reason = outcome_of(exc)
    original = exc.original if isinstance(exc, LibraryError) else exc
    line = {
        "outcome": outcome.value,
        "reason": reason,
        "expected": sorted(o.value for o in ctx.expected),
        "exc_type": type(original).__name__ if original is not None else None,
        "message": str(original)[:500] if original is not None else "",
        "details": {**ctx.details, **extra},
    }
    return json.dumps(line, default=str)


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
