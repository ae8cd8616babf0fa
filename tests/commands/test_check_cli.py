"""``adapter-compat check`` end to end through the CLI, with the cell child replaced by a
stub that records what it was given (which file, which fingerprint) — so reuse, results
folders and exit codes are tested without installing or importing diffusers.

The stub writes what a real cell writes: one check record (naming the file's content hash,
so a stale result is visible) and the closing cell record with the run fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

import harness.cli as cli
from harness.byo import USER_FILE_ENV
from harness.matrix import cellenv, runner
from tests.byo.files import write_file

#: The cell child: writes results where the driver said, counts its runs.
STUB = """
import hashlib, json, os, sys
from pathlib import Path
from harness.protocol.records import CellRecord, CheckRecord, write_record
cell, counter = sys.argv[1], Path(sys.argv[2])
results = Path(os.environ["ADAPTER_COMPAT_REPORTS"]) / "results" / f"{cell}.jsonl"
results.unlink(missing_ok=True)
user = Path(os.environ["ADAPTER_COMPAT_USER_FILE"])
sha = hashlib.sha256(user.read_bytes()).hexdigest()[:12]
verdict = os.environ.get("STUB_VERDICT", "pass")
write_record(results, CheckRecord(
    check_id="lora/byo::user_file_reaches_the_model", suite="lora", expected=["OK"],
    observed="OK" if verdict == "pass" else "DROPPED_KEYS", verdict=verdict, cell=cell,
    params={"file": user.name, "sha": sha}, message="" if verdict == "pass" else "planted"))
write_record(results, CellRecord(cell=cell, status="ok",
    fingerprint=os.environ["ADAPTER_COMPAT_RUN_FINGERPRINT"]))
with open(counter, "a") as handle:
    handle.write(sha + "\\n")
