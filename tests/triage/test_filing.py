"""Issue drafts and filing against a local fake of GitHub's REST API (127.0.0.1 only).

The fake speaks exactly the subset ``harness.triage.filing.github`` uses, with Link-header
pagination and token checks, and records every request so the tests can assert that a
run created nothing twice and that a 401 left nothing half-filed.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import harness.cli
from harness.protocol.records import write_record
from harness.report.causes import cause_of
from harness.report.write import write_report
from harness.triage.filing.drafts import (
    FINGERPRINT_MARK,
    MAX_BODY,
    STATE_MARK,
    build_drafts,
    find_mark,
    fingerprint,
)
from tests.report.report_runs import CHANGING, STEADY_BAD, kohya_run, record, write_run

TOKEN = "ghp_test_token"
REPO = "acme/diffusers-compat"


class FakeGitHub:
    """State of the fake: issues with comments, and a log of requests."""

    def __init__(self, page_size: int = 2) -> None:
        self.issues: list[dict[str, Any]] = []
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.page_size = page_size
        self.url = ""

    def posts(self) -> list[str]:
        return [path for method, path in self.requests if method == "POST"]


def make_handler(state: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, {"message": "Bad credentials"})
                return False
            return True

        def _page(self, items: list[dict[str, Any]], query: dict[str, list[str]]) -> None:
            page = int(query.get("page", ["1"])[0])
            size = state.page_size
            chunk = items[(page - 1) * size : page * size]
            headers = {}
            if page * size < len(items):
                split = urlsplit(self.path)
                rest = {k: v[0] for k, v in query.items() if k != "page"}
                rest["page"] = str(page + 1)
                qs = "&".join(f"{k}={v}" for k, v in rest.items())
                headers["Link"] = f'<{state.url}{split.path}?{qs}>; rel="next"'
            self._send(200, chunk, headers)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            state.requests.append(("GET", self.path))
            if not self._authorized():
                return
            split = urlsplit(self.path)
            query = parse_qs(split.query)
            if split.path == f"/repos/{REPO}":
                self._send(200, {"full_name": REPO})
            elif split.path == f"/repos/{REPO}/issues":
                label = query.get("labels", [""])[0]
                items = [
                    i
                    for i in state.issues
                    if i["state"] == "open" and label in [lab["name"] for lab in i["labels"]]
                ]
                self._page(items, query)
            elif m := re.fullmatch(rf"/repos/{REPO}/issues/(\d+)/comments", split.path):
                self._page(state.comments.get(int(m.group(1)), []), query)
            else:
                self._send(404, {"message": "Not Found"})

        def do_POST(self) -> None:  # noqa: N802
            state.requests.append(("POST", self.path))
            if not self._authorized():
                return
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            if self.path == f"/repos/{REPO}/issues":
                number = len(state.issues) + 1
                issue = {
                    "number": number,
                    "title": payload["title"],
                    "body": payload["body"],
                    "state": "open",
                    "labels": [{"name": n} for n in payload.get("labels", [])],
                    "html_url": f"https://github.example/{REPO}/issues/{number}",
                }
                state.issues.append(issue)
                self._send(201, issue)
            elif m := re.fullmatch(rf"/repos/{REPO}/issues/(\d+)/comments", self.path):
                comment = {"id": len(state.requests), "body": payload["body"]}
                state.comments.setdefault(int(m.group(1)), []).append(comment)
                self._send(201, comment)
            else:
                self._send(404, {"message": "Not Found"})

    return Handler


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    state = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(harness.cli, "COMMANDS", ("report", "file", "repro"))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    return harness.cli.main


def first_run_report(tmp_path: Path) -> Path:
    """No baseline: both regressions of the first run are new."""
    return write_report(
        [write_run(tmp_path / "r1", True)], tmp_path / "run1", False, tmp_path / "x", baseline=None
    )


def post(cli, github: FakeGitHub, report: Path, *extra: str) -> int:
    return cli(["file", str(report), "--post", "--repo", REPO, "--api-url", github.url, *extra])


def test_fingerprint_is_the_root_cause_not_the_message() -> None:
    tb = (
        'Traceback (most recent call last):\n  File "/v/site-packages/diffusers/loaders/x.py", '
        "line 12, in convert\n    sd.pop(k)\nKeyError: 'a'\n"
    )
    a = fingerprint(cause_of("lora/f::load[x]", "CRASH", "KeyError", "'a.0.b' at 0x7f", tb))
    # another row, key, address and line number: the same bug
    moved = tb.replace("line 12", "line 40")
    assert a == fingerprint(cause_of("lora/f::load[y]", "CRASH", "KeyError", "'c.9' at 0x1", moved))
    assert a != fingerprint(cause_of("lora/f::load[x]", "CRASH", "IndexError", "'a.0.b'", tb))
    elsewhere = tb.replace("in convert", "in expand")
    assert a != fingerprint(cause_of("lora/f::load[x]", "CRASH", "KeyError", "'a'", elsewhere))
    # an oracle's finding: same outcome on the same operation, whatever the message
    judged = fingerprint(cause_of("lora/f::load[x]", "DROPPED_KEYS", "Finding", "3 keys", tb))
    assert judged == fingerprint(cause_of("lora/f::load[z]", "DROPPED_KEYS", None, "9 keys", ""))
    assert judged != fingerprint(cause_of("lora/f::fuse[x]", "DROPPED_KEYS", None, "3 keys", ""))


def test_dry_run_writes_drafts(cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = first_run_report(tmp_path)
    assert cli(["file", str(report)]) == 0
    out = capsys.readouterr().out
    assert "2 issue draft(s)" in out and "dry run: nothing filed" in out
    index = json.loads((report / "issues" / "index.json").read_text())
    assert sorted(d["check_id"] for d in index) == sorted([CHANGING, STEADY_BAD])
    steady = next(d for d in index if d["check_id"] == STEADY_BAD)
    assert steady["rows"] == {STEADY_BAD: ["cell-0.33.1", "cell-0.42.1"]}  # one issue
    text = (report / "issues" / steady["file"]).read_text()
    assert text.startswith(
        "# [adapter-compat] KeyError in lora/formats::load: 1 row(s) fail since diffusers 0.33.1"
    )
    doc = json.loads((report / "compat.json").read_text())
    result = next(c for c in doc["checks"] if c["check_id"] == STEADY_BAD)["results"]
    sample = result["cell-0.42.1"]
    cause = cause_of(STEADY_BAD, "CRASH", "KeyError", sample["message"], sample["traceback"])
    assert find_mark(text, FINGERPRINT_MARK) == fingerprint(cause)
    for part in (
        "### Affected rows",
        f"| `{STEADY_BAD}` | 0.33.1, 0.42.1 | 0.32.2 → 0.33.1 | — |",
        "#### Versions",
        "#### Reproduction (rerun)",
        "<summary>Traceback (test-runner frames hidden)</summary>",
        "between **0.32.2** (last good in the matrix) and **0.33.1** (first bad)",
        f"`adapter-compat bisect '{STEADY_BAD}' --good 0.32.2 --bad 0.33.1`",
        "| 0.32.2 | 2.13.0+cpu | 0.13.2 |",
    ):
        assert part in text, part
    assert "Finding" not in text


def test_only_new_regressions_are_drafted(cli, tmp_path: Path, capsys) -> None:
    root = tmp_path / "reports"
    write_report([write_run(tmp_path / "r1", False)], None, True, reports_root=root)
    second = write_report([write_run(tmp_path / "r2", True)], None, True, reports_root=root)
    assert cli(["file", str(second)]) == 0
    index = json.loads((second / "issues" / "index.json").read_text())
    assert [d["check_id"] for d in index] == [CHANGING]
    assert cli(["file", str(second), "--all"]) == 0
    assert len(json.loads((second / "issues" / "index.json").read_text())) == 2


def test_post_creates_then_never_duplicates_then_comments(
    cli, github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    report = first_run_report(tmp_path)
    assert post(cli, github, report) == 0
    out = capsys.readouterr().out
    assert out.count("created #") == 2 and "2 issue(s) created, 0 comment(s)" in out
    assert len(github.issues) == 2 and len(github.posts()) == 2
    assert all(i["labels"] == [{"name": "adapter-compat"}] for i in github.issues)
    assert all(len(i["body"]) <= MAX_BODY for i in github.issues)
    filed = json.loads((report / "issues" / "filed.json").read_text())
    assert [a["action"] for a in filed["actions"]] == ["create", "create"]

    # the same report again (page size 2 < issues: pagination exercised): nothing new
    github.page_size = 1
    assert post(cli, github, report) == 0
    out = capsys.readouterr().out
    assert "0 issue(s) created, 0 comment(s)" in out and out.count("unchanged #") == 2
    assert len(github.issues) == 2 and len(github.posts()) == 2

    # next night: the steady regression now also fails in 0.32.2 (its state changed)
    later = write_run(tmp_path / "r3", True, message="addr 0x1234")
    write_record(
        later / "cell-0.32.2.jsonl",
        record(
            "0.32.2",
            STEADY_BAD,
            "regression",
            exc_type="KeyError",
            message="'double_blocks.0.qkv' at addr 0x9",  # same bug, another address
        ),
    )
    report3 = write_report([later], tmp_path / "run3", False, tmp_path / "x", baseline=report)
    assert post(cli, github, report3) == 0
    out = capsys.readouterr().out
    assert "0 issue(s) created, 1 comment(s)" in out
    assert len(github.issues) == 2
    steady = next(i for i in github.issues if f"`{STEADY_BAD}`" in i["body"])
    (comment,) = github.comments[steady["number"]]
    assert f"- `{STEADY_BAD}`: 0.32.2, 0.33.1, 0.42.1" in comment["body"]
    assert find_mark(comment["body"], STATE_MARK) != find_mark(steady["body"], STATE_MARK)

    # and once more: the comment's state is now current, so nothing is posted
    before = len(github.posts())
    assert (
        cli(["file", str(report3), "--all", "--post", "--repo", REPO, "--api-url", github.url]) == 0
    )
    assert len(github.posts()) == before


def test_401_is_one_line_and_nothing_is_filed(
    cli, github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    report = first_run_report(tmp_path)
    assert post(cli, github, report) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "401" in err[0] and "Bad credentials" in err[0] and "nothing was filed" in err[0]
    assert github.posts() == [] and github.issues == []
    assert not (report / "issues" / "filed.json").exists()


def test_post_needs_a_token_and_a_repo(cli, tmp_path: Path, monkeypatch, capsys) -> None:
    report = first_run_report(tmp_path)
    assert cli(["file", str(report), "--post", "--repo", REPO]) == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    assert cli(["file", str(report), "--post", "--repo", "not a repo"]) == 2
    assert "owner/name" in capsys.readouterr().err


def test_unreachable_api_is_one_line(cli, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    report = first_run_report(tmp_path)
    rc = cli(["file", str(report), "--post", "--repo", REPO, "--api-url", "http://127.0.0.1:9"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach" in err[0]


def test_huge_traceback_fits_githubs_limit(tmp_path: Path) -> None:
    results = write_run(tmp_path / "r", False)
    write_record(
        results / "cell-0.42.1.jsonl",
        record("0.42.1", STEADY_BAD, "regression", exc_type="KeyError", message="m" * 5000,
               traceback="frame\n" * 40_000),
    )  # fmt: skip
    out = write_report([results], tmp_path / "o", False, tmp_path / "x", baseline=None)
    doc = json.loads((out / "compat.json").read_text())
    (draft,) = [d for d in build_drafts(doc, everything=True) if "KeyError" in d.title]
    assert len(draft.body) <= MAX_BODY
    assert draft.body.rstrip().endswith("filing again.")


def test_drafts_group_rows_by_root_cause_and_skip_fixed_ones(tmp_path: Path) -> None:
    """Three rows with one KeyError in one converter (other keys, other line numbers) are
    one draft listing all three; a row red in 0.33.1 but passing in the newest cell is
    fixed (no draft); an oracle's finding on another operation is a draft of its own."""
    out = write_report([kohya_run(tmp_path / "r")], tmp_path / "o", False, baseline=None)
    doc = json.loads((out / "compat.json").read_text())
    drafts = build_drafts(doc, everything=True)
    assert len(drafts) == 2
    kohya, drift = drafts
    assert list(kohya.rows) == [f"lora/formats::load[{a}-kohya]" for a in ("flux", "sd15", "sdxl")]
    assert all(cells == ["cell-0.33.1", "cell-0.42.1"] for cells in kohya.rows.values())
    assert kohya.title == (
        "[adapter-compat] KeyError in diffusers/loaders/conv.py:_convert_kohya: "
        "3 row(s) fail since diffusers 0.33.1"
    )
    assert (
        "| `lora/formats::load[sd15-kohya]` | 0.33.1, 0.42.1 | 0.32.2 → 0.33.1 | — |" in kohya.body
    )
    assert "flux-comfy" not in json.dumps([d.to_index() for d in drafts])  # fixed in 0.42.1
    assert list(drift.rows) == ["drift/drift::callsites_internal[diffusers-x]"]
    assert drift.title.startswith("[adapter-compat] CRASH on drift/drift::callsites_internal")
    assert "in every tested version from 0.30.3 on" in drift.title
    # the fixed row is in the report instead, as fixed
    assert "fixed in 0.42.1" in (out / "compat.md").read_text()


def test_a_row_fixed_in_the_newest_cell_is_never_drafted(tmp_path: Path) -> None:
    """Plant the fix: the steady regression passes again in 0.42.1 -> no draft for it."""
    results = write_run(tmp_path / "r", True)
    write_record(results / "cell-0.42.1.jsonl", record("0.42.1", STEADY_BAD, "pass"))
    out = write_report([results], tmp_path / "o", False, tmp_path / "x", baseline=None)
    doc = json.loads((out / "compat.json").read_text())
    assert [d.check_id for d in build_drafts(doc, everything=True)] == [CHANGING]
