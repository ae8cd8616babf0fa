"""The robustness suite's checks can fail: planted loader bugs flip their verdicts.

Each plant is a realistic loader bug, monkeypatched into the installed diffusers /
safetensors, and the suite runs in-process on a few of its checks:

* a "lenient" reader that swallows a truncated-file error and returns what it could read
  -> silent partial load (DROPPED_KEYS) / nothing loaded (SILENT_NOOP);
* a reader that asserts on a bad header -> CRASH;
* a ``.bin`` reader calling ``torch.load(weights_only=False)`` -> marker file created;
* one that leaves ``weights_only`` to torch's default -> passes as is, but the variant run
  with the default off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) creates the marker;
* a reader that allocates what a lying header declares, and one that aborts the process
  -> the forked, memory-limited child records CRASH while the run goes on.

Unpatched, the same checks pass. Plus: the harness's reference reader agrees with the
real safetensors on every table case, and the pickle payload really runs when unpickled
without restrictions (so "no marker" means something).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Imported up front: a torch removed from sys.modules and re-imported in one process crashes.
import diffusers  # noqa: F401
import pytest
import safetensors.torch
import torch

import harness.cell.plugin  # noqa: F401
from harness.drivers.state_dict import PICKLE_FILES, PICKLE_PATHS
from harness.inputs import pickles as pp
from harness.inputs.malformed.files import (
    FILE_CASE_IDS,
    FILE_CASES,
    encode,
    flip_bit,
    header_span,
    parse,
)
from harness.inputs.malformed.lora import (
    LORA_CASE_IDS,
    LORA_CASES,
    LORA_FILE_CASES,
    LinearTarget,
    build_lora,
    lora_case,
    lora_expectation,
)
from harness.oracles.safetensors import (
    MAX_HEADER_BYTES,
    RawTensor,
    malformed_reason,
    reference_tensors,
)
from harness.protocol.records import read_records

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "robustness"

FILES = "test_safetensors_files.py::test_damaged_file"
TRUNCATED = f"{FILES}[lora-truncated-mid-data]"
TRUNCATED_HEADER = f"{FILES}[lora-truncated-mid-header]"
BAD_JSON = f"{FILES}[lora-header-invalid-json]"
CONTROL = f"{FILES}[lora-control]"
TERABYTE = f"{FILES}[lora-header-length-terabyte]"
PICKLE = "test_malicious_pickle.py::test_pickle[lora-bin-zip]"
PICKLE_BENIGN = "test_malicious_pickle.py::test_pickle[lora-bin-benign]"
PICKLE_DEFAULT_OFF = "test_malicious_pickle.py::test_pickle[lora-bin-zip-torch-default-off]"
GENERATED_TRUNCATION = "test_generated_files.py::test_truncation[lora]"
NAN_DICT = "test_state_dicts.py::test_lora_dict[nan]"


def run_checks(tmp_path: Path, *node_ids: str) -> dict[str, dict]:
    """Run some robustness checks in this process; records keyed by the test's node id."""
    results = tmp_path / f"results-{len(list(tmp_path.iterdir()))}.jsonl"
    args = [str(SUITE / n) for n in node_ids]
    pytest.main(
        [*args, "-p", "no:cacheprovider", "-q", "--tb=native", "--compat-results", str(results)]
    )
    records = read_records([results]) if results.exists() else []
    return {r["nodeid"].split("robustness/", 1)[1]: r for r in records if r["kind"] == "check"}


def _verdicts(records: dict[str, dict]) -> dict[str, tuple[str, str]]:
    return {k: (r["observed"], r["verdict"]) for k, r in records.items()}


# -- planted bugs ----------------------------------------------------------------------------------
REAL_LOAD_FILE = safetensors.torch.load_file


def salvage(blob: bytes) -> dict[str, torch.Tensor]:
    """What a lenient reader gets out of a damaged file: every tensor whose bytes are there."""
    try:
        parsed = parse(blob)
    except Exception:  # noqa: BLE001 - the header itself is gone: nothing
        return {}
    out = {}
    for name in parsed.entries():
        info = parsed.header[name]
        begin, end = info["data_offsets"]
        if end <= len(parsed.data):
            raw = RawTensor(info["dtype"], tuple(info["shape"]), parsed.data[begin:end])
            out[name] = raw.to_torch()
    # keep whole modules only (both LoRA matrices present), as a careful salvager would
    stems = {k.rsplit(".", 2)[0] for k in out}
    whole = {s for s in stems if all(f"{s}.{m}.weight" in out for m in ("lora_A", "lora_B"))}
    return {k: v for k, v in out.items() if k.rsplit(".", 2)[0] in whole}


def lenient_load_file(filename, device="cpu"):
    try:
        return REAL_LOAD_FILE(filename, device=device)
    except Exception:  # noqa: BLE001 - the planted bug: damage swallowed
        return salvage(Path(filename).read_bytes())


