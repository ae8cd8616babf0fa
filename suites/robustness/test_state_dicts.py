"""Bad LoRA and IP-Adapter state dicts through ``load_lora_weights`` / ``load_ip_adapter``.

Cases and their references live in ``harness.inputs.malformed`` (``lora.LORA_CASES``,
``ip_adapter.IP_CASES``). The oracle observes every targeted UNet projection's effective weight from
its own forward pass and compares it with ``W + scale * up @ down`` computed from the
dict: every key has its effect or is reported (error, or a warning naming it); a load
with no effect at all must say so; an AssertionError / KeyError / AttributeError is a
CRASH whatever the input.
"""

import pytest

from harness.inputs.malformed.ip_adapter import IP_CASE_IDS
from harness.inputs.malformed.lora import LORA_CASE_IDS, LORA_FILE_CASES
from harness.scenarios import robustness as rp


@pytest.mark.parametrize("case_id", LORA_CASE_IDS)
def test_lora_dict(compat, robust_env, case_id):
    compat.param(loader="lora-dict", case=case_id)
    rp.run_lora_dict(compat, robust_env, case_id)


@pytest.mark.parametrize("case_id", LORA_FILE_CASES)
def test_lora_dict_as_file(compat, robust_env, case_id):
    compat.param(loader="lora", case=case_id)
    rp.run_lora_dict(compat, robust_env, case_id, as_file=True)


@pytest.mark.parametrize("case_id", IP_CASE_IDS)
def test_ip_adapter_dict(compat, robust_env, case_id):
    compat.param(loader="ip-adapter-dict", case=case_id)
    rp.run_ip_dict(compat, robust_env, case_id)
