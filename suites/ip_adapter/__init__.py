"""IP-Adapter suite: release layouts, training-checkpoint conversion, encoder-width swaps,
meta-device loading (seeds 000, 002, 003)."""
