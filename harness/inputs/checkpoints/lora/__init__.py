"""Synthetic LoRA checkpoints in every format users load (formats as data).

* :mod:`.layouts` - model layouts and the BFL / SGM <-> diffusers naming tables;
* :mod:`.formats` - the formats: stems, key grammar, which groups each can express;
* :mod:`.build` - writers (state dicts and ``.safetensors`` files);
* :mod:`.cases` - hypothesis strategies over groups / subsets / alpha / dtype / order;
* :mod:`.manifests` - full-size layouts and key -> shape manifests (``fixtures/lora``).

Import-light: only :mod:`.build`, :mod:`.cases` and :mod:`.manifests` need torch.
"""
