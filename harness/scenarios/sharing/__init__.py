"""Pipelines that share modules (seed 001): builders and comparison helpers for
``suites/shared``."""
