"""Synthetic report runs shared by the report, filing, screenshot and bisect self-tests:
four cells, a steady regression, one that appears only when asked, a green check and an
unsupported one (``write_run``); rows sharing one root cause, a fixed one and drift rows
(``kohya_run``). A helper module rather than a test module, so test files never import
each other.
"""

from __future__ import annotations

from pathlib import Path

from harness.protocol.records import CellRecord, CheckRecord, write_record

CELLS = ("0.30.3", "0.32.2", "0.33.1", "0.42.1")
CHANGING = "lora/formats::load[flux-comfy]"
STEADY_BAD = "lora/formats::load[flux-xlabs]"
GREEN = "ip_adapter/load::load[sd15-base]"
ABSENT = "ip_adapter/load::load[sd3-base]"


def record(cell: str, check_id: str, verdict: str = "pass", **kw: object) -> CheckRecord:
    observed = {
        "pass": "OK",
        "regression": "CRASH",
        "unsupported": "UNSUPPORTED",
        "harness-error": "HARNESS_ERROR",
    }[verdict]
    module, name = check_id.split("::")
    suite, mod = module.split("/")
    fields = dict(
        check_id=check_id,
        suite=suite,
        expected=["OK"],
        observed=kw.pop("observed", observed),
        verdict=verdict,
        cell=f"cell-{cell}",
        nodeid=f"suites/{suite}/test_{mod}.py::test_{name}",
        params={"arch": name.split("[")[1].split("-")[0], "format": name.split("-")[1][:-1]},
        versions={"diffusers": cell, "torch": "2.13.0+cpu", "peft": "0.13.2", "python": "3.11.7"},
        duration_s=0.5,
    )
    fields.update(kw)
    return CheckRecord(**fields)  # type: ignore[arg-type]


def write_run(folder: Path, changed: bool, message: str = "addr 0x7f00") -> Path:
    """Four cells; STEADY_BAD breaks at 0.33.1; with ``changed`` CHANGING breaks at 0.42.1."""
    folder.mkdir(parents=True, exist_ok=True)
    for cell in CELLS:
        path = folder / f"cell-{cell}.jsonl"
        path.unlink(missing_ok=True)
        write_record(
            path, CellRecord(cell=f"cell-{cell}", status="ok", versions={"diffusers": cell})
        )
        late = cell in ("0.33.1", "0.42.1")
        write_record(
            path,
            record(
                cell,
                STEADY_BAD,
                "regression" if late else "pass",
                exc_type="KeyError" if late else None,
                message=f"'double_blocks.0.qkv' at {message}" if late else "",
                traceback="Traceback (most recent call last):\nKeyError: 'double_blocks'"
                if late
                else "",
            ),
        )
        broke = changed and cell == "0.42.1"
        write_record(
            path,
            record(
                cell,
                CHANGING,
                "regression" if broke else "pass",
                observed="WRONG_RESULT" if broke else "OK",
                message="linear1 delta off by 0.03" if broke else "",
            ),
        )
        write_record(path, record(cell, GREEN))
        write_record(path, record(cell, ABSENT, "unsupported", message="no SD3 IP-Adapter"))
    return folder


def library_traceback(func: str, line: int = 12) -> str:
    """A traceback through pytest and pluggy into a diffusers function."""
    return (
        "Traceback (most recent call last):\n"
        '  File "/v/lib/python3.11/site-packages/_pytest/python.py", line 187, in pytest_pyfunc_call\n'
        "    result = testfunction(**testargs)\n"
        "             ^^^^^^^^^^^^^^^^^^^^^^^^\n"
        '  File "/v/lib/python3.11/site-packages/pluggy/_callers.py", line 103, in _multicall\n'
        "    res = hook_impl.function(*args)\n"
        '  File "/repo/suites/lora/test_formats.py", line 138, in _load\n'
        "    pipe.load_lora_weights(sd)\n"
        f'  File "/v/lib/python3.11/site-packages/diffusers/loaders/conv.py", line {line}, in {func}\n'
        "    sd.pop(key)\n"
        "KeyError: 'double_blocks.0'\n"
    )


def kohya_run(folder: Path) -> Path:
    """Four cells: three kohya rows break at 0.33.1 with one KeyError (different keys and
    line numbers), one breaks there with another error and is fixed in 0.42.1, plus a drift
    row about code outside adapter loading."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, cell in enumerate(CELLS):
        path = folder / f"cell-{cell}.jsonl"
        write_record(
            path, CellRecord(cell=f"cell-{cell}", status="ok", versions={"diffusers": cell})
        )
        late = cell in ("0.33.1", "0.42.1")
        for arch in ("flux", "sd15", "sdxl"):
            check_id = f"lora/formats::load[{arch}-kohya]"
            write_record(
                path,
                record(
                    cell,
                    check_id,
                    "regression" if late else "pass",
                    exc_type="KeyError" if late else None,
                    message=f"'{arch}.blocks.{n}'" if late else "",
                    traceback=library_traceback("_convert_kohya", 10 + n) if late else "",
                ),
            )
        fixed = cell == "0.33.1"
        write_record(
            path,
            record(
                cell,
                "lora/formats::load[flux-comfy]",
                "regression" if fixed else "pass",
                observed="DROPPED_KEYS" if fixed else "OK",
                exc_type="Finding" if fixed else None,
                message="3 key(s) had no effect" if fixed else "",
            ),
        )
        write_record(
            path,
            record(
                cell,
                "drift/drift::callsites_internal[diffusers-x]",
                "regression",
                observed="CRASH",
                exc_type="Finding",
                message="2 internal call site(s) would raise TypeError",
            ),
        )
        write_record(path, record(cell, "drift/drift::callsites_adapter_loaders[diffusers-x]"))
        write_record(path, record(cell, "ip_adapter/load::load[sd15-base]"))
    return folder
