"""Malformed adapter checkpoints, as data: broken ``.safetensors`` bytes and bad state dicts.

Three tables, one module each:

* :mod:`~harness.inputs.malformed.files` - ``FILE_CASES``: byte-level damage to a valid
  file (truncation, lying headers, huge declared sizes). ``memory_risky`` cases run in a
  memory-limited subprocess.
* :mod:`~harness.inputs.malformed.lora` - ``LORA_CASES``: bad LoRA state dicts (shape,
  dtype, rank, NaN, non-tensors, nesting, colliding names) for the SD1.5-style UNet of the
  zoo.
* :mod:`~harness.inputs.malformed.ip_adapter` - ``IP_CASES``: bad IP-Adapter state dicts
  (release layout, UNet numbering).

Each case says what a user is owed: ``valid`` files must load exactly (validity is decided
by the reference reader, :mod:`harness.oracles.safetensors`); invalid ones must be
rejected with a clear error. State-dict cases are judged by ``lora_expectation`` /
``ip_expectation``: every key either has its reference effect or is *reported* (a clear
error, or a warning that names it); a load that has no effect at all must say so.

Policy decisions (documented here, the one place they live):

* NaN / Inf weights are *loadable*: the reference effect ``W + B @ A`` is itself NaN, so a
  loader that applies them faithfully agrees with the oracle (OK). Rejecting them is also
  accepted (CLEAR_ERROR). Flagging such files is the job of a validating front end
  (``adapter-compat check``), not a compatibility failure of diffusers.
* fp16 / bf16 / fp64 tensors are loadable and must load. Integer or bool tensors and a
  conv-shaped ``[r, n, 1, 1]`` matrix for a Linear may be converted exactly (OK) or
  refused clearly; complex tensors must be refused, or the real part loaded *and* the
  loss reported.
* Colliding names (one module written by two naming schemes with different values),
  stray keys and incomplete pairs: a clear error, or a warning naming them. A module left
  with a randomly initialised or uninitialised (meta) half is WRONG_RESULT either way.
* A file whose data bytes changed but whose header is intact is *valid*: safetensors has
  no checksum, so a loader cannot tell and must return the changed values.
"""
