"""``python -m harness.cell.pytest_main ARGS``: pytest, then leave without interpreter teardown.

A process that has imported torch + diffusers spends 2-3 s in interpreter shutdown
(module teardown, garbage collection of every class and tensor) after pytest has already
written every record and its summary: 30-40 % of a smoke cell's floor. The cell runner
starts pytest through this module so that time is not spent; results files are closed
by then (each record is appended and closed on its own), and stdout/stderr are flushed
here. Use ``python -m pytest`` for anything that relies on atexit handlers.
"""

from __future__ import annotations

import os
import sys

import pytest

from harness.cell import coverage as coverage_data


def main(argv: list[str]) -> int:
    measuring = os.environ.get(coverage_data.DATA_FILE_ENV)  # `run --coverage`
    cov = coverage_data.start(measuring) if measuring else None
    try:
        code = int(pytest.main(argv))
    finally:
        if cov is not None:
            coverage_data.stop(cov)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to lose
            pass
    return code


if __name__ == "__main__":
    os._exit(main(sys.argv[1:]))
