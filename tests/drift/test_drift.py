"""Self-tests of the static drift checks (harness/drift, suites/drift, `adapter-compat drift`).

Fast and offline: every package is a few files written to tmp_path; nothing imports torch
or diffusers. The planted bug is the real one of 0.33: a callee renamed ``device`` to ``device_map``
while callers kept passing ``device=``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cell.classify import outcome_of
from harness.cell.context import CheckContext
from harness.drift.apidiff import (
    AllowEntry,
    apply_allowlist,
    diff_params,
    diff_snapshots,
    load_allowlist,
)
from harness.drift.callsites import scan
from harness.drift.snapshot import (
    committed_versions,
    dumps,
    load_snapshot,
    take_snapshot,
    write_snapshot,
)
from harness.drift.timeline import build_timeline, timeline_data
from harness.errors import UsageError
from harness.protocol.outcomes import Outcome, Verdict, verdict_for

ROOT = Path(__file__).resolve().parents[2]


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def line_of(root: Path, rel: str, needle: str) -> int:
    for i, line in enumerate((root / rel).read_text().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {rel}")


def run_scan(root: Path, package: str, **kw):  # type: ignore[no-untyped-def]
    return scan(package, path=root, companions=kw.pop("companions", ()), workers=1, **kw)


# -- 1. a fake package with the device/device_map drift ------------------------------------
def test_fake_package_device_drift_flagged_at_file_line(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "fakepkg/__init__.py": '__version__ = "1.0"\n',
            "fakepkg/core.py": """
                def load_into_meta(model, state_dict, dtype=None, device_map=None):
                    return model
            """,
            "fakepkg/stale.py": """
                from .core import load_into_meta


                def load(model, sd, device):
                    return load_into_meta(model, sd, device=device, dtype=None)
            """,
            "fakepkg/fixed.py": """
                from fakepkg.core import load_into_meta


                def load(model, sd, device):
                    return load_into_meta(model, sd, device_map={"": device})
            """,
        },
    )
    result = run_scan(root, "fakepkg")
    assert [(m.file, m.line) for m in result.mismatches] == [
        ("fakepkg/stale.py", line_of(root, "fakepkg/stale.py", "device=device"))
    ]
    mismatch = result.mismatches[0]
    assert mismatch.problems == ["unexpected keyword argument 'device'"]
    assert mismatch.callee == "fakepkg.core.load_into_meta"
    assert "device_map=None" in mismatch.signature
    assert (mismatch.callee_file, mismatch.callee_line) == ("fakepkg/core.py", 1)
    assert result.checked == {"fakepkg": 2}


# -- 2. a package laid out like diffusers 0.33.0.dev (device -> device_map) ------------------------------
SEED_LAYOUT = {
    "diffusers/__init__.py": '__version__ = "0.33.0.dev0"\n',
    "diffusers/models/__init__.py": "",
    "diffusers/models/model_loading_utils.py": """
        def load_model_dict_into_meta(
            model,
            state_dict,
            dtype=None,
            model_name_or_path=None,
            hf_quantizer=None,
            keep_in_fp32_modules=None,
            device_map=None,
            unexpected_keys=None,
        ):
            return []
    """,
    "diffusers/models/modeling_utils.py": """
        from .model_loading_utils import load_model_dict_into_meta  # re-export, as in 0.28+

        _LOW_CPU_MEM_USAGE_DEFAULT = True
    """,
    "diffusers/loaders/__init__.py": "",
    "diffusers/loaders/transformer_flux.py": """
        from ..models.modeling_utils import _LOW_CPU_MEM_USAGE_DEFAULT, load_model_dict_into_meta


        class FluxTransformer2DLoadersMixin:
            def _convert_ip_adapter_image_proj_to_diffusers(self, state_dict, low_cpu_mem_usage=_LOW_CPU_MEM_USAGE_DEFAULT):
                image_projection = object()
                updated_state_dict = dict(state_dict)
                device = "cpu"
                if not low_cpu_mem_usage:
                    image_projection.load_state_dict(updated_state_dict)
                else:
                    load_model_dict_into_meta(image_projection, updated_state_dict, DEVICE_ARG, dtype=self.dtype)
                return image_projection
    """,
    "diffusers/loaders/transformer_sd3.py": """
        from ..models.modeling_utils import load_model_dict_into_meta


        class SD3Transformer2DLoadersMixin:
            def _load_ip_adapter_weights(self, state_dict, low_cpu_mem_usage=True):
                device = "cpu"
                image_proj = object()
                load_model_dict_into_meta(image_proj, state_dict, DEVICE_ARG, dtype=self.dtype)
    """,
    "diffusers/loaders/unet.py": """
        from ..models import modeling_utils


        class UNet2DConditionLoadersMixin:
            def _convert_ip_adapter_attn_to_diffusers(self, state_dicts, low_cpu_mem_usage=True):
                device = "cpu"
                attn_procs = {}
                for name, value_dict in state_dicts.items():
                    modeling_utils.load_model_dict_into_meta(attn_procs[name], value_dict, DEVICE_ARG, dtype=None)
                return attn_procs
    """,
    "diffusers/loaders/ip_adapter.py": """
        class IPAdapterMixin:
            def load_ip_adapter(self, pretrained_model_name_or_path_or_dict, subfolder, weight_name, **kwargs):
                self.unet._load_ip_adapter_weights(pretrained_model_name_or_path_or_dict, low_cpu_mem_usage=True)
    """,
}


def seed_tree(root: Path, device_arg: str) -> Path:
    return write_tree(
        root, {k: v.replace("DEVICE_ARG", device_arg) for k, v in SEED_LAYOUT.items()}
    )


def test_diffusers_layout_device_map_drift_flagged_in_every_loader(tmp_path: Path) -> None:
    root = seed_tree(tmp_path, "device=device")
    result = run_scan(root, "diffusers")
    flagged = {(m.file, m.line) for m in result.mismatches}
    assert flagged == {
        (
            "diffusers/loaders/transformer_flux.py",
            line_of(root, "diffusers/loaders/transformer_flux.py", "device=device"),
        ),
        (
            "diffusers/loaders/transformer_sd3.py",
            line_of(root, "diffusers/loaders/transformer_sd3.py", "device=device"),
        ),
        ("diffusers/loaders/unet.py", line_of(root, "diffusers/loaders/unet.py", "device=device")),
    }
    for mismatch in result.mismatches:
        assert mismatch.callee == "diffusers.models.model_loading_utils.load_model_dict_into_meta"
        assert mismatch.problems == ["unexpected keyword argument 'device'"]
        assert mismatch.callee_file == "diffusers/models/model_loading_utils.py"
    assert result.version == "0.33.0.dev0"


def test_diffusers_layout_with_fixed_callers_is_clean(tmp_path: Path) -> None:
    root = seed_tree(tmp_path, 'device_map={"": device}')
    result = run_scan(root, "diffusers")
    assert result.mismatches == []
    assert result.checked["diffusers"] == 3


def test_a_repeated_scan_sees_edited_callers(tmp_path: Path) -> None:
    root = seed_tree(tmp_path / "src", "device=device")
    first = run_scan(root, "diffusers")
    assert first.mismatches
    seed_tree(tmp_path / "src", 'device_map={"": device}')  # edit the callers
    assert run_scan(root, "diffusers").mismatches == []


def test_cached_scan_equals_a_fresh_one_and_an_edit_is_a_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The content-keyed cache hands back exactly what a scan computes, and never a stale
    answer: editing one caller changes the key and so the result."""
    from harness.drift.scan_cache import cached_scan

    monkeypatch.setenv("ADAPTER_COMPAT_CACHE", str(tmp_path / "cache"))
    root = seed_tree(tmp_path / "src", "device=device")
    first, hit = cached_scan("diffusers", str(root))
    assert not hit and first.mismatches
    again, hit = cached_scan("diffusers", str(root))
    fresh = run_scan(root, "diffusers")
    assert hit
    assert again.to_dict() | {"seconds": 0} == first.to_dict() | {"seconds": 0}
    assert [m.to_dict() for m in again.mismatches] == [m.to_dict() for m in fresh.mismatches]
    seed_tree(tmp_path / "src", 'device_map={"": device}')  # edit the callers
    edited, hit = cached_scan("diffusers", str(root))
    assert not hit and edited.mismatches == []


