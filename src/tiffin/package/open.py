"""``open_package``: the one way the readers that run a package (load, verify, env build,
isolated runs) open it. (Lint reads folders still being written, and runs nothing.)

The order is the trust argument: a single-file archive is extracted (refusing anything
hostile) into a private folder, every file is checked against the manifest, and only
then is the signing policy applied, so no reader can forget a step or take them in a
different order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TiffinError
from ..security.signing import enforce_policy
from .archive import open_archive
from .integrity import verify_tree
from .manifest import Manifest


@dataclass(frozen=True)
class OpenedPackage:
    """A verified package folder, its manifest, and the path the caller gave."""

    root: Path
    manifest: Manifest
    source: Path

    @property
    def from_archive(self) -> bool:
        return self.root != self.source

    def errors_named_by_source(self) -> AbstractContextManager[None]:
        """Errors inside name the archive the user gave, not its private extraction folder."""
        return _named_by_source(self.root, self.source)


@contextmanager
def _named_by_source(root: Path, source: Path) -> Iterator[None]:
    try:
        yield
    except TiffinError as exc:
        if root != source and exc.where and exc.where.startswith(str(root)):
            exc.where = f"archive {source}" + exc.where[len(str(root)) :].replace("/", ": ", 1)
            exc.args = (exc.format(),)
        raise


def open_package(
    path: str | os.PathLike[str],
    *,
    trusted_keys: Sequence[Any] | Any = None,
    require_signed: bool | None = None,
) -> OpenedPackage:
    """Open the package folder or archive at ``path``: integrity first, then signing policy.

    ``trusted_keys``/``require_signed`` are the signing policy (``None`` reads
    ``TIFFIN_REQUIRE_SIGNED``); without keys and without a requirement no signature
    is checked. Example::

        opened = open_package("fraud-1.2.0.tiffin", trusted_keys=["release.pub"])
        opened.root, opened.manifest.digest
    """
    source = Path(path)
    root = open_archive(source) if source.is_file() else source
    with _named_by_source(root, source):
        manifest = verify_tree(root)
        enforce_policy(root, manifest, trusted_keys, require_signed)
    return OpenedPackage(root=root, manifest=manifest, source=source)
