"""Damaged ``.safetensors`` files through every loader path that reads them.

One check per (loader path, case of ``harness.inputs.malformed.files.FILE_CASES``). The
expected outcome comes from the harness's own reference reader: a file the format allows
must load exactly (OK); any other must be refused with a clear error. A load that returns
anyway is judged against the intact file (silent no-op / partial load / accepted as if
intact). Cases declaring huge sizes run in a forked child under RLIMIT_AS and replay its result.
"""

import pytest

from harness.cell.forked import replay, run_forked
from harness.drivers.state_dict import FILE_PATHS
from harness.inputs.malformed.files import FILE_CASE_IDS, file_case
from harness.scenarios import robustness as rp


@pytest.mark.parametrize("case_id", FILE_CASE_IDS)
@pytest.mark.parametrize("path", tuple(FILE_PATHS))
def test_damaged_file(compat, robust_env, path, case_id):
    case = file_case(case_id)
    compat.param(loader=path, case=case_id, memory_risky=case.memory_risky)
    compat.detail(note=case.note, call=FILE_PATHS[path].call)
    original = robust_env.blob_for(path)
    blob = case.build(original)
    if case.memory_risky:
        replay(
            compat,
            run_forked(
                lambda ctx: rp.run_file_case(ctx, rp.host_env(robust_env), path, blob, original)
            ),
        )
        return
    rp.run_file_case(compat, robust_env, path, blob, original)
