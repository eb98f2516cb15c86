"""The models a server holds: packages loaded by name and version, looked up safely."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._load import Predictor, load
from ..errors import UsageError


def version_key(version: str) -> list[Any]:
    """Sort key of a version: numeric parts as numbers ("10" after "9")."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+_-]", version)]


@dataclass
class Repository:
    """(name, version) -> Predictor; the newest version answers unversioned requests."""

    models: dict[tuple[str, str], Predictor] = field(default_factory=dict)

    def add(self, predictor: Predictor) -> None:
        key = (predictor.name, predictor.version)
        if key in self.models:
            raise UsageError(f"model {predictor.name} version {predictor.version} is given twice")
        self.models[key] = predictor

    def get(self, name: str, version: str | None = None) -> Predictor | None:
        # Plain dictionary lookups: a name such as "../x" is just a key that is not there,
        # so nothing outside the loaded packages is ever read.
        if version is not None:
            return self.models.get((name, version))
        versions = [v for (n, v) in self.models if n == name]
        if not versions:
            return None
        return self.models[(name, max(versions, key=version_key))]

    def __iter__(self) -> Any:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)


def from_paths(paths: list[Path], *, allow_pickle: bool = False, **trust: Any) -> Repository:
    """Load each package; ``trust`` is passed to load (``trusted_keys``, ``require_signed``)."""
    repo = Repository()
    for path in paths:
        repo.add(load(path, allow_pickle=allow_pickle, **trust))
    return repo


def from_folder(folder: Path, *, allow_pickle: bool = False, **trust: Any) -> Repository:
    """Every package in ``folder``: ``folder/<package>/`` or ``folder/<name>/<version>/``.

    Links are not followed, so a repository cannot pull in packages from elsewhere.
    """
    if not folder.is_dir():
        raise UsageError(f"repository {folder} is not a folder")
    found = []
    for child in sorted(folder.iterdir()):
        if child.is_symlink() or not child.is_dir():
            continue
        if (child / "tiffin.json").is_file():
            found.append(child)
            continue
        found += sorted(
            p
            for p in child.iterdir()
            if not p.is_symlink() and p.is_dir() and (p / "tiffin.json").is_file()
        )
    if not found:
        raise UsageError(
            f"no packages in {folder}", fix="put package folders (with tiffin.json) in it"
        )
    return from_paths(found, allow_pickle=allow_pickle, **trust)
