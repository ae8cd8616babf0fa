"""Loaders under test: diffusers, and the converters apps ship (InvokeAI, ...).

A loader is what turns a LoRA file into a change of model weights. The suites judge that
change against the independent reference (:mod:`harness.oracles.lora`), whoever made it.
The contract is :mod:`harness.loaders.spec` (stdlib: the outer tool reads install recipes
from it); :mod:`harness.loaders.registry` finds the loaders (built-in ones and the
``adapter_compat.loaders`` entry point group); the implementations (:mod:`.invokeai`,
:mod:`.diffusers`) import torch and run inside a cell. See ``docs/loaders.md``.
"""
