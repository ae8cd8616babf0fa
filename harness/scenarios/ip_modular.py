"""IP-Adapters in a modular pipeline (``StableDiffusionXLModularPipeline``, 0.35+), built
offline the way the modular docs build one from local weights.

Users get a modular pipeline from blocks (``StableDiffusionXLAutoBlocks().init_pipeline()``)
and give it components made by ``ComponentSpec(...).load()`` (a component with trained
weights must come from a spec, ``update_components`` refuses a bare module in 0.35). Here
the spec points at the zoo's SDXL UNet written to a local folder; the modular mixin
(``ModularIPAdapterMixin``) touches only ``pipe.unet``, so the UNet is the component it
needs. The checks then reuse the classic pipeline's oracles (``verify_loaded``, the
attention-branch formula, the pristine processor view): the adapter must behave the same
whichever pipeline class loaded it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.oracles.ip_adapter import processor_view

#: The public names a modular IP-Adapter user needs; absent before 0.35 (UNSUPPORTED).
MODULAR_API = ("StableDiffusionXLModularPipeline", "StableDiffusionXLAutoBlocks", "ComponentSpec")
IP_METHODS = ("load_ip_adapter", "set_ip_adapter_scale", "unload_ip_adapter")


def missing_api() -> list[str]:
    """Modular names / IP methods the installed diffusers lacks."""
    import diffusers

    missing = [n for n in MODULAR_API if not hasattr(diffusers, n)]
    if missing:
        return missing
    cls = diffusers.StableDiffusionXLModularPipeline
    return [f"{cls.__name__}.{m}" for m in IP_METHODS if not callable(getattr(cls, m, None))]


def save_unet(classic: Any, folder: Path) -> Path:
    """The zoo UNet written as a local model folder (our set-up, before any check call)."""
    classic.unet.save_pretrained(str(folder / "unet"))
    return folder


def build_modular(compat: Any, folder: Path, unet_class: type) -> Any:
    """``StableDiffusionXLAutoBlocks().init_pipeline()`` + ``update_components(unet=
    ComponentSpec(name="unet", type_hint=..., repo=folder, subfolder="unet").load())``,
    as a user does it (library calls: a failure is the library's)."""
    import diffusers

    with compat.library_call():
        blocks = diffusers.StableDiffusionXLAutoBlocks()
        pipe = blocks.init_pipeline()
        spec = diffusers.ComponentSpec(
            name="unet", type_hint=unet_class, repo=str(folder), subfolder="unet"
        )
        pipe.update_components(unet=spec.load())
    return pipe


def modular_load_kwargs(classic_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The modular ``load_ip_adapter`` takes the repo, subfolder and weight name only (it
    loads no image encoder: the modular pipeline has its own ``image_encoder`` slot)."""
    keep = ("pretrained_model_name_or_path_or_dict", "subfolder", "weight_name")
    return {k: classic_kwargs[k] for k in keep}


def ip_scales(unet: Any) -> dict[str, list[float]]:
    """Processor name -> its scale list, for processors that carry IP layers."""
    return {
        name: [float(s) for s in proc.scale]
        for name, proc in unet.attn_processors.items()
        if hasattr(proc, "scale") and isinstance(proc.scale, list)
    }


def first_block_config(slots: Any) -> dict[str, Any]:
    """A per-block config naming the first down block with IP processors (scale 1.0): a
    documented form (``{"down": {"block_i": s}}``); everything unnamed gets 0."""
    for slot in slots:
        if slot.ip_id is not None and slot.name.startswith("down_blocks."):
            block = int(slot.name.split(".")[1])
            return {"down": {f"block_{block}": 1.0}}
    raise RuntimeError("the target UNet has no down block with IP processors")


def unet_view(unet: Any) -> dict[str, str]:
    """What the UNet looks like apart from its tensors (what unload must restore), flat:
    ``processor <name>`` -> class, plus the image-embedding slot and its config entry."""
    view = {f"processor {name}": cls for name, cls in processor_view(unet).items()}
    view["encoder_hid_proj"] = type(getattr(unet, "encoder_hid_proj", None)).__name__
    view["config encoder_hid_dim_type"] = repr(getattr(unet.config, "encoder_hid_dim_type", None))
    return view
