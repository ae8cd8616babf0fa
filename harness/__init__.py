"""adapter-compat: compatibility regression harness for adapter checkpoints in diffusers."""

__version__ = "0.1.0"
