"""How the robustness suite's loader paths hand a checkpoint to diffusers, per version.

The only robustness code that knows library APIs: where each path expects its file
(``pipe.load_lora_weights(folder, weight_name=...)``, ``pipe.load_ip_adapter(folder,
subfolder, weight_name)``, diffusers' own ``load_state_dict``, ``FluxPipeline.lora_state_dict``,
``CLIPVisionModelWithProjection.from_pretrained``, ``pipe.load_textual_inversion``), the
call that reads it - made the way users make it - and the one version table the paths
need (:data:`STATE_DICT_READERS`, asked through :mod:`harness.drivers.probe`). What a load
should have done is judged in :mod:`harness.scenarios.robustness`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.cell.classify import Unsupported
from harness.drivers.probe import at_least
from harness.inputs import pickles as pp
from harness.inputs.malformed.files import encode, truncate
from harness.inputs.malformed.lora import build_lora
from harness.oracles.safetensors import reference_tensors

if TYPE_CHECKING:  # the session object lives with the scenarios, which import this module
    from harness.scenarios.robustness import Env

# -- version facts (data) --------------------------------------------------------------------------
#: Where diffusers keeps ``load_state_dict(checkpoint_file)``: (first version, module).
#: It moved to ``model_loading_utils`` in 0.28. Checked at run time: a row that does not
#: resolve is a HARNESS_ERROR (our table is wrong), never a library finding.
STATE_DICT_READERS: tuple[tuple[str, str], ...] = (
    ("0.28.0", "diffusers.models.model_loading_utils"),
    ("0.0.0", "diffusers.models.modeling_utils"),
)

# -- file layout of the paths (data) ---------------------------------------------------------------
ENCODER = "clip-vision-1024"  # the zoo image encoder the IP-Adapter paths load
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


# -- the library's readers -------------------------------------------------------------------------
def state_dict_reader() -> tuple[str, Callable[..., Any]]:
    """diffusers' ``load_state_dict`` for the installed version (per STATE_DICT_READERS)."""
    for first, module in STATE_DICT_READERS:
        if at_least("diffusers", first):
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


# -- file cases ---------------------------------------------------------------------------------------
def write_for_path(env: Env, path: str, blob: bytes) -> tuple[Path, Callable[[], Any]]:
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


def pickle_call(env: Env, path: str, variant: str, marker: Path) -> Callable[[], Any]:
    """Lay out the folder for ``path`` with a (malicious) pickle; return the library call."""
    folder = env.folder(f"{path}-{variant}")
    lora = build_lora(env.base_targets)
    if path in ("lora-bin", "lora-pt", "lora-safetensors-fallback"):
        name = LORA_PT if path == "lora-pt" else LORA_DEFAULT_BIN
        _write_pickle(folder / name, lora, variant, marker)
        pipe = env.pipe()
        if path == "lora-safetensors-fallback":
            damaged = truncate(encode(lora, metadata={"format": "pt"}), 40)
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
        flux = reference_tensors(env.flux_blob()) or {}
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
