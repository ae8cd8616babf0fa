"""Record schema, concurrent appends and tolerance of a torn last line."""

import json
import multiprocessing
import warnings

from harness.protocol.records import (
    CellRecord,
    CheckRecord,
    append_line,
    read_records,
    write_record,
)

REQUIRED = {
    "check_id", "suite", "params", "expected", "observed", "verdict", "exc_type", "message",
    "versions", "device", "dtype", "duration_s", "cell", "kind", "schema",
}  # fmt: skip


def test_check_record_has_the_schema_fields(tmp_path):
    path = tmp_path / "r.jsonl"
    write_record(
        path, CheckRecord("lora/x::y", "lora", ["OK"], "OK", "pass", params={"format": "kohya"})
    )
    (record,) = read_records([path])
    assert REQUIRED <= set(record)
    assert record["params"] == {"format": "kohya"} and record["schema"] == 1


def _writer(path, worker, count):
    for i in range(count):
        append_line(
            path, json.dumps({"kind": "check", "worker": worker, "i": i, "pad": "x" * 5000})
        )


def test_concurrent_writers_never_interleave(tmp_path):
    path = tmp_path / "r.jsonl"
    procs = [multiprocessing.Process(target=_writer, args=(str(path), w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["pad"] == "x" * 5000 for line in lines)


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "r.jsonl"
    write_record(path, CellRecord(cell="cell-0.26.3", status="ok"))
    with open(path, "a") as handle:
        handle.write('{"kind": "check", "check_id": "smoke/pipel')  # killed mid-write
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = list(read_records([path]))
    assert [r["kind"] for r in records] == ["cell"]
    assert any("truncated" in str(w.message) for w in caught)