"""


def lora_file(path: Path, seed: int = 0) -> Path:
    """A small SD1.5 kohya LoRA (attention in down block 0: SD1.5) with real bytes."""
    shapes: dict[str, list[int]] = {}
    for block in range(2):
        stem = f"lora_unet_down_blocks_0_attentions_{block}_transformer_blocks_0_attn2_to_k"
        shapes[f"{stem}.lora_down.weight"] = [4, 768]
        shapes[f"{stem}.lora_up.weight"] = [320, 4]
    return write_file(path, shapes, fill=seed)


@pytest.fixture
def stub_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Replace the cell child with :data:`STUB`; returns the file counting its runs."""
    counter = tmp_path / "runs.txt"
    counter.write_text("")

    def command(cell, pytest_args, env):  # noqa: ANN001 - runner.cell_command's signature
        return [sys.executable, "-c", STUB, cell.name, str(counter)]

    monkeypatch.setattr(runner, "cell_command", command)
    for name in ("ADAPTER_COMPAT_DTYPE", "ADAPTER_COMPAT_RERUN", "STUB_VERDICT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(USER_FILE_ENV, "")  # check sets it; teardown removes it again
    monkeypatch.setattr("harness.commands.bisect.cached_first_bad", lambda: {})
    return counter


def check(*argv: str) -> int:
    return cli.main(["check", *argv])


def runs(counter: Path) -> list[str]:
    return counter.read_text().split()


def shown(out: Path) -> set[str]:
    """Content hashes of the files the results in ``out`` are about."""
    lines = (out / "results" / "cell-0.42.1.jsonl").read_text().splitlines()
    return {json.loads(line)["params"]["sha"] for line in lines if '"check"' in line}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_check_a_then_b_shows_b_and_settings_force_a_rerun(
    tmp_path: Path, stub_cells: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    a = lora_file(tmp_path / "a" / "my_lora.safetensors", seed=1)
    b = lora_file(tmp_path / "b" / "my_lora.safetensors", seed=2)
    assert check(str(a), "--cells", "0.42", "--out", str(out)) == 0
    assert check(str(b), "--cells", "0.42", "--out", str(out)) == 0
    assert runs(stub_cells) == [sha(a), sha(b)] and shown(out) == {sha(b)}
    # the same file in place, new content: another file
    lora_file(b, seed=3)
    assert check(str(b), "--cells", "0.42", "--out", str(out)) == 0
    assert runs(stub_cells)[-1] == sha(b) and shown(out) == {sha(b)}
    capsys.readouterr()
    # nothing changed: reused, and the progress line says so
    assert check(str(b), "--cells", "0.42", "--out", str(out)) == 0
    assert len(runs(stub_cells)) == 3 and "reused" in capsys.readouterr().out
    # a result-changing setting, a pytest argument, --rerun: each runs again
    monkeypatch.setenv("ADAPTER_COMPAT_DTYPE", "float16")
    assert check(str(b), "--cells", "0.42", "--out", str(out)) == 0
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "nightly")
    assert check(str(b), "--cells", "0.42", "--out", str(out)) == 0
    assert check("--cells", "0.42", "--out", str(out), str(b), "--", "-k", "mutated") == 0
    assert check(str(b), "--cells", "0.42", "--out", str(out), "--rerun") == 0
    assert len(runs(stub_cells)) == 7
    # the matrix's own results folder was never written
    assert not cellenv.results_path("cell-0.42.1").exists() or (
        sha(b) not in cellenv.results_path("cell-0.42.1").read_text()
    )


def test_planted_stale_reuse_key_shows_the_old_file(
    tmp_path: Path, stub_cells: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planted: a reuse key without the file's content (and settings): B shows A's results
    — the bug from the issue. The unplanted run above shows B's."""
    monkeypatch.setattr("harness.commands.check.reuse_key", lambda path: "")
    out, path = tmp_path / "out", tmp_path / "my_lora.safetensors"
    first = sha(lora_file(path, seed=1))
    assert check(str(path), "--cells", "0.42", "--out", str(out)) == 0
    lora_file(path, seed=2)
    assert check(str(path), "--cells", "0.42", "--out", str(out)) == 0
    assert runs(stub_cells) == [first] and shown(out) == {first}  # stale: A's answer


def test_exit_codes(tmp_path: Path, stub_cells: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = lora_file(tmp_path / "my_lora.safetensors")
    monkeypatch.setenv("STUB_VERDICT", "regression")
    assert check(str(path), "--cells", "0.42", "--out", str(tmp_path / "o1")) == 1
    assert check(str(path), "--cells", "0.42", "--out", str(tmp_path / "o2"), "--exit-zero") == 0
    monkeypatch.setenv("STUB_VERDICT", "skipped")  # a check that judged nothing
    assert check(str(path), "--cells", "0.42", "--out", str(tmp_path / "o3")) == 1


def no_cells(*args, **kwargs):  # noqa: ANN002, ANN003
    raise AssertionError("a cell ran")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adapter-compat: error: "), err
    return err[0]


def test_truncated_data_exits_2_before_any_cell(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(runner, "run_matrix", no_cells)
    shapes = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": [4, 320, 1, 1]}
    path = write_file(tmp_path / "cut.safetensors", shapes, cut=100)
    assert check(str(path), "--cells", "0.42") == 2
    assert "tensor data is truncated" in one_error_line(capsys)
    assert check(str(path), "--detect-only") == 2


@pytest.mark.parametrize("where", ["matrix-results", "foreign"])
def test_out_is_validated_before_any_cell(tmp_path: Path, where: str, monkeypatch, capsys) -> None:
    monkeypatch.setattr(runner, "run_matrix", no_cells)
    path = lora_file(tmp_path / "my_lora.safetensors")
    out = cellenv.RESULTS_DIR
    if where == "foreign":
        out = tmp_path / "somebody"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    assert check(str(path), "--cells", "0.42", "--out", str(out)) == 2
    assert "--out" in one_error_line(capsys)


def test_lokr_is_one_clear_line(tmp_path: Path, capsys) -> None:
    shapes = {}
    for i in range(4):
        stem = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q_{i}"
        shapes.update({f"{stem}.lokr_w1": [4, 4], f"{stem}.lokr_w2": [80, 80], f"{stem}.alpha": []})
    path = write_file(tmp_path / "lokr.safetensors", shapes)
    assert check(str(path), "--detect-only") == 2
    line = one_error_line(capsys)
    assert (
        "LoKR" in line and "lokr_w1 / lokr_w2" in line and "kohya" in line and "IP-Adapter" in line
    )


def test_not_understood_exits_2_before_any_cell(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(runner, "run_matrix", no_cells)
    shapes = {}
    for i in range(3):
        stem = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_z{i}"
        shapes.update({f"{stem}.lora_down.weight": [4, 320], f"{stem}.lora_up.weight": [320, 4]})
    path = write_file(tmp_path / "odd.safetensors", shapes)
    assert check(str(path), "--cells", "0.42") == 2
    assert "not understood: 6 of 6 keys" in one_error_line(capsys)


def fake_cache(root: Path, repo: str, files: dict[str, Path], revision: str = "main") -> Path:
    """The documented huggingface_hub cache layout: refs/<rev> -> snapshots/<sha>/<file>,
    snapshot entries linking into blobs/."""
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / revision).write_text(commit)
    (folder / "blobs").mkdir()
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        blob = folder / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
        blob.write_bytes(source.read_bytes())
        (snapshot / name).symlink_to(blob)
    return snapshot


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_hub_id_from_the_local_cache(tmp_path: Path, variable: str, monkeypatch, capsys) -> None:
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # "org/repo" must not exist as a local path
    root = tmp_path / "cache" / ("hub" if variable == "HF_HOME" else "")
    monkeypatch.setenv(variable, str(tmp_path / "cache") if variable == "HF_HOME" else str(root))
    weights = lora_file(tmp_path / "src.safetensors")
    snapshot = fake_cache(root, "someone/my-lora", {"pytorch_lora_weights.safetensors": weights})
    assert check("someone/my-lora", "--detect-only") == 0
    out = capsys.readouterr().out
    assert str(snapshot / "pytorch_lora_weights.safetensors") in out and "sd15" in out
    assert check("someone/my-lora:pytorch_lora_weights.safetensors", "--detect-only") == 0
    capsys.readouterr()
    assert check("someone/other-lora", "--detect-only") == 2
    line = one_error_line(capsys)
    assert "someone/other-lora is not in the local Hugging Face cache" in line
    assert check("someone/my-lora:missing.safetensors", "--detect-only") == 2
    assert "pytorch_lora_weights.safetensors" in one_error_line(capsys)


def test_planted_settings_blind_fingerprint_reuses_across_dtypes(
    tmp_path: Path, stub_cells: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Planted: a fingerprint blind to the environment settings reuses a float32 run for
    float16 (unplanted, the first test reruns it)."""
    monkeypatch.setattr(cellenv, "result_settings", lambda environ=None: "")
    out, path = tmp_path / "out", lora_file(tmp_path / "my_lora.safetensors")
    assert check(str(path), "--cells", "0.42", "--out", str(out)) == 0
    monkeypatch.setenv("ADAPTER_COMPAT_DTYPE", "float16")
    capsys.readouterr()
    assert check(str(path), "--cells", "0.42", "--out", str(out)) == 0
    assert len(runs(stub_cells)) == 1 and "reused" in capsys.readouterr().out


def test_target_runs_the_apps_byo_suite_in_its_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``--target invokeai``: the app's cells (installed by its recipe), its BYO suite, the
    check's own folder; an unknown target or version is one line before anything runs."""
    import harness.matrix.targets as targets

    path = lora_file(tmp_path / "my_lora.safetensors")
    assert check(str(path), "--target", "nosuch", "--cells", "all") == 2
    assert "unknown --target 'nosuch'" in one_error_line(capsys)
    assert check(str(path), "--target", "invokeai", "--cells", "0.1.0") == 2
    assert "unknown invokeai version" in one_error_line(capsys)

    seen: dict[str, object] = {}

    def prepare(target, selector, log=print, reports_dir=None):  # noqa: ANN001
        seen.update(target=target, selector=selector, reports_dir=reports_dir)
        return [], []

    def run_matrix(chosen, pytest_args, **kwargs):  # noqa: ANN001, ANN003
        seen.update(suites=list(pytest_args), out=kwargs.get("reports_dir"))
        return []

    monkeypatch.setattr(targets, "prepare", prepare)
    monkeypatch.setattr(runner, "run_matrix", run_matrix)
    out = tmp_path / "out"
    assert check(str(path), "--target", "invokeai", "--cells", "5.4", "--out", str(out)) == 2
    assert "no cell wrote results" in one_error_line(capsys)  # the stub ran nothing
    assert seen == {
        "target": "invokeai",
        "selector": "5.4",
        "reports_dir": out,
        "suites": ["suites/invokeai/test_byo.py"],
        "out": out,
    }
