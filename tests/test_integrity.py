from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tiffin
from tiffin.integrity import verify_tree


def test_clean_package_verifies(packed_iris: Path) -> None:
    manifest = verify_tree(packed_iris)
    assert manifest.digest == tiffin.inspect(packed_iris).digest


@pytest.mark.parametrize(
    "relpath",
    [
        "artifacts/model.skops",
        "schema.json",
        "env/requirements.txt",
        "examples/input.json",
        "README.md",
    ],
)
def test_one_changed_byte_in_each_layer_is_caught(packed_iris: Path, relpath: str) -> None:
    target = packed_iris / relpath
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(tiffin.IntegrityError, match=relpath.replace(".", r"\.")):
        tiffin.load(packed_iris)


def test_changed_manifest_is_caught(packed_iris: Path) -> None:
    path = packed_iris / "tiffin.json"
    data = json.loads(path.read_bytes())
    data["metadata"]["description"] = "sneaky"
    path.write_text(json.dumps(data))
    with pytest.raises(tiffin.IntegrityError, match="tiffin.json was changed"):
        tiffin.load(packed_iris)


def test_manifest_listing_a_forged_hash_is_caught(packed_iris: Path) -> None:
    """Changing a file and its manifest entry still breaks the digest seal."""
    path = packed_iris / "tiffin.json"
    data = json.loads(path.read_bytes())
    (packed_iris / "schema.json").write_text("{}")
    for entry in data["files"]:
        if entry["path"] == "schema.json":
            entry["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(tiffin.IntegrityError):
        tiffin.load(packed_iris)


def test_missing_file(packed_iris: Path) -> None:
    (packed_iris / "examples" / "output.json").unlink()
    with pytest.raises(tiffin.IntegrityError, match="examples/output.json .*missing"):
        tiffin.load(packed_iris)


def test_extra_file(packed_iris: Path) -> None:
    (packed_iris / "code").mkdir()
    (packed_iris / "code" / "evil.py").write_text("import os\n")
    with pytest.raises(tiffin.IntegrityError, match="code/evil.py .*extra"):
        tiffin.load(packed_iris)


def test_symlinked_file(packed_iris: Path, tmp_path: Path) -> None:
    target = packed_iris / "schema.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(tiffin.IntegrityError, match="schema.json is a symbolic link"):
        tiffin.load(packed_iris)


def test_symlinked_folder(packed_iris: Path, tmp_path: Path) -> None:
    (packed_iris / "artifacts").rename(tmp_path / "artifacts")
    (packed_iris / "artifacts").symlink_to(tmp_path / "artifacts")
    with pytest.raises(tiffin.IntegrityError, match="artifacts is a symbolic link"):
        tiffin.load(packed_iris)


def test_hard_link(packed_iris: Path, tmp_path: Path) -> None:
    os.link(packed_iris / "schema.json", tmp_path / "other")
    with pytest.raises(tiffin.IntegrityError, match="hard link"):
        tiffin.load(packed_iris)


def test_fifo(packed_iris: Path) -> None:
    os.mkfifo(packed_iris / "examples" / "pipe")
    with pytest.raises(tiffin.IntegrityError, match="not a regular file"):
        tiffin.load(packed_iris)


def test_setuid(packed_iris: Path) -> None:
    os.chmod(packed_iris / "README.md", 0o4755)
    with pytest.raises(tiffin.IntegrityError, match="setuid"):
        tiffin.load(packed_iris)


def test_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(tiffin.PackageNotFoundError, match="tiffin.json is missing"):
        tiffin.load(tmp_path)
    with pytest.raises(tiffin.PackageNotFoundError, match="no package folder"):
        tiffin.load(tmp_path / "nope")


def test_nothing_deserialized_before_verification(packed_iris: Path) -> None:
    """A tampered artifact fails integrity even if skops would choke on it first."""
    (packed_iris / "artifacts" / "model.skops").write_bytes(b"not a zip at all")
    with pytest.raises(tiffin.IntegrityError, match="artifacts/model.skops was changed"):
        tiffin.load(packed_iris)