# -- 3. resolver features without false alarms -----------------------------------------------
FEATURES = {
    "pkg/__init__.py": """
        __version__ = "2.0"
        from .impl import reexported
    """,
    "pkg/impl.py": """
        import functools
        from dataclasses import dataclass

        import somewhere_else


        def reexported(a, b):
            return a


        def takes_kwargs(a, **kwargs):
            return kwargs


        def keeps(fn):
            @functools.wraps(fn)
            def inner(*args, **kwargs):
                return fn(*args, **kwargs)

            return inner


        @keeps
        def wrapped(x, y=1):
            return x


        @somewhere_else.mystery
        def unknown_decorated(x):
            return x


        def two(a, b):
            return a


        @dataclass
        class Point:
            x: int
            y: int = 0


        class Base:
            def __init__(self, size):
                self.size = size

            def method(self, a, b=None):
                return a

            @classmethod
            def build(cls, x):
                return cls(x)


        class Child(Base):
            def __init__(self, size, extra=None):
                super().__init__(size)

            def run(self):
                self.method(1, b=2)
                return self.build(3)

            def run_wrong(self):
                return self.method(1, c=2)
    """,
    "pkg/user.py": """
        from pkg import reexported
        from . import impl
        from .impl import Child, Point, takes_kwargs, two, unknown_decorated, wrapped


        def use(args, kw, fn):
            reexported(1, 2)
            takes_kwargs(1, anything=2, other=3)
            wrapped(1, y=2)
            unknown_decorated(1, bogus=2)
            Point(1, y=2)
            Child(4, extra=5)
            impl.two(*args, **kw)
            fn(1, 2, 3)
            return two(*args, b=1)


        def wrong(args):
            wrapped(1, z=3)
            two(*args, c=1)
            impl.reexported(1, 2, 3)
    """,
}


