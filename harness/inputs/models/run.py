"""``run_step``: the one deterministic denoising step every suite compares.

Defaults come from the zoo table (prompt "a photo", 32x32, one step, short T5 sequence);
a default this version's ``__call__`` lacks is left out silently (it is ours), but a
keyword the *caller* passes that ``__call__`` does not name explicitly raises
:class:`Unsupported`: the API under test (e.g. ``ip_adapter_image_embeds`` before 0.27)
does not exist in this version.
"""

from __future__ import annotations

from typing import Any

from harness.cell.classify import Unsupported
from harness.inputs.models.build import accepted_parameters
from harness.inputs.models.specs import ENCODER_SPECS, PIPELINE_SPECS

#: Output of ``run_step`` unless the caller passes ``output_type``: decoded pixels run the
#: whole pipeline (VAE included) and have the same shape in every version.
DEFAULT_OUTPUT_TYPE = "np"


def call_defaults(pipe: Any) -> dict[str, Any]:
    """The zoo's ``run_step`` defaults for the pipeline's class (or its zoo base class)."""
    names = [cls.__name__ for cls in type(pipe).__mro__]
    for spec in PIPELINE_SPECS.values():
        if spec.pipeline_cls in names:
            return dict(spec.call)
    return {"prompt": "a photo", "num_inference_steps": 1}


def run_step(pipe: Any, seed: int = 0, **kw: Any) -> Any:
    """One seeded denoising step; returns ``.images`` (``np.ndarray`` for ``"np"``, a tensor
    for ``"latent"`` / ``"pt"``).

    The generator lives on the CPU so the initial noise is the same on every device."""
    import torch

    # Explicit parameters only: most ``__call__``s also take ``**kwargs`` (for deprecated
    # callback arguments) and silently ignore anything else, so a keyword they do not name
    # is an API this version does not have.
    params, _ = accepted_parameters(type(pipe).__call__)
    unknown = sorted(k for k in kw if k not in params)
    if unknown:
        import diffusers

        raise Unsupported(
            f"{type(pipe).__name__}.__call__ has no parameter {', '.join(unknown)} "
            f"in diffusers {diffusers.__version__}"
        )
    kwargs = {k: v for k, v in call_defaults(pipe).items() if k in params}
    kwargs["output_type"] = DEFAULT_OUTPUT_TYPE
    kwargs.update(kw)
    if "generator" not in kw:
        kwargs["generator"] = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(**kwargs)
    return out.images if hasattr(out, "images") else out[0]


def tiny_image(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Any:
    """A seeded random RGB ``PIL.Image`` (width, height) for image-encoder inputs."""
    import numpy as np
    from PIL import Image

    pixels = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def encode_image(name: str, model: Any, processor: Any, image: Any = None) -> Any:
    """Encode ``image`` (default ``tiny_image()``) with zoo encoder ``name``; returns the
    output an IP-Adapter consumes (see ``EncoderSpec.output``)."""
    import torch

    spec = ENCODER_SPECS[name]
    pixels = processor(images=image if image is not None else tiny_image(), return_tensors="pt")
    param = next(model.parameters())
    pixel_values = pixels.pixel_values.to(device=param.device, dtype=param.dtype)
    with torch.no_grad():
        if spec.output == "penultimate":
            return model(pixel_values, output_hidden_states=True).hidden_states[-2]
        return model(pixel_values).image_embeds
