"""Independent reference oracles: expected effects computed from checkpoints alone."""