def test_resolver_features_no_false_alarms_and_real_ones_flagged(tmp_path: Path) -> None:
    root = write_tree(tmp_path, FEATURES)
    result = run_scan(root, "pkg")
    found = {(m.file, m.line): m.problems for m in result.mismatches}
    impl, user = "pkg/impl.py", "pkg/user.py"
    assert found == {
        (impl, line_of(root, impl, "self.method(1, c=2)")): ["unexpected keyword argument 'c'"],
        (user, line_of(root, user, "wrapped(1, z=3)")): ["unexpected keyword argument 'z'"],
        (user, line_of(root, user, "two(*args, c=1)")): ["unexpected keyword argument 'c'"],
        (user, line_of(root, user, "impl.reexported(1, 2, 3)")): [
            "takes 2 positional argument(s) but 3 given"
        ],
    }
    # the unknown decorator is skipped and counted, never guessed
    assert result.skipped.get("decorator not known to keep the signature") == 1
    assert result.dynamic >= 1  # fn(1, 2, 3): a parameter, not resolvable


def test_guards_version_and_typeerror_are_not_counted(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "peft/__init__.py": """
                __version__ = "0.12.0"
                from .mapping import inject_adapter_in_model
            """,
            "peft/mapping.py": """
                def inject_adapter_in_model(peft_config, model, adapter_name="default"):
                    return model
            """,
            "host/__init__.py": '__version__ = "1.0"\n',
            "host/utils.py": """
                def is_peft_version(operation, version):
                    return True
            """,
            "host/loader.py": """
                from peft import inject_adapter_in_model

                from .utils import is_peft_version


                def load(config, model):
                    if is_peft_version(">=", "0.13.0"):
                        inject_adapter_in_model(config, model, adapter_name="a", low_cpu_mem_usage=True)
                    try:
                        inject_adapter_in_model(config, model, newer_kw=1)
                    except TypeError:
                        inject_adapter_in_model(config, model)
                    inject_adapter_in_model(config, model, adapter_name="b", hotswap=True)
            """,
        },
    )
    result = run_scan(root, "host", companions=("peft",))
    assert result.companions["peft"] == "0.12.0"  # torch may be listed too, when installed
    assert [(m.callee_package, m.line, m.problems) for m in result.mismatches] == [
        (
            "peft",
            line_of(root, "host/loader.py", "hotswap=True"),
            ["unexpected keyword argument 'hotswap'"],
        )
    ]
    guards = sorted(m.guard for m in result.guarded)
    assert guards == [
        "dead for installed versions: is_peft_version('>=', '0.13.0')",
        "inside try/except TypeError",
    ]
    assert result.mismatches_for("host") == []