def asserting_load_file(filename, device="cpu"):
    try:
        return REAL_LOAD_FILE(filename, device=device)
    except Exception as exc:  # noqa: BLE001 - the planted bug: an assert as validation
        raise AssertionError(f"bad header: {exc}") from None


def vaguely_refusing_load_file(filename, device="cpu"):
    """Refuses every damaged file with a well-typed ValueError whose words sound clear but
    name nothing of the file: not its name, not a key, not what is wrong with the bytes."""
    try:
        return REAL_LOAD_FILE(filename, device=device)
    except Exception:  # noqa: BLE001 - the planted bug: the reason is thrown away
        raise ValueError("Invalid checkpoint: unable to load (invalid shape or dtype)") from None


def unsafe_load_state_dict(checkpoint_file, *args, **kwargs):
    return torch.load(checkpoint_file, map_location="cpu", weights_only=False)


def default_trusting_load_state_dict(checkpoint_file, *args, **kwargs):
    """What diffusers <= 0.27 did: no weights_only, safe only while torch defaults to it."""
    return torch.load(checkpoint_file, map_location="cpu")


def believing_load_file(filename, device="cpu"):
    """Allocates whatever the header length field declares before reading it."""
    declared = int.from_bytes(Path(filename).read_bytes()[:8], "little")
    torch.empty(declared, dtype=torch.uint8)
    return REAL_LOAD_FILE(filename, device=device)


def aborting_load_file(filename, device="cpu"):
    if int.from_bytes(Path(filename).read_bytes()[:8], "little") > MAX_HEADER_BYTES:
        os.abort()
    return REAL_LOAD_FILE(filename, device=device)


# -- the tests ------------------------------------------------------------------------------------
def test_unpatched_library_passes(tmp_path):
    records = run_checks(
        tmp_path, CONTROL, TRUNCATED, TRUNCATED_HEADER, BAD_JSON, TERABYTE, PICKLE,
        PICKLE_BENIGN, PICKLE_DEFAULT_OFF, NAN_DICT,
    )  # fmt: skip
    assert {k: v[1] for k, v in _verdicts(records).items()} == {
        CONTROL: "pass",
        TRUNCATED: "pass",
        TRUNCATED_HEADER: "pass",
        BAD_JSON: "pass",
        TERABYTE: "pass",
        PICKLE: "pass",
        PICKLE_BENIGN: "pass",
        PICKLE_DEFAULT_OFF: "pass",
        NAN_DICT: "pass",
    }
    assert records[PICKLE]["details"]["code_executed"] is False
    assert records[TERABYTE]["details"]["guarded"] is True


def test_silent_partial_load_is_a_regression(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors.torch, "load_file", lenient_load_file)
    records = run_checks(tmp_path, TRUNCATED, TRUNCATED_HEADER, CONTROL, GENERATED_TRUNCATION)
    verdicts = _verdicts(records)
    assert verdicts[TRUNCATED] == ("DROPPED_KEYS", "regression")
    assert verdicts[TRUNCATED_HEADER] == ("SILENT_NOOP", "regression")
    assert verdicts[CONTROL] == ("OK", "pass")
    assert verdicts[GENERATED_TRUNCATION][1] == "regression"


def test_assertion_on_bad_header_is_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors.torch, "load_file", asserting_load_file)
    verdicts = _verdicts(run_checks(tmp_path, BAD_JSON, CONTROL))
    assert verdicts == {BAD_JSON: ("CRASH", "regression"), CONTROL: ("OK", "pass")}


def test_a_refusal_that_names_nothing_of_the_file_is_unclear(tmp_path, monkeypatch):
    """Generic words ("invalid", "checkpoint", "shape", "dtype") do not make a refusal
    clear: it must name the file, a key of it, or what is wrong with its bytes."""
    monkeypatch.setattr(safetensors.torch, "load_file", vaguely_refusing_load_file)
    verdicts = _verdicts(run_checks(tmp_path, BAD_JSON, TRUNCATED_HEADER, CONTROL))
    assert verdicts == {
        BAD_JSON: ("UNCLEAR_ERROR", "regression"),
        TRUNCATED_HEADER: ("UNCLEAR_ERROR", "regression"),
        CONTROL: ("OK", "pass"),
    }


def test_unrestricted_unpickling_creates_the_marker(tmp_path, monkeypatch):
    import diffusers.loaders.lora_base as lora_base

    monkeypatch.setattr(lora_base, "load_state_dict", unsafe_load_state_dict)
    records = run_checks(tmp_path, PICKLE, PICKLE_BENIGN)
    assert _verdicts(records)[PICKLE] == ("WRONG_RESULT", "regression")
    assert records[PICKLE]["details"]["code_executed"] is True
    assert records[PICKLE]["details"]["security"] is True
    assert _verdicts(records)[PICKLE_BENIGN][1] == "pass"


