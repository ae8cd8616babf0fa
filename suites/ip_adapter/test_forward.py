"""The loaded IP-Adapter modules compute the published model, not only hold its tensors.

Oracles (plain torch, ``harness/oracles/ip_projection.py`` and ``ip_attention.py``): the
image projection's output on a fixed random input equals the published formula applied
to the release tensors; one cross-attention processor's output at scale s minus at scale 0
equals ``s · to_out(softmax(q k_ipᵀ/√d) v_ip)`` with the release's ``to_k_ip`` /
``to_v_ip``. Drivers: ``harness/scenarios/ip_forward.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.scenarios.ip_forward import check_ip_attention_branch, check_projection_forward

pytestmark = pytest.mark.filterwarnings("ignore")

#: One entry per image_proj variant (SDXL Plus too: another width, same formula).
PROJECTION_CASES = [
    "sd15-base",
    "sd15-plus",
    "sd15-full-face",
    "sd15-faceid",
    "sd15-faceid-plus",
    "sdxl-plus-vith",
    "flux-base",
    "sd3",
]

#: UNet families (the branch formula covers UNet cross-attention processors).
BRANCH_CASES = ["sd15-base", "sdxl-base"]


@pytest.mark.parametrize("entry", PROJECTION_CASES)
def test_projection_forward(compat: Any, ipa: Any, entry: str) -> None:
    """Image projection output == the published formula on the release tensors."""
    check_projection_forward(compat, ipa, entry)


@pytest.mark.parametrize("entry", BRANCH_CASES)
def test_ip_attention_branch(compat: Any, ipa: Any, entry: str) -> None:
    """Processor output difference between scale s and 0 == s · to_out(image branch)."""
    check_ip_attention_branch(compat, ipa, entry)
