"""Writers of synthetic adapter checkpoints (formats as data)."""
