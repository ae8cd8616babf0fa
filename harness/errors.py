"""User-facing errors of the CLI: one clear line, non-zero exit, no traceback."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (unknown version, missing file, unwritable folder...).

    The message is printed as one line prefixed with ``adapter-compat: error:`` and the
    process exits with status 2. Say what is wrong *and* what to do instead.
    """
