"""What the installed libraries offer, asked the same way everywhere in a cell.

Every version question in-cell code asks goes through here: which release of a package is
installed (:func:`installed`, :func:`at_least`), whether a callable takes a parameter
(:func:`accepts`), and facts that hold from a release on (:class:`Since`, for the version
tables of the drivers). Versions are parsed by the one parser,
:func:`harness.protocol.versions.version_tuple`. Public classes, methods and parameters
are probed where the API itself tells; a ``Since`` row is for behaviour the signature does
not show (a keyword popped from ``**kwargs``, a changed default).
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from harness.protocol.versions import version_tuple


def installed(package: str) -> tuple[int, ...]:
    """Release tuple of the installed ``package`` (``(0, 33, 1)``); ``()`` when absent.

    An imported module's ``__version__`` wins over the distribution metadata, so a source
    tree put on ``sys.path`` reports the version it declares.
    """
    module = sys.modules.get(package)
    text = getattr(module, "__version__", None) if module is not None else None
    if not isinstance(text, str):
        try:
            text = metadata.version(package)
        except metadata.PackageNotFoundError:
            return ()
    return version_tuple(text)


def at_least(package: str, version: str) -> bool:
    """``package`` is installed at release ``version`` or later."""
    found = installed(package)
    return bool(found) and found >= version_tuple(version)


def accepts(fn: Any, name: str) -> bool:
    """``fn`` names parameter ``name`` in its signature (``**kwargs`` does not count)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Since:
    """A behaviour of ``package`` from release ``version`` on; ``source`` says where that
    is documented or seen (a release note, a file and line), so a reader can check it."""

    version: str
    package: str = "diffusers"
    source: str = ""

    def holds(self) -> bool:
        return at_least(self.package, self.version)
