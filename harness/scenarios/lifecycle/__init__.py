"""Adapter lifecycle: a pure model of a pipeline's adapter state (``model``), the
per-version semantics it follows (``semantics``), the stateful machine that drives the
real loaders against it (``machine``) and the standalone reproduction scripts of shrunk
failing sequences (``repro``)."""
