"""Checkpoint converters the harness ships to users (training layout -> release layout),
each with a validation report against a template of the target architecture."""
