"""The pytest plugin: one record per check, verdicts, pytest outcome mirroring, timeouts."""

import json

# Imported up front on purpose: pytester's in-process runs restore sys.modules afterwards,
# and a torch that is removed and re-imported in one process crashes.
import diffusers  # noqa: F401
import torch  # noqa: F401

import harness.cell.plugin  # noqa: F401
from harness.protocol.records import read_records

DEMO = """
import time
import pytest
from harness.protocol.outcomes import Outcome

def test_ok(compat):
    compat.param(format="kohya", arch="flux")

def test_wrong(compat):
    compat.finding(Outcome.WRONG_RESULT, "delta differs by 0.5")

def test_absent(compat):
    compat.require(False, "FluxPipeline does not exist in this version")

def test_our_bug(compat):
    {}["missing"]

def test_expected_clear_error(compat):
    compat.expect(Outcome.CLEAR_ERROR)
    with compat.library_call(names=["lora_unet_x.alpha"]):
        raise ValueError("cannot map lora_unet_x.alpha")

def test_assert_in_library(compat):
    with compat.library_call():
        assert False, "all or none of q/k/v"

def test_hang(compat):
    time.sleep(30)

def test_needs_gpu(compat):
    pytest.skip("needs CUDA")

@pytest.mark.parametrize("rank", [4, 8])
def test_param(compat, rank):
    pass
"""

CONFTEST = """
import pytest
pytest_plugins = ["harness.cell.plugin"]

@pytest.fixture(autouse=True)
def _check(compat):
    return compat
"""


def run_demo(pytester, *extra):
    pytester.makeconftest(CONFTEST)
    suite = pytester.mkdir("suites") / "demo"
    suite.mkdir()
    (suite / "test_demo.py").write_text(DEMO)
    results = pytester.path / "results.jsonl"
    outcome = pytester.runpytest(
        "suites", "-p", "no:cacheprovider", "--compat-results", str(results),
        "--compat-cell", "cell-test", "--compat-check-timeout", "1", *extra,
    )  # fmt: skip
    records = {r["check_id"]: r for r in read_records([results]) if r["kind"] == "check"}
    sessions = [r for r in read_records([results]) if r["kind"] == "session"]
    return outcome, records, sessions


def test_every_check_writes_one_record_with_its_verdict(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # the inner run is a main process
    outcome, records, sessions = run_demo(pytester)
    verdicts = {k.split("::")[1]: (r["observed"], r["verdict"]) for k, r in records.items()}
    assert verdicts == {
        "ok": ("OK", "pass"),
        "wrong": ("WRONG_RESULT", "regression"),
        "absent": ("UNSUPPORTED", "unsupported"),
        "our_bug": ("HARNESS_ERROR", "harness-error"),
        "expected_clear_error": ("CLEAR_ERROR", "pass"),
        "assert_in_library": ("CRASH", "regression"),
        "hang": ("TIMEOUT", "regression"),
        "needs_gpu": ("NOT_RUN", "skipped"),
        "param[4]": ("OK", "pass"),
        "param[8]": ("OK", "pass"),
    }
    ok = records["demo/demo::ok"]
    assert ok["params"] == {"format": "kohya", "arch": "flux"}
    assert ok["cell"] == "cell-test" and ok["suite"] == "demo"
    assert ok["versions"]["diffusers"] not in ("", "absent") and ok["versions"]["torch"] != "absent"
    assert ok["device"] in ("cpu", "cuda") and ok["dtype"] == "float32"
    assert records["demo/demo::param[8]"]["params"] == {"rank": 8}
    crash = records["demo/demo::assert_in_library"]
    assert crash["exc_type"] == "AssertionError" and "all or none" in crash["message"]
    assert "Traceback" in crash["traceback"]
    assert sessions and sessions[0]["import"] >= 0
    # pytest's own outcome mirrors the verdict
    outcome.assert_outcomes(passed=4, failed=4, skipped=2)


def test_records_are_plain_json_lines(pytester):
    run_demo(pytester, "-k", "ok")
    lines = (pytester.path / "results.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)


def test_without_results_option_nothing_is_written(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x="def test_a(compat):\n    pass\n")
    outcome = pytester.runpytest("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=1)
    assert not list(pytester.path.glob("*.jsonl"))
