"""``open_package``: archive, then integrity, then signing policy; errors name what the user gave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tiffin
from tiffin.errors import ArchiveError, IntegrityError, PackageNotFoundError, SigningError
from tiffin.package.archive import archive
from tiffin.package.open import open_package


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return tiffin.keygen(tmp_path / "release")


def test_a_folder_opens_as_itself(packed_iris: Path) -> None:
    opened = open_package(packed_iris)
    assert opened.root == opened.source == packed_iris and not opened.from_archive
    assert opened.manifest.digest == json.loads((packed_iris / "tiffin.json").read_text())["digest"]


def test_an_archive_opens_into_a_private_folder(packed_iris: Path, tmp_path: Path) -> None:
    file = archive(packed_iris, tmp_path / "iris.tiffin")
    opened = open_package(file)
    assert opened.from_archive and opened.source == file and opened.root.is_dir()
    assert opened.root != packed_iris and tmp_path not in opened.root.parents
    assert opened.manifest.digest == open_package(packed_iris).manifest.digest
    assert (opened.root / "tiffin.json").read_bytes() == (packed_iris / "tiffin.json").read_bytes()


def test_nothing_there_and_no_archive(tmp_path: Path) -> None:
    with pytest.raises(PackageNotFoundError):
        open_package(tmp_path / "nope")
    (tmp_path / "junk.tiffin").write_text("not an archive")
    with pytest.raises(ArchiveError, match="not a tiffin archive"):
        open_package(tmp_path / "junk.tiffin")


def test_integrity_comes_before_the_signing_policy(
    packed_iris: Path, keys: tuple[Path, Path]
) -> None:
    """A changed file in a signed package is an integrity error, not a signature story:
    the policy is only asked about bytes that were checked."""
    private, public = keys
    tiffin.sign(packed_iris, private)
    assert open_package(packed_iris, trusted_keys=[public], require_signed=True)
    (packed_iris / "README.md").write_text("changed")
    for policy in ({"require_signed": True}, {"trusted_keys": [public]}, {}):
        with pytest.raises(IntegrityError, match="README.md"):
            open_package(packed_iris, **policy)  # type: ignore[arg-type]


def test_the_signing_policy(
    packed_iris: Path, keys: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = keys
    monkeypatch.delenv("TIFFIN_REQUIRE_SIGNED", raising=False)
    assert open_package(packed_iris).root == packed_iris  # no keys, no demand: not checked
    with pytest.raises(SigningError, match="not signed"):
        open_package(packed_iris, require_signed=True)
    with pytest.raises(SigningError, match="not signed"):
        open_package(packed_iris, trusted_keys=[public])  # a key given always checks
    monkeypatch.setenv("TIFFIN_REQUIRE_SIGNED", "1")
    with pytest.raises(SigningError, match="not signed"):
        open_package(packed_iris)
    assert open_package(packed_iris, require_signed=False).root == packed_iris  # the caller wins
    tiffin.sign(packed_iris, private)
    assert open_package(packed_iris, trusted_keys=public).root == packed_iris  # one key alone
    _, other = tiffin.keygen(tmp_path / "other")
    with pytest.raises(SigningError):
        open_package(packed_iris, trusted_keys=[other])


def test_errors_name_the_archive_not_its_extraction(
    packed_iris: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    file = archive(packed_iris, tmp_path / "iris.tiffin")
    with pytest.raises(SigningError) as info:
        open_package(file, require_signed=True)
    assert info.value.where == f"archive {file}"
    assert str(file) in str(info.value) and "tiffin-archive-" not in str(info.value)

    opened = open_package(file)
    with pytest.raises(IntegrityError) as caught, opened.errors_named_by_source():
        raise IntegrityError("changed", where=str(opened.root / "artifacts" / "model.skops"))
    assert caught.value.where == f"archive {file}: artifacts/model.skops"
    assert f"archive {file}: artifacts/model.skops" in str(caught.value)
    # a folder's errors, and errors about somewhere else, keep their own place
    with (
        pytest.raises(IntegrityError) as caught,
        open_package(packed_iris).errors_named_by_source(),
    ):
        raise IntegrityError("changed", where=str(packed_iris / "schema.json"))
    assert caught.value.where == str(packed_iris / "schema.json")
    with pytest.raises(IntegrityError) as caught, opened.errors_named_by_source():
        raise IntegrityError("changed", where="/elsewhere")
    assert caught.value.where == "/elsewhere"
