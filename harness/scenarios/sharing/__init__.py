"""Pipelines that share modules (base + refiner, txt2img + img2img): builders and comparison helpers for
``suites/shared``."""