def test_kwargs_editing_wrapper_accepts_the_keywords_it_handles(tmp_path: Path) -> None:
    """huggingface_hub 1.x: ``validate_hf_hub_args`` strips legacy ``proxies=`` before the
    call, so ``hf_hub_download(..., proxies=...)`` is not a TypeError; a bogus keyword is."""
    root = write_tree(
        tmp_path,
        {
            "hub/__init__.py": '__version__ = "1.0"\nfrom .download import hf_hub_download\n',
            "hub/validators.py": """
                from functools import wraps


                def validate_hf_hub_args(fn):
                    @wraps(fn)
                    def _inner_fn(*args, **kwargs):
                        kwargs = smoothly_deprecate_legacy_arguments(fn_name=fn.__name__, kwargs=kwargs)
                        return fn(*args, **kwargs)

                    return _inner_fn


                def smoothly_deprecate_legacy_arguments(fn_name, kwargs):
                    new_kwargs = kwargs.copy()
                    new_kwargs.pop("proxies", None)
                    return new_kwargs
            """,
            "hub/download.py": """
                from .validators import validate_hf_hub_args


                @validate_hf_hub_args
                def hf_hub_download(repo_id, filename, *, revision=None):
                    return filename
            """,
            "app/__init__.py": '__version__ = "1.0"\n',
            "app/use.py": """
                from hub import hf_hub_download


                def get(repo):
                    hf_hub_download(repo, "a.json", proxies=None, revision="main")
                    hf_hub_download(repo, "a.json", bogus=1)
            """,
        },
    )
    result = run_scan(root, "app", companions=("hub",))
    assert [(m.line, m.problems) for m in result.mismatches] == [
        (line_of(root, "app/use.py", "bogus=1"), ["unexpected keyword argument 'bogus'"])
    ]


# -- 4. allowlist ----------------------------------------------------------------------------
def _entry(params: list[dict], module: str = "m") -> dict:
    return {
        "kind": "function",
        "module": module,
        "file": "m.py",
        "line": 1,
        "params": params,
        "importable_from": [module],
    }


OLD_PARAMS = [
    {"name": "model", "kind": "POSITIONAL_OR_KEYWORD"},
    {"name": "state_dict", "kind": "POSITIONAL_OR_KEYWORD"},
    {"name": "device", "kind": "POSITIONAL_OR_KEYWORD", "default": "None"},
    {"name": "dtype", "kind": "POSITIONAL_OR_KEYWORD", "default": "None"},
]
NEW_PARAMS = [
    {"name": "model", "kind": "POSITIONAL_OR_KEYWORD"},
    {"name": "state_dict", "kind": "POSITIONAL_OR_KEYWORD"},
    {"name": "dtype", "kind": "POSITIONAL_OR_KEYWORD", "default": "None"},
    {"name": "device_map", "kind": "POSITIONAL_OR_KEYWORD", "default": "None"},
]


def _snapshots() -> tuple[dict, dict]:
    old = {
        "version": "0.32.2",
        "classes": {},
        "api": {"load_model_dict_into_meta": _entry(OLD_PARAMS)},
    }
    new = {
        "version": "0.33.1",
        "classes": {},
        "api": {"load_model_dict_into_meta": _entry(NEW_PARAMS)},
    }
    return old, new


