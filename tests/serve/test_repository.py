"""Which packages a server holds: paths, repository folders, versions, safe lookups."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tiffin.errors import UsageError
from tiffin.serve.repository import Repository, from_folder, from_paths


def test_flat_and_name_version_layouts(packages: dict[str, Path], tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for key in ("iris", "iris2"):
        shutil.copytree(packages[key], flat / packages[key].name)
    repo = from_folder(flat)
    assert sorted(repo.models) == [("iris", "1"), ("iris", "2")]
    nested = tmp_path / "nested"
    shutil.copytree(packages["iris"], nested / "iris" / "1")
    shutil.copytree(packages["iris2"], nested / "iris" / "2")
    (nested / "notes.txt").write_text("not a package")
    (nested / "empty").mkdir()
    assert sorted(from_folder(nested).models) == [("iris", "1"), ("iris", "2")]


def test_links_are_not_followed(packages: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "iris").symlink_to(packages["iris"])
    (tmp_path / "elsewhere").symlink_to(packages["root"])
    with pytest.raises(UsageError, match="no packages"):
        from_folder(tmp_path)


def test_newest_version_answers_unversioned_lookups(packages: dict[str, Path]) -> None:
    repo = from_paths([packages["iris"], packages["iris2"]])
    best = repo.get("iris")
    assert best is not None and best.version == "2"
    assert repo.get("iris", "1") is not None
    assert repo.get("iris", "3") is None
    for name in ("../iris", "iris/../iris", "%2e%2e", "", "IRIS"):
        assert repo.get(name) is None
    with pytest.raises(UsageError, match="given twice"):
        repo.add(best)


def test_version_order_is_numeric() -> None:
    from tiffin.serve.repository import version_key

    assert sorted(["1.9", "1.10", "1.2", "10", "2"], key=version_key) == ["1.2", "1.9", "1.10", "2", "10"]  # fmt: skip


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        from_folder(tmp_path / "nope")
    assert len(Repository()) == 0
