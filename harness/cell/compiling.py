"""Which ``torch.compile`` backend the compile checks use, and whether it can run here.

The compile checks ask dynamo questions: does a hot-swap recompile (guards), do adapter
calls still reach a module behind the ``OptimizedModule`` wrapper, do saved artefacts get
reused. Inductor answers them on CUDA at full cost; on CPU its C++ code generation costs
minutes per graph on a 2-core runner while ``aot_eager`` runs the same dynamo tracing,
guards and AOTAutograd front end in seconds. ``ADAPTER_COMPAT_COMPILE_BACKEND`` overrides
(e.g. ``inductor`` to exercise CPU code generation too).

On CPU the compile checks are opt-in (``suites/conftest.py``), except the rows of
:data:`CPU_DEFAULT`: one compiled hot-swap on the smallest architecture, so every grid asks
dynamo's guard question at least once without the full compile set's minutes.
"""

from __future__ import annotations

import os
import shutil

import torch

BACKEND_ENV = "ADAPTER_COMPAT_COMPILE_BACKEND"
#: device type -> default backend
DEFAULT_BACKEND = {"cuda": "inductor", "cpu": "aot_eager"}


#: Families whose compiled hot-swap chain runs (``suites/families/test_hotswap.py``
#: parametrises by it): the ones users load most; tiny denoisers, 2-6 s each with
#: ``aot_eager`` (``suites/families/README.md``, hot-swap).
FAMILY_HOTSWAP: tuple[str, ...] = (
    "wan",
    "qwenimage",
    "flux2",
    "ltxvideo",
    "zimage",
    "hunyuanvideo",
)

#: Compile checks in the default CPU grid (no opt-in): node name -> the backend they were
#: sized for. With another backend forced (``ADAPTER_COMPAT_COMPILE_BACKEND=inductor``)
#: they are opt-in again, like the rest.
CPU_DEFAULT: dict[str, str] = {
    "test_compiled_hotswap[sd15]": "aot_eager",
    **{f"test_hotswap_enabled_compiled[{family}]": "aot_eager" for family in FAMILY_HOTSWAP},
}


def runs_by_default(node_name: str, device: torch.device | str) -> bool:
    """Whether a ``compile``-marked check runs without opt-in: every one on CUDA; on CPU
    the :data:`CPU_DEFAULT` rows, with their backend."""
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    sized_for = CPU_DEFAULT.get(node_name)
    return sized_for is not None and backend_for(kind) == sized_for


def backend_for(device: torch.device | str) -> str:
    kind = torch.device(device).type
    return os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND.get(kind, "aot_eager")


def missing(backend: str) -> str | None:
    """Why ``backend`` cannot compile here (None: it can)."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if backend != "inductor":
        return None
    try:
        import importlib

        importlib.import_module("torch._inductor")
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        return f"torch inductor unavailable: {exc}"
    if not any(shutil.which(cc) for cc in ("gcc", "cc", "clang")):
        return "no C compiler for CPU inductor"
    return None
