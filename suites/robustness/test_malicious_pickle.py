"""Pickled adapters whose unpickling would run code, through every path that takes them.

The payload only creates a marker file; the marker decides (never the loader's source).
``benign``: the same checkpoint without payload must load, proving the path reads the
file at all. A created marker is recorded as WRONG_RESULT with ``security: true`` and
``code_executed: true`` in the details; ``torch_load_calls`` shows who called
``torch.load`` and whether ``weights_only`` was passed explicitly.
"""

import pytest

from harness.drivers.state_dict import PICKLE_PATHS
from harness.scenarios import robustness as rp


@pytest.mark.parametrize("variant", rp.PICKLE_VARIANTS)
@pytest.mark.parametrize("path", tuple(PICKLE_PATHS))
def test_pickle(compat, robust_env, path, variant):
    compat.param(loader=path, variant=variant, security=True)
    compat.detail(call=PICKLE_PATHS[path])
    rp.run_pickle(compat, robust_env, path, variant)
