"""The CLI: help for every command, and one clear line + non-zero exit for bad input."""

import pytest

from harness.cli import build_parser, main
from harness.commands import COMMANDS


def test_every_command_has_help(capsys):
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name.replace("_", "-"), "--help"])
        assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--cells", "0.99"], "unknown diffusers version '0.99'"),
        (["matrix", "--cells", "0.25"], "unknown diffusers version '0.25'"),
        (["report", "does/not/exist.jsonl", "--out", "x"], "does/not/exist.jsonl"),
        (["wheelhouse", "/etc/hostname/inside-a-file"], "choose a writable folder"),
    ],
)
def test_bad_input_gives_one_clear_line(capsys, argv, needle, tmp_path):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("adapter-compat: error:")
    assert needle in err


def test_unwritable_report_folder(capsys, tmp_path):
    from harness.protocol.records import CheckRecord, write_record

    results = tmp_path / "r.jsonl"
    write_record(results, CheckRecord("s/x::y", "s", ["OK"], "OK", "pass", cell="cell-0.26.3"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["report", str(results), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "adapter-compat: error:" in err


def test_matrix_prints_every_cell(capsys):
    assert main(["matrix"]) == 0
    out = capsys.readouterr().out
    assert out.count("cell-0.") == 17 and "transformers" in out