def test_relying_on_torchs_default_shows_with_the_default_off(tmp_path, monkeypatch):
    import diffusers.loaders.lora_base as lora_base

    monkeypatch.setattr(lora_base, "load_state_dict", default_trusting_load_state_dict)
    records = run_checks(tmp_path, PICKLE, PICKLE_DEFAULT_OFF)
    assert _verdicts(records) == {
        PICKLE: ("CLEAR_ERROR", "pass"),  # torch's own default still refuses
        PICKLE_DEFAULT_OFF: ("WRONG_RESULT", "regression"),
    }
    calls = records[PICKLE_DEFAULT_OFF]["details"]["torch_load_calls"]
    assert calls and calls[0]["weights_only"] == "default"


def test_memory_guard_turns_huge_allocations_and_aborts_into_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors.torch, "load_file", believing_load_file)
    records = run_checks(tmp_path, TERABYTE, CONTROL)
    assert _verdicts(records) == {TERABYTE: ("CRASH", "regression"), CONTROL: ("OK", "pass")}
    assert "memory limit" in records[TERABYTE]["message"]
    monkeypatch.setattr(safetensors.torch, "load_file", aborting_load_file)
    records = run_checks(tmp_path, TERABYTE, CONTROL)
    assert _verdicts(records) == {TERABYTE: ("CRASH", "regression"), CONTROL: ("OK", "pass")}
    assert "SIGABRT" in records[TERABYTE]["message"]


# -- the references the checks rely on -----------------------------------------------------------
def _base_blobs() -> dict[str, bytes]:
    targets = [LinearTarget(f"block.{i}.to_q", 16, 16) for i in range(3)]
    return {
        "lora": encode(build_lora(targets), metadata={"format": "pt"}),
        "mixed-dtypes": encode(
            {"a": torch.ones(3, 2, dtype=torch.float16), "b": torch.arange(5), "c": torch.zeros(0)},
            metadata={"format": "pt"},
        ),
    }


def _real_reader_accepts(blob: bytes) -> bool:
    try:
        safetensors.torch.load(blob)
    except Exception:  # noqa: BLE001 - any refusal
        return False
    return True


@pytest.mark.parametrize("case", FILE_CASES, ids=FILE_CASE_IDS)
def test_reference_reader_agrees_with_table_and_safetensors(case):
    for name, original in _base_blobs().items():
        blob = case.build(original)
        valid = reference_tensors(blob) is not None
        assert valid == case.valid, (name, malformed_reason(blob))
        if not case.memory_risky or not valid:  # the real reader validates before allocating
            assert _real_reader_accepts(blob) == valid, name


def test_reference_reader_agrees_with_safetensors_on_every_single_bit_flip_of_the_header():
    original = _base_blobs()["mixed-dtypes"]
    end = header_span(original)[1]
    disagreements = []
    for bit in range(end * 8):
        blob = flip_bit(original, bit)
        if (reference_tensors(blob) is not None) != _real_reader_accepts(blob):
            disagreements.append((bit, malformed_reason(blob)))
    assert not disagreements


def test_reference_tensors_equal_what_safetensors_reads():
    blob = _base_blobs()["mixed-dtypes"]
    ours = reference_tensors(blob)
    theirs = safetensors.torch.load(blob)
    assert ours is not None and ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert value.dtype == ours[key].dtype and torch.equal(value, ours[key])


@pytest.mark.parametrize("variant", pp.VARIANTS)
def test_payload_runs_when_unpickled_without_restrictions(tmp_path, variant):
    marker = tmp_path / "marker"
    path = pp.write_malicious(tmp_path / "x.bin", {"w": torch.ones(2)}, marker, variant)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        torch.load(path, weights_only=True)
    assert not marker.exists()
    with contextlib.suppress(Exception):  # a raw pickle then fails torch's magic-number check
        torch.load(path, weights_only=False)  # the unsafe call the suite guards against
    assert marker.exists()


def test_lora_reference_predicts_known_cases():
    targets = [LinearTarget("m.to_q", 4, 3), LinearTarget("m.to_k", 4, 3)]
    good = lora_expectation(build_lora(targets), targets)
    assert good.fully_valid and not good.stray and len(good.modules) == 2
    collided = lora_expectation(
        LORA_CASES[0].build(targets) | build_lora(targets, scheme="old"), targets
    )
    assert not collided.fully_valid
    assert all(acc.report for accs in collided.modules.values() for acc in accs)
    empty = lora_expectation({}, targets)
    assert empty.nothing and not empty.fully_valid
    half = lora_expectation(lora_case("half-pair-no-up").build(targets), targets)
    assert [a.delta for a in half.modules["m.to_q"]] == [None]


def test_every_path_and_case_is_named_in_the_tables():
    assert len(set(FILE_CASE_IDS)) == len(FILE_CASES)
    assert len(set(LORA_CASE_IDS)) == len(LORA_CASES)
    assert set(LORA_FILE_CASES) <= set(LORA_CASE_IDS)
    assert set(PICKLE_FILES) == set(PICKLE_PATHS)
