"""Render compat.html in headless Chromium: a PNG, and the DOM after the filters ran.

    python -m harness.report.screenshot reports/latest --out /tmp/compat.png \
        --fragment 'verdict=regression&p.arch=flux'

The filters read the URL fragment, so a fragment is all it takes to drive them without a
browser automation library; ``--dump-dom`` gives the DOM after the page's script ran
(rows hidden by a filter carry ``class="... filtered"``; ``<body data-shown="N">``).
Chromium: Debian's ``chromium`` package (``apt-get install chromium``) or
``ADAPTER_COMPAT_CHROMIUM=/path/to/chrome``. Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Flags for a quiet, offline, throwaway browser.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # let the page's asynchronous work finish (panels unpack the details blob) before the
    # DOM is dumped or the screenshot taken
    "--virtual-time-budget=10000",
)


def find_chromium() -> str | None:
    explicit = os.environ.get("ADAPTER_COMPAT_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _url(html: Path, fragment: str = "") -> str:
    url = html.resolve().as_uri()
    return f"{url}#{fragment.lstrip('#')}" if fragment else url


def _run(chromium: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="adapter-compat-chromium-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def dump_dom(
    html: Path, fragment: str = "", chromium: str | None = None, timeout: float = 60
) -> str:
    """The DOM after the page's scripts ran (filters applied from the fragment)."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium found (apt-get install chromium)")
    proc = _run(chromium, ["--dump-dom", _url(html, fragment)], timeout)
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-500:]}")
    return proc.stdout


def screenshot(
    html: Path,
    png: Path,
    fragment: str = "",
    size: tuple[int, int] = (1400, 1000),
    chromium: str | None = None,
    timeout: float = 60,
) -> Path:
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium found (apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(
        chromium,
        [
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png.resolve()}",
            _url(html, fragment),
        ],
        timeout,
    )
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(
            f"chromium --screenshot failed ({proc.returncode}): {proc.stderr[-500:]}"
        )
    return png


def shown_rows(dom: str) -> tuple[list[str], list[str]]:
    """(check ids of visible grid rows, of rows hidden by the filters) from a dumped DOM."""
    shown, hidden = [], []
    for match in re.finditer(r'<tr class="([^"]*)" data-check="([^"]*)"', dom):
        (hidden if "filtered" in match.group(1).split() else shown).append(match.group(2))
    return shown, hidden


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.report.screenshot", description=__doc__
    )
    parser.add_argument("report", type=Path, help="report folder or compat.html")
    parser.add_argument("--out", type=Path, default=Path("compat.png"))
    parser.add_argument(
        "--fragment", default="", help="filters, e.g. 'verdict=regression&suite=lora'"
    )
    parser.add_argument("--size", default="1400,1000", help="window WIDTH,HEIGHT")
    args = parser.parse_args(argv)
    html = args.report / "compat.html" if args.report.is_dir() else args.report
    if not html.is_file():
        print(f"no compat.html at {args.report}", file=sys.stderr)
        return 2
    if find_chromium() is None:
        print(
            "no chromium found: apt-get install chromium (or set ADAPTER_COMPAT_CHROMIUM)",
            file=sys.stderr,
        )
        return 2
    width, height = (int(x) for x in args.size.split(","))
    shown, hidden = shown_rows(dump_dom(html, args.fragment))
    print(f"filters {args.fragment or '(none)'}: {len(shown)} row(s) shown, {len(hidden)} hidden")
    print(f"screenshot: {screenshot(html, args.out, args.fragment, (width, height))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