def test_allowlist_entry_hides_and_expired_entry_stops_hiding() -> None:
    old, new = _snapshots()
    today = dt.date(2026, 1, 1)

    def entry(expires: str) -> AllowEntry:
        return AllowEntry(
            api="load_model_dict_into_*",
            change="param-renamed",
            param="device",
            reason="intended",
            expires=expires,
        )

    plain = apply_allowlist(diff_snapshots(old, new), [], today)
    renamed = [c for c in plain if c.change == "param-renamed"]
    assert renamed and renamed[0].unacknowledged_break

    hidden = apply_allowlist(diff_snapshots(old, new), [entry("2026-06-30")], today)
    renamed = next(c for c in hidden if c.change == "param-renamed")
    assert renamed.allowlist == {
        "status": "allowlisted",
        "reason": "intended",
        "expires": "2026-06-30",
    }
    assert not renamed.unacknowledged_break
    assert "allowlisted" in renamed.headline()

    expired = apply_allowlist(diff_snapshots(old, new), [entry("2025-12-31")], today)
    renamed = next(c for c in expired if c.change == "param-renamed")
    assert renamed.allowlist["status"] == "expired allowlist entry"
    assert renamed.unacknowledged_break
    assert "expired allowlist entry" in renamed.headline()


def test_allowlist_file_validation(tmp_path: Path) -> None:
    path = tmp_path / "allowlist.json"
    path.write_text(json.dumps({"entries": [{"api": "x", "change": "api-removed", "reason": "r"}]}))
    with pytest.raises(UsageError, match="lacks expires"):
        load_allowlist(path)
    path.write_text(
        json.dumps({"entries": [{"api": "x", "change": "*", "reason": "r", "expires": "soon"}]})
    )
    with pytest.raises(UsageError, match="YYYY-MM-DD"):
        load_allowlist(path)
    assert load_allowlist(tmp_path / "missing.json") == []
    committed = load_allowlist(ROOT / "fixtures" / "api" / "allowlist.json")
    assert committed and all(e.reason and e.expires for e in committed)


# -- 5. classification -----------------------------------------------------------------------
def _kinds(old: list[dict], new: list[dict]) -> dict[tuple[str, str | None], bool]:
    return {
        (c.change, c.param): c.breaking for c in diff_params("f", {"params": old}, {"params": new})
    }


def test_diff_classifies_changes() -> None:
    a = {"name": "a", "kind": "POSITIONAL_OR_KEYWORD"}
    b = {"name": "b", "kind": "POSITIONAL_OR_KEYWORD", "default": "1"}
    # removed parameter: breaking
    assert _kinds([a, b], [a]) == {("param-removed", "b"): True}
    # new optional parameter: not breaking
    assert _kinds([a], [a, b]) == {("param-added", "b"): False}
    # new required parameter: breaking
    assert _kinds([a], [a, {"name": "c", "kind": "KEYWORD_ONLY"}]) == {("param-added", "c"): True}
    # changed default: reported, not breaking
    assert _kinds([a, b], [a, dict(b, default="2")]) == {("default-changed", "b"): False}
    # renamed device -> device_map: breaking (plus the positional shift it causes)
    kinds = _kinds(OLD_PARAMS, NEW_PARAMS)
    assert kinds[("param-renamed", "device")] is True
    assert kinds[("param-order-changed", None)] is True
    # removal absorbed by **kwargs (fuse_unet= -> components= in 0.30): reported, not breaking
    kw = {"name": "kwargs", "kind": "VAR_KEYWORD"}
    assert _kinds([a, b, kw], [a, kw]) == {("param-removed", "b"): False}
    # keyword-only -> positional-or-keyword: fine; the reverse breaks positional callers
    assert _kinds([dict(b, kind="KEYWORD_ONLY")], [b]) == {("param-kind-changed", "b"): False}
    assert _kinds([b], [dict(b, kind="KEYWORD_ONLY")]) == {("param-kind-changed", "b"): True}


