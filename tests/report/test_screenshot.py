"""compat.html in a real browser: the filters work, the page renders, nothing is fetched.

Needs Debian's ``chromium`` (``apt-get install chromium``); skipped with that reason where
it is absent (CI runners without a browser). Set ``ADAPTER_COMPAT_SCREENSHOT_DIR`` to keep
the PNGs (the test writes them to its tmp folder otherwise).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.report.screenshot import dump_dom, find_chromium, screenshot, shown_rows
from harness.report.write import write_report
from tests.report.report_runs import CHANGING, GREEN, STEADY_BAD, write_run

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("shot")
    root = tmp / "reports"
    write_report([write_run(tmp / "r1", False)], None, True, reports_root=root)
    return write_report([write_run(tmp / "r2", True)], None, True, reports_root=root)


def test_filters_from_the_fragment(report: Path) -> None:
    html = report / "compat.html"
    shown, hidden = shown_rows(dump_dom(html))
    assert len(shown) == 4 and not hidden
    shown, hidden = shown_rows(dump_dom(html, "verdict=regression"))
    assert sorted(shown) == sorted([CHANGING, STEADY_BAD])
    assert GREEN in hidden
    shown, _ = shown_rows(dump_dom(html, "verdict=changed"))
    assert shown == [CHANGING]
    shown, _ = shown_rows(dump_dom(html, "suite=ip_adapter&p.arch=sd15"))
    assert shown == [GREEN]
    dom = dump_dom(html, "verdict=regression&p.format=xlabs")
    assert shown_rows(dom)[0] == [STEADY_BAD]
    assert 'data-shown="1"' in dom and "1 of 4 checks" in dom


def test_screenshot(report: Path, tmp_path: Path) -> None:
    keep = os.environ.get("ADAPTER_COMPAT_SCREENSHOT_DIR")
    folder = Path(keep) if keep else tmp_path
    full = screenshot(report / "compat.html", folder / "compat.png", size=(1400, 1600))
    filtered = screenshot(
        report / "compat.html", folder / "compat-regressions.png", "verdict=regression"
    )
    for png in (full, filtered):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert shutil.which(CHROMIUM or "") or Path(CHROMIUM or "").exists()
