"""The IP-Adapter loader mixins the suite drives, as data: mixin -> the rows that call it.

Why: the family axis of LoRA loaders comes from the library (``suites/families``); the
IP-Adapter loaders get the same inventory (``ip_adapter/probe::unknown_ip_adapter_mixins``),
so a loader added in a new release (a new family's ``*IPAdapterMixin``) shows up as a
coverage gap in the grid instead of going unnoticed.
"""

from __future__ import annotations

#: Mixin class name -> what drives it (``suites/ip_adapter``).
COVERED_MIXINS: dict[str, str] = {
    "IPAdapterMixin": "sd15 / sdxl entries of every ip_adapter row (load, scale, forward, "
    "unload, swap, multi, meta, convert)",
    "SD3IPAdapterMixin": "the sd3 entries (load, scale, forward, unload)",
    "FluxIPAdapterMixin": "the flux-base entries (load, scale, forward, unload)",
    "ModularIPAdapterMixin": "test_modular.py (the modular SDXL pipeline's load / scale / unload)",
}