def test_diff_snapshots_api_and_module_moves() -> None:
    old = {
        "version": "1",
        "classes": {},
        "api": {"f": _entry([]), "g": _entry([]), "h": _entry([], "old")},
    }
    moved = dict(_entry([], "new"), importable_from=["new", "old"])
    new = {"version": "2", "classes": {}, "api": {"f": _entry([]), "h": moved, "k": _entry([])}}
    changes = {(c.api, c.change): c.breaking for c in diff_snapshots(old, new)}
    assert changes == {("g", "api-removed"): True, ("h", "moved"): False, ("k", "api-added"): False}
    new["api"]["h"] = _entry([], "new")  # old import path gone
    assert {(c.api, c.change): c.breaking for c in diff_snapshots(old, new)}[("h", "moved")] is True


# -- snapshots -------------------------------------------------------------------------------
TARGETS = {
    "class_modules": ["diffusers.loaders.*"],
    "classes": ["FluxTransformer2DLoadersMixin", "Missing"],
    "methods": ["_convert_ip_adapter_*"],
    "functions": [
        {"module": "diffusers.models.model_loading_utils", "names": ["load_model_dict_into_meta"]}
    ],
    "public_modules": ["diffusers.models.modeling_utils", "diffusers.models.model_loading_utils"],
}


def test_snapshot_is_static_and_round_trips(tmp_path: Path) -> None:
    root = seed_tree(tmp_path / "src", 'device_map={"": device}')
    before = set(sys.modules)
    snap = take_snapshot("diffusers", root, TARGETS)
    imported = {m.split(".")[0] for m in set(sys.modules) - before}
    assert snap["version"] == "0.33.0.dev0"
    assert sorted(snap["api"]) == [
        "FluxTransformer2DLoadersMixin._convert_ip_adapter_image_proj_to_diffusers",
        "load_model_dict_into_meta",
    ]
    fn = snap["api"]["load_model_dict_into_meta"]
    assert [p["name"] for p in fn["params"]][6] == "device_map"
    assert fn["params"][6] == {
        "name": "device_map",
        "kind": "POSITIONAL_OR_KEYWORD",
        "default": "None",
    }
    assert fn["importable_from"] == [
        "diffusers.models.modeling_utils",
        "diffusers.models.model_loading_utils",
    ]
    assert "diffusers" not in imported  # static: the fake tree is parsed, never imported
    out = tmp_path / "api"
    path = write_snapshot(snap, out)
    assert path.name == "0.33.0.dev0.json"
    assert json.loads(dumps(snap)) == snap == load_snapshot("0.33.0.dev0", out)
    assert committed_versions(out) == ["0.33.0.dev0"]


def test_committed_snapshots_cover_the_matrix_and_timeline_has_the_seed_change() -> None:
    cells = json.loads((ROOT / "fixtures" / "matrix" / "cells.json").read_text())["cells"]
    assert set(committed_versions()) >= {c["diffusers"] for c in cells}
    timeline = build_timeline(today=dt.date(2026, 1, 1))
    step = next(s for s in timeline if s["to"] == "0.33.1")
    renamed = [
        c
        for c in step["changes"]
        if c["api"] == "load_model_dict_into_meta" and c["change"] == "param-renamed"
    ]
    assert renamed and renamed[0]["old"] == "device" and renamed[0]["new"] == "device_map"
    assert renamed[0]["allowlist"]["status"] == "allowlisted"
    rows = timeline_data(today=dt.date(2026, 1, 1))["events"]
    assert {"from", "to", "api", "change", "breaking", "allowlist", "where"} <= set(rows[0])


# -- the suite's checks turn red on the planted bug, green on the fix ------------------------
def _suite():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "drift_suite", ROOT / "suites" / "drift" / "test_drift.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _verdict(check, *args) -> tuple[Verdict, Outcome, CheckContext]:  # type: ignore[no-untyped-def]
    ctx = CheckContext()
    try:
        check(ctx, *args)
        exc = None
    except Exception as caught:  # noqa: BLE001 - classified below, as the plugin does
        exc = caught
    observed, _ = outcome_of(exc)
    return verdict_for(ctx.expected, observed), observed, ctx


