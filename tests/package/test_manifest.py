from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tiffin
from tiffin.package.manifest import (
    FileEntry,
    Manifest,
    canonical_json,
    is_safe_relpath,
    validate_name,
    validate_version,
)

SCHEMA = json.loads((Path(tiffin.__file__).parent / "package" / "manifest.schema.json").read_text())


def _manifest(**over: object) -> Manifest:
    base: dict = dict(
        name="fraud",
        version="1.2.0",
        runtime={"flavor": "sklearn", "options": {}},
        files=(FileEntry("schema.json", 3, "a" * 64, "schema"),),
    )
    base.update(over)
    return Manifest(**base).seal()  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["fraud", "a", "fraud-detector.v2", "x_1"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Fraud", "-x", "x-", "a/b", "../x", "a b", "x" * 200, None, "fraud\n"]
)
def test_invalid_names(name: object) -> None:
    with pytest.raises(tiffin.ManifestError, match="invalid package name"):
        validate_name(name)


@pytest.mark.parametrize("version", ["1.2.0", "2024.01.05", "1.0.0+cpu", "v3", "1.0rc1"])
def test_valid_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["latest", "LATEST", "stable", "main"])
def test_moving_tags_refused(version: str) -> None:
    with pytest.raises(tiffin.ManifestError, match="moving tag"):
        validate_version(version)


@pytest.mark.parametrize("version", ["", "   ", None])
def test_empty_version_refused(version: object) -> None:
    with pytest.raises(tiffin.ManifestError, match="empty"):
        validate_version(version)


@pytest.mark.parametrize("version", ["abc", "1.0/2", "../1", "1 0", "1.0 ", "1.0\n"])
def test_malformed_versions_refused(version: str) -> None:
    with pytest.raises(tiffin.ManifestError, match="invalid package version"):
        validate_version(version)


def test_digest_is_stable_and_covers_every_field() -> None:
    m = _manifest()
    assert m.digest == _manifest().digest
    assert m.digest is not None and m.digest.startswith("sha256:")
    assert _manifest(version="1.2.1").digest != m.digest
    assert _manifest(metadata={"license": "MIT"}).digest != m.digest
    changed = (FileEntry("schema.json", 3, "b" * 64, "schema"),)
    assert _manifest(files=changed).digest != m.digest


def test_round_trip_and_schema() -> None:
    m = _manifest(metadata={"description": "d", "metrics": {"auc": 0.9}})
    again = Manifest.from_bytes(m.to_bytes())
    assert again == m
    assert again.compute_digest() == m.digest
    jsonschema.validate(json.loads(m.to_bytes()), SCHEMA)


def test_packed_manifest_matches_schema(packed_iris: Path) -> None:
    data = json.loads((packed_iris / "tiffin.json").read_bytes())
    jsonschema.validate(data, SCHEMA)
    assert data["format_version"] == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(extra=1), "unknown manifest field"),
        (lambda d: d.update(format_version=99), "unsupported package format version 99"),
        (lambda d: d.update(format_version="1"), "format_version"),
        (lambda d: d.update(name="Bad Name"), "invalid package name"),
        (lambda d: d.update(version="latest"), "moving tag"),
        (lambda d: d.update(runtime=[]), "runtime"),
        (lambda d: d["files"][0].update(path="../etc/passwd"), "unsafe or invalid file path"),
        (lambda d: d["files"][0].update(path="/etc/passwd"), "unsafe or invalid file path"),
        (lambda d: d["files"][0].update(sha256="xyz"), "invalid sha256"),
        (lambda d: d["files"][0].update(sha256="a" * 64 + "\n"), "invalid sha256"),
        (lambda d: d.update(digest="sha256:" + "a" * 64 + "\n"), "digest"),
        (lambda d: d.update(version="1.2.0\n"), "invalid package version"),
        (lambda d: d["files"][0].update(size=-1), "invalid size"),
        (lambda d: d["files"][0].update(layer="weights"), "unknown layer"),
        (lambda d: d["files"].append(dict(d["files"][0])), "listed twice"),
        (lambda d: d.update(digest="md5:abc"), "digest"),
    ],
)
def test_bad_manifests_are_named(mutate: object, message: str) -> None:
    data = json.loads(_manifest().to_bytes())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(tiffin.ManifestError, match=message):
        Manifest.from_bytes(json.dumps(data).encode())


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"\xff\xfe", b'{"a": NaN}', b"[" * 100_000])
def test_garbage_manifests(raw: bytes) -> None:
    with pytest.raises(tiffin.ManifestError):
        Manifest.from_bytes(raw)


@pytest.mark.parametrize("path", ["a", "a/b.txt", "code/x.py"])
def test_safe_relpaths(path: str) -> None:
    assert is_safe_relpath(path)


@pytest.mark.parametrize("path", ["", "/a", "a/../b", "./a", "a//b", "a\\b", "..", "a/\x00"])
def test_unsafe_relpaths(path: str) -> None:
    assert not is_safe_relpath(path)


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=5))
def test_metadata_round_trips(meta: dict) -> None:
    m = _manifest(metadata=meta)
    assert Manifest.from_bytes(m.to_bytes()) == m
    assert canonical_json(m.body()) == canonical_json(Manifest.from_bytes(m.to_bytes()).body())
