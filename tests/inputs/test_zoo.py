"""Self-tests of the tiny pipeline zoo and the smoke suite (run in the newest cell env).

What they pin down: copies are independent (a check that mutates its pipeline cannot leak
into the next), weights are deterministic and non-trivial, a missing class is
UNSUPPORTED, and the smoke determinism check really turns to "regression" when
determinism breaks (a check that cannot be shown to fail is not done).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
np = pytest.importorskip("numpy")

from harness.cell.classify import Unsupported  # noqa: E402
from harness.inputs.models import PIPELINES, pipeline_exists  # noqa: E402
from harness.inputs.models.build import filter_kwargs  # noqa: E402
from harness.inputs.models.run import run_step  # noqa: E402
from harness.inputs.models.zoo import Zoo, deep_copy  # noqa: E402
from harness.protocol.records import read_records  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "suites" / "smoke" / "test_pipelines.py"


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return Zoo(device="cpu", dtype=torch.float32)


def _modules(pipe: Any) -> dict[str, Any]:
    return {k: v for k, v in pipe.components.items() if isinstance(v, torch.nn.Module)}


def _pointers(pipe: Any) -> set[int]:
    return {p.data_ptr() for m in _modules(pipe).values() for p in m.parameters() if p.numel() > 0}


def test_copies_share_no_storage_and_do_not_leak(zoo: Zoo) -> None:
    a, b = zoo.get("sd15"), zoo.get("sd15")
    original = zoo._original("sd15")
    assert not _pointers(a) & _pointers(b)
    assert not _pointers(a) & _pointers(original)
    before = {k: v.clone() for k, v in b.unet.state_dict().items()}
    with torch.no_grad():
        for param in a.unet.parameters():
            param.add_(1.0)
    a.scheduler.set_timesteps(3)
    assert all(torch.equal(before[k], v) for k, v in b.unet.state_dict().items())
    fresh = zoo.get("sd15")
    assert all(torch.equal(before[k], v) for k, v in fresh.unet.state_dict().items())
    assert fresh.scheduler.num_inference_steps is None


def test_deep_copy_equals_copy_deepcopy(zoo: Zoo) -> None:
    """The fast path must give what ``copy.deepcopy`` gives: same module tree, same
    weights, same output."""
    original = zoo._original("sdxl")
    fast, slow = deep_copy(original), copy.deepcopy(original)
    for key, module in _modules(fast).items():
        other = _modules(slow)[key]
        assert [(n, type(m)) for n, m in module.named_modules()] == [
            (n, type(m)) for n, m in other.named_modules()
        ]
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in module.state_dict().items())
        assert module.training == other.training
    assert np.array_equal(run_step(fast), run_step(slow))


def test_deep_copy_keeps_inner_sharing_and_isolates_hooks() -> None:
    shared = torch.nn.Linear(2, 2)
    seq = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    clone = deep_copy(seq)
    assert clone[0] is clone[2] and clone[0] is not shared
    clone.register_forward_hook(lambda *args: None)
    clone[0].weight.data.zero_()
    assert not seq._forward_hooks and bool(shared.weight.ne(0).any())


def test_encoder_copies_are_independent(zoo: Zoo) -> None:
    a, b = zoo.component("clip-vision-1024"), zoo.component("clip-vision-1024")
    assert a is not b
    with torch.no_grad():
        next(a.parameters()).zero_()
    assert bool(next(b.parameters()).ne(0).any())


def test_weights_are_deterministic_across_zoos_and_nontrivial(zoo: Zoo) -> None:
    other = Zoo(device="cpu", dtype=torch.float32)
    for name in ("sd15", "clip-vision-1280"):
        mine = zoo.get(name) if name in PIPELINES else zoo.component(name)
        theirs = other.get(name) if name in PIPELINES else other.component(name)
        modules = _modules(mine) if name in PIPELINES else {"m": mine}
        others = _modules(theirs) if name in PIPELINES else {"m": theirs}
        for key, module in modules.items():
            state, other_state = module.state_dict(), others[key].state_dict()
            for pname, tensor in module.named_parameters():
                assert bool(tensor.ne(0).any()), f"{name}.{key}.{pname} is all zero"
                assert torch.equal(state[pname], other_state[pname]), f"{name}.{key}.{pname}"


def test_run_step_is_deterministic_and_seeded(zoo: Zoo) -> None:
    first = run_step(zoo.get("sd15"), seed=0)
    again = run_step(zoo.get("sd15"), seed=0)
    other = run_step(zoo.get("sd15"), seed=1)
    assert first.shape == (1, 32, 32, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_building_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Zoo().get("sd15")
    assert torch.equal(torch.rand(3), expected)


def test_run_step_unknown_keyword_is_unsupported(zoo: Zoo) -> None:
    with pytest.raises(Unsupported, match="no_such_option"):
        run_step(zoo.get("sd15"), no_such_option=1)


def test_filter_kwargs_records_dropped_keys() -> None:
    def ctor(a: int, b: int = 0) -> None: ...

    kept, dropped = filter_kwargs(ctor, {"a": 1, "c": 2, "d": 3})
    assert kept == {"a": 1} and dropped == ["c", "d"]


def _hide_class(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``diffusers.<name>`` absent, lazy loader included (as in an older version)."""
    getattr(diffusers, name)  # resolve once so the lazy module caches the attribute
    monkeypatch.delattr(diffusers, name)
    table = getattr(diffusers, "_class_to_module", None)
    if isinstance(table, dict) and name in table:
        monkeypatch.delitem(table, name)
    objects = getattr(diffusers, "_objects", None)
    if isinstance(objects, dict) and name in objects:
        monkeypatch.delitem(objects, name)
    assert not hasattr(diffusers, name)