def test_suite_callsite_checks_turn_red_on_the_planted_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = _suite()
    bad = seed_tree(tmp_path / "bad", "device=device")
    good = seed_tree(tmp_path / "good", 'device_map={"": device}')
    monkeypatch.setenv(suite.PATH_ENV, str(bad))
    for check in (suite.test_callsites_internal, suite.test_callsites_adapter_loaders):
        verdict, observed, ctx = _verdict(check, "diffusers")
        assert (verdict, observed) == (Verdict.REGRESSION, Outcome.CRASH)
        assert ctx.details["mismatch_count"] == 3
        assert ctx.details["mismatches"][0]["problems"] == ["unexpected keyword argument 'device'"]
    monkeypatch.setenv(suite.PATH_ENV, str(good))
    for check in (suite.test_callsites_internal, suite.test_callsites_adapter_loaders):
        assert _verdict(check, "diffusers")[:2] == (Verdict.PASS, Outcome.OK)


def test_suite_contract_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite()
    root = seed_tree(tmp_path / "src", 'device_map={"": device}')
    api = tmp_path / "api"
    monkeypatch.setenv(suite.PATH_ENV, str(root))
    monkeypatch.setenv(suite.API_DIR_ENV, str(api))
    api.mkdir()
    # no committed contract for this version: not run (grey), never a regression
    assert _verdict(suite.test_contract_matches_committed)[:2] == (Verdict.SKIPPED, Outcome.NOT_RUN)
    live = take_snapshot("diffusers", root)
    write_snapshot(live, api)
    assert _verdict(suite.test_contract_matches_committed)[:2] == (Verdict.PASS, Outcome.OK)
    # a committed contract that still has `device`: the live one renamed it -> breaking
    older = json.loads(json.dumps(live))
    older["version"] = "0.32.2"
    params = older["api"]["load_model_dict_into_meta"]["params"]
    params[6] = {"name": "device", "kind": "POSITIONAL_OR_KEYWORD", "default": "None"}
    write_snapshot(older, api)
    verdict, observed, ctx = _verdict(suite.test_contract_no_unacknowledged_breaks)
    assert (verdict, observed) == (Verdict.REGRESSION, Outcome.CRASH)
    assert ctx.details["unacknowledged"][0]["change"] == "param-renamed"
    entry = {
        "api": "load_model_dict_into_meta",
        "change": "param-renamed",
        "param": "device",
        "reason": "intended refactor",
    }
    (api / "allowlist.json").write_text(
        json.dumps({"entries": [dict(entry, expires="2999-01-01")]})
    )
    assert _verdict(suite.test_contract_no_unacknowledged_breaks)[:2] == (Verdict.PASS, Outcome.OK)
    (api / "allowlist.json").write_text(
        json.dumps({"entries": [dict(entry, expires="2000-01-01")]})
    )
    verdict, observed, ctx = _verdict(suite.test_contract_no_unacknowledged_breaks)
    assert verdict is Verdict.REGRESSION and ctx.details["expired_allowlist"]
    # the committed file for this very version differs from the live package -> finding
    doctored = json.loads(json.dumps(live))
    doctored["api"]["load_model_dict_into_meta"]["params"][6] = params[6]
    write_snapshot(doctored, api)
    assert _verdict(suite.test_contract_matches_committed)[:2] == (
        Verdict.REGRESSION,
        Outcome.CRASH,
    )


