"""The contract between the harness and a loader under test. Stdlib-only.

A loader is described by a :class:`LoaderSpec` (data: what it claims, how each release is
installed and probed) and implemented by an object with one call into the app,
:meth:`Loader.convert` - a LoRA state dict (plus the alpha the app passes, where its API
takes one) in, the app's result or an exception out - and one reader of that result,
:meth:`Loader.deltas`: the effective weight change per module. Two steps, so an exception
is the app's when ``convert`` raised it and ours (a harness error) when ``deltas`` did.
Why a converter and not "load into a model": the converter is the part that differs
between apps; the patching after it is plain ``W + delta``, which the reference judges
directly.

Output naming (``LoaderSpec.naming``): ``bfl`` - Flux layers by their BFL names, fused
where BFL fuses (``double_blocks.1.img_attn.qkv`` holds the q|k|v rows), text-encoder
modules by path; ``diffusers`` - ``<component>.<module path>`` as in a diffusers pipeline.
Both are mapped onto the reference's modules by :mod:`harness.loaders.judge`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Output namings the judge can map onto the reference.
NAMINGS = ("bfl", "diffusers")


@dataclass(frozen=True)
class InstallRecipe:
    """How one release of a loader's package gets into a fresh venv.

    ``requirements``: installed normally (with their dependencies), next to the pinned
    torch; ``no_deps``: installed with ``--no-deps`` afterwards (an app whose declared
    dependencies pull a GPU stack it does not need to convert a file); ``probe``: Python
    source that must run without error in the venv, else the cell is ``install_failed``
    with the probe's last line as the reason."""

    requirements: tuple[str, ...] = ()
    no_deps: tuple[str, ...] = ()
    probe: str = ""


@dataclass(frozen=True)
class Claim:
    """What one range of releases claims to load: ``formats`` (names from
    :data:`harness.inputs.checkpoints.lora.formats.FORMATS`) for ``arch``, and the
    components each format's files may carry (``{"peft": ("transformer",)}``)."""

    since: str
    arch: str
    components: Mapping[str, tuple[str, ...]]

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(self.components)


@dataclass(frozen=True)
class LoaderSpec:
    """A loader under test, as data.

    ``implementation``: ``"module:attribute"`` of a zero-argument factory returning a
    :class:`Loader` (imported inside the cell only); ``claims``: newest-first or any order,
    the newest ``since`` at or below a release wins; ``recipe(version)`` gives the install
    recipe of one release; ``distribution``: the package whose installed version a cell
    records."""

    name: str
    description: str
    distribution: str
    implementation: str
    naming: str
    claims: tuple[Claim, ...]
    recipes: Mapping[str, InstallRecipe] = field(default_factory=dict)

    def claim(self, version: str) -> Claim | None:
        """The claim in force for ``version`` (None: the release claims nothing we test)."""
        from harness.protocol.versions import version_tuple

        best: Claim | None = None
        for claim in self.claims:
            if version_tuple(claim.since) <= version_tuple(version) and (
                best is None or version_tuple(claim.since) > version_tuple(best.since)
            ):
                best = claim
        return best

    def recipe(self, version: str) -> InstallRecipe:
        try:
            return self.recipes[version]
        except KeyError:
            raise KeyError(f"{self.name} has no install recipe for {version}") from None


class Loader(Protocol):
    """What a loader implementation offers inside a cell."""

    #: The installed version of the loader's package (recorded with each check).
    version: str

    def convert(self, state_dict: Mapping[str, Any], alpha: float | None = None) -> Any:
        """Run the app's own code on ``state_dict``: returns whatever the app returns.

        Everything raised here is the app's (classified: clear error, crash, ...). Warnings
        go through :mod:`logging` / ``warnings`` (captured: a warning naming a key counts
        as reporting it)."""
        ...

    def deltas(self, converted: Any) -> Mapping[str, Any]:
        """Read ``convert``'s result: ``{module name: WeightDelta}`` in the spec's naming.
        Adapter code, not the app's: anything raised here is a harness error."""
        ...

    def detect(self, state_dict: Mapping[str, Any]) -> str | None:
        """The format name the app itself would read the file as (None: not recognised)."""
        ...
