"""Model families diffusers loads LoRAs for, beyond the SD1.5 / SDXL / Flux zoo.

``table`` is the committed data (family -> mixin, pipeline, denoiser class and a tiny
config), ``probe`` asks the installed diffusers which ``*LoraLoaderMixin`` classes it has,
``pipelines`` builds one tiny offline pipeline per family, ``lora_files`` writes
diffusers/PEFT-named LoRA files for it and ``layouts`` the non-diffusers ones (original-model
and trainer names, as tables). Nothing here judges the library.
"""