def test_suite_cross_package_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite()
    files = dict(SEED_LAYOUT)
    files = {k: v.replace("DEVICE_ARG", 'device_map={"": device}') for k, v in files.items()}
    files["peft/__init__.py"] = (
        '__version__ = "0.14.0"\n\ndef inject_adapter_in_model(peft_config, model, adapter_name="default"):\n    return model\n'
    )
    files["diffusers/loaders/peft.py"] = (
        "from peft import inject_adapter_in_model\n\n\ndef load(config, model):\n"
        "    inject_adapter_in_model(config, model, adapter_name='x', low_cpu_mem_usage=True)\n"
    )
    root = write_tree(tmp_path, files)
    monkeypatch.setenv(suite.PATH_ENV, str(root))
    verdict, observed, ctx = _verdict(suite.test_callsites_cross_package, "peft")
    assert (verdict, observed) == (Verdict.REGRESSION, Outcome.CRASH)
    assert ctx.params["companion_version"] == "0.14.0"
    assert _verdict(suite.test_callsites_internal, "diffusers")[:2] == (Verdict.PASS, Outcome.OK)


# -- CLI -------------------------------------------------------------------------------------
def _cli(argv: list[str]) -> int:
    from harness.commands import drift as cmd

    parser = argparse.ArgumentParser(prog="adapter-compat")
    cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["drift", *argv])
    return int(args.func(args) or 0)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = seed_tree(tmp_path / "bad", "device=device")
    good = seed_tree(tmp_path / "good", 'device_map={"": device}')
    assert _cli(["scan", "--path", str(bad), "--no-companions"]) == 1
    out = capsys.readouterr().out
    assert (
        "diffusers/loaders/transformer_flux.py:" in out
        and "unexpected keyword argument 'device'" in out
    )
    assert _cli(["scan", "--path", str(good), "--json", "--no-companions"]) == 0
    assert json.loads(capsys.readouterr().out)["mismatches"] == []
    with pytest.raises(UsageError, match="not installed"):
        _cli(["scan", "--package", "no_such_package_xyz"])
    with pytest.raises(UsageError, match="does not exist"):
        _cli(["scan", "--path", str(tmp_path / "missing")])
    with pytest.raises(UsageError, match="no package 'diffusers'"):
        _cli(["scan", "--path", str(tmp_path)])
    out_dir = tmp_path / "api"
    assert _cli(["snapshot", "--path", str(good), "--out", str(out_dir)]) == 0
    assert (out_dir / "0.33.0.dev0.json").is_file()
    assert _cli(["snapshot", "--path", str(good), "--out", str(out_dir), "--check"]) == 0
    capsys.readouterr()
    assert _cli(["diff", "--from", "0.32.2", "--to", "0.33.1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["to"] == "0.33.1"
    with pytest.raises(UsageError, match="no snapshot for 9.9.9"):
        _cli(["diff", "--from", "9.9.9", "--to", "0.33.1"])
    assert _cli(["diff", "--to", "0.33.1"]) == 0  # the step into 0.33.1
    text = capsys.readouterr().out
    assert text.startswith("0.32.2 -> 0.33.1") and "'device' renamed to 'device_map'" in text
    assert _cli(["timeline"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(committed_versions()) - 1


def test_fetch_reads_companion_pins_from_the_cell_locks() -> None:
    from harness.drift.fetch import LOCKS, companion_pins

    lock = next(iter(sorted(LOCKS.glob("*.txt"))), None)
    if lock is None:
        pytest.skip("no lock files under fixtures/matrix/locks")
    pins = companion_pins(lock.stem)
    assert pins and set(pins) <= {
        "peft",
        "transformers",
        "huggingface_hub",
        "accelerate",
        "safetensors",
    }
    assert companion_pins("0.0.0-no-such-cell") == {}


def test_only_public_api_breaks_are_findings() -> None:
    """A removed parameter of a private helper is listed, not red; the same on a public
    method is an unacknowledged break."""
    from harness.drift.apidiff import Change

    private = Change(
        "FluxLoraLoaderMixin._maybe_expand_lora_state_dict", "param-removed", True, "x"
    )
    helper = Change("_convert_kohya_flux_lora_to_diffusers", "param-removed", True, "x")
    public = Change("FluxLoraLoaderMixin.load_lora_weights", "param-removed", True, "x")
    assert not private.public and not private.unacknowledged_break
    assert not helper.unacknowledged_break
    assert public.public and public.unacknowledged_break