@pytest.mark.skipif(not hasattr(diffusers, "FluxPipeline"), reason="diffusers has no Flux")
def test_missing_pipeline_class_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_class(monkeypatch, "FluxPipeline")
    zoo = Zoo()
    assert not zoo.available("flux") and not pipeline_exists("flux")
    with pytest.raises(Unsupported, match=r"FluxPipeline does not exist in diffusers \d"):
        zoo.get("flux")
    assert zoo.available("sd15")


def _run_smoke(tmp_path: Path, select: str, tag: str) -> list[dict[str, Any]]:
    """Run the smoke suite in-process (torch and diffusers are already imported) and
    return its check records."""
    results = tmp_path / f"{tag}.jsonl"
    code = pytest.main(
        [
            str(SMOKE),
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(REPO),
            "-k",
            select,
            "--compat-results",
            str(results),
        ]
    )
    assert code in (0, 1), f"inner pytest exited {code}"
    return [r for r in read_records([results]) if r.get("kind") == "check"]


def test_smoke_determinism_check_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = _run_smoke(tmp_path, "deterministic and sd15", "clean")
    assert [(r["check_id"], r["verdict"]) for r in clean] == [
        ("smoke/pipelines::deterministic[sd15]", "pass")
    ]

    # Planted bug: the noise sampler ignores the caller's generator (draws from the global
    # RNG instead), the classic way a pipeline stops being reproducible.
    real_randn = torch.randn

    def randn_ignoring_generator(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("generator", None)
        return real_randn(*args, **kwargs)

    monkeypatch.setattr(torch, "randn", randn_ignoring_generator)
    planted = _run_smoke(tmp_path, "deterministic and sd15", "planted")
    assert [(r["verdict"], r["observed"]) for r in planted] == [("regression", "WRONG_RESULT")]


@pytest.mark.skipif(not hasattr(diffusers, "FluxPipeline"), reason="diffusers has no Flux")
def test_smoke_reports_missing_class_as_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_class(monkeypatch, "FluxPipeline")
    records = _run_smoke(tmp_path, "builds and flux", "missing")
    assert [(r["verdict"], r["observed"]) for r in records] == [("unsupported", "UNSUPPORTED")]
    assert "FluxPipeline does not exist" in records[0]["message"]
