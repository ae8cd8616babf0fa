"""Model families diffusers loads LoRAs for, beyond the SD1.5 / SDXL / Flux zoo.

``table`` is the committed data (family -> mixin, pipeline, denoiser class and a tiny
config), ``probe`` asks the installed diffusers which ``*LoraLoaderMixin`` classes it has,
``pipelines`` builds one tiny offline pipeline per family and ``lora_files`` writes
diffusers/PEFT-named LoRA files for it. Nothing here judges the library.
"""
