"""How each diffusers version is asked to load an IP-Adapter.

The UNet mixin takes ``(path, subfolder, weight_name, image_encoder_folder=...)``; the Flux
mixin ``(path, weight_name, subfolder, image_encoder_pretrained_model_name_or_path,
image_encoder_dtype)``; the SD3 mixin a single adapter with ``image_encoder_folder``.
Named parameters are probed from the installed signature; parameters a loader pops from
``**kwargs`` (silently ignoring unknown ones) are facts in ``KWARG_SINCE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.cell.classify import Unsupported
from harness.drivers.probe import Since, accepts, at_least
from harness.inputs.checkpoints.ip_adapter.hub import ENTRIES, Entry

#: ``**kwargs`` options of ``load_ip_adapter`` -> first diffusers version that reads them
#: (older versions accept and silently ignore them, so a probe cannot tell).
KWARG_SINCE: dict[str, str] = {"low_cpu_mem_usage": "0.27"}

#: ``set_ip_adapter_scale`` documents per-block dicts (``{"down": {"block_2": [0, 1]}}``)
#: from 0.28 (InstantStyle); before, its public contract is a float or one per adapter, so
#: a dict there is a call the API does not offer (unsupported), not a finding.
PER_BLOCK_SCALES = Since("0.28", source="diffusers 0.28.0 release notes, set_ip_adapter_scale")


def family(pipe: Any) -> str:
    """``unet`` | ``flux`` | ``sd3``: which IP-Adapter mixin the pipeline uses."""
    if getattr(pipe, "unet", None) is not None:
        return "unet"
    name = type(pipe.transformer).__name__
    return "flux" if "Flux" in name else "sd3"


def denoiser(pipe: Any) -> Any:
    return pipe.unet if family(pipe) == "unet" else pipe.transformer


def require_ip_adapter(pipe: Any) -> None:
    """UNSUPPORTED where the pipeline class has no IP-Adapter mixin in this version."""
    for method in ("load_ip_adapter", "unload_ip_adapter", "set_ip_adapter_scale"):
        if not callable(getattr(pipe, method, None)):
            raise Unsupported(f"{type(pipe).__name__}.{method} does not exist in this version")


def require_kwarg(pipe: Any, name: str) -> None:
    """UNSUPPORTED when ``load_ip_adapter`` does not read option ``name``."""
    if accepts(pipe.load_ip_adapter, name):
        return
    since = KWARG_SINCE.get(name)
    if since is None or not at_least("diffusers", since):
        raise Unsupported(f"load_ip_adapter has no {name!r} option in this version")


def load_kwargs(
    pipe: Any,
    root: str | Path,
    names: str | Entry | Sequence[str | Entry],
    fmt: str = "safetensors",
    encoder_folder: str | None | type[Ellipsis] = ...,
    **options: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``pipe.load_ip_adapter`` loading ``names`` (ENTRIES keys or
    ``Entry`` objects for files written elsewhere under ``root``) from the hub-like
    ``root``.

    ``encoder_folder``: ``...`` means the entry's right encoder (``image_encoder_folder``
    when it differs from the default), ``None`` loads no encoder, a string is passed as is.
    Raises Unsupported when the version cannot express the request."""
    items = [names] if isinstance(names, (str, Entry)) else list(names)
    entries = [ENTRIES[n] if isinstance(n, str) else n for n in items]
    fam = family(pipe)
    for key in options:
        require_kwarg(pipe, key)
    if fam == "sd3":
        if len(entries) != 1:
            raise Unsupported("SD3IPAdapterMixin loads one IP-Adapter at a time")
        entry = entries[0]
        folder = entry.right_encoder if encoder_folder is ... else encoder_folder
        kw: dict[str, Any] = {
            "pretrained_model_name_or_path_or_dict": str(root),
            "subfolder": entry.subfolder,
            "weight_name": entry.weight_name(fmt),
            # A folder with "/" is taken as is (relative folders resolve against the CWD).
            "image_encoder_folder": None if folder is None else str(Path(root) / folder),
        }
        return kw | options
    weight_names = [e.weight_name(fmt) for e in entries]
    subfolders = [e.subfolder for e in entries]
    if fam == "flux":
        folder = _one_folder(entries, encoder_folder)
        return {
            "pretrained_model_name_or_path_or_dict": str(root),
            "weight_name": _one_or_list(weight_names),
            "subfolder": _one_or_list(subfolders),
            "image_encoder_pretrained_model_name_or_path": (
                None if folder is None else str(Path(root) / folder)
            ),
            "image_encoder_dtype": pipe.dtype,
        } | options
    kw = {
        "pretrained_model_name_or_path_or_dict": str(root),
        "subfolder": _one_or_list(subfolders),
        "weight_name": _one_or_list(weight_names),
    }
    folder = _one_folder(entries, encoder_folder)
    if folder != entries[0].default_encoder:
        if not accepts(pipe.load_ip_adapter, "image_encoder_folder"):
            raise Unsupported("load_ip_adapter has no image_encoder_folder parameter here")
        # "<sub>/image_encoder" style folders (with a "/") are relative to the repo root.
        kw["image_encoder_folder"] = folder
    return kw | options


def _one_folder(entries: Sequence[Entry], encoder_folder: Any) -> str | None:
    if encoder_folder is not ...:
        return encoder_folder
    folders = {e.right_encoder for e in entries}
    if len(folders) != 1:
        raise ValueError(f"entries need different encoders: {sorted(map(str, folders))}")
    return folders.pop()


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values
