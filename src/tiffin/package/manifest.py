"""The manifest (``tiffin.json``): canonical JSON, the file index and the package digest.

The package digest is the sha256 of the canonical manifest body: every field except
``digest`` itself, keys sorted, no insignificant whitespace. The body lists every file's
sha256, so the digest seals the whole package. Nothing volatile goes in: ``created``
is taken from SOURCE_DATE_EPOCH or left null, so packing twice gives the same digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ManifestError, TiffinError
from .layout import LAYERS, MANIFEST

FORMAT_VERSION = 1

# \Z, not $: "$" also matches before a trailing newline, which would let "1.0\n" through.
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?\Z")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}\Z")
_MOVING_TAGS = frozenset(
    {"latest", "stable", "main", "master", "head", "dev", "current", "nightly"}
)
_SHA_RE = re.compile(r"^[0-9a-f]{64}\Z")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")


def validate_name(name: object, error: type[TiffinError] = ManifestError) -> str:
    """Return ``name`` if it is a valid package name, else raise ``error``.

    ManifestError for a name read from tiffin.json; pack passes UsageError, since there
    the name is an argument.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise error(
            f"invalid package name {name!r}",
            where="name",
            fix="use 1-128 lowercase letters, digits, '.', '_' or '-', starting and ending "
            "with a letter or digit, e.g. 'fraud-detector'",
        )
    return name


def validate_version(version: object, error: type[TiffinError] = ManifestError) -> str:
    """Return ``version`` if it is a fixed version, else raise ``error``.

    Moving tags such as ``latest`` are refused: a version must name one build forever.
    """
    if not isinstance(version, str) or not version.strip():
        raise error(
            "the package version is empty",
            where="version",
            fix="give a fixed version such as '1.2.0'",
        )
    if version.lower() in _MOVING_TAGS:
        raise error(
            f"version {version!r} is a moving tag, not a version",
            where="version",
            fix="give a fixed version such as '1.2.0'; a package version must never move",
        )
    if not _VERSION_RE.match(version) or not any(c.isdigit() for c in version):
        raise error(
            f"invalid package version {version!r}",
            where="version",
            fix="use letters, digits, '.', '+', '_' or '-' with at least one digit, e.g. '1.2.0'",
        )
    return version


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def pretty_json(value: Any) -> bytes:
    """Deterministic, human-readable JSON bytes with a trailing newline."""
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def is_safe_relpath(path: str) -> bool:
    """True for a plain relative POSIX path that stays inside the package."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    parts = path.split("/")
    return all(part not in ("", ".", "..") for part in parts)


@dataclass(frozen=True)
class FileEntry:
    """One file of the package: its relative path, size, sha256 and layer."""

    path: str
    size: int
    sha256: str
    layer: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "layer": self.layer}


@dataclass(frozen=True)
class Manifest:
    """The metadata layer: identity, runtime, environment, provenance and file index."""

    name: str
    version: str
    runtime: dict[str, Any]
    files: tuple[FileEntry, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    format_version: int = FORMAT_VERSION
    digest: str | None = None

    @property
    def flavor(self) -> str:
        return str(self.runtime.get("flavor", ""))

    def body(self) -> dict[str, Any]:
        """Every field except the digest, as plain JSON values."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "metadata": self.metadata,
            "runtime": self.runtime,
            "environment": self.environment,
            "provenance": self.provenance,
            "files": [f.to_dict() for f in sorted(self.files, key=lambda f: f.path)],
        }

    def compute_digest(self) -> str:
        return "sha256:" + hashlib.sha256(canonical_json(self.body())).hexdigest()

    def seal(self) -> Manifest:
        """A copy with the digest computed from the body."""
        files = tuple(sorted(self.files, key=lambda f: f.path))
        sealed = replace(self, files=files, digest=None)
        return replace(sealed, digest=sealed.compute_digest())

    def to_dict(self) -> dict[str, Any]:
        data = self.body()
        data["digest"] = self.digest
        return data

    def to_bytes(self) -> bytes:
        return pretty_json(self.to_dict())

    def file_map(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = MANIFEST) -> Manifest:
        try:
            raw = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise ManifestError(
                f"the manifest is not valid JSON: {exc}",
                where=where,
                fix="the package is damaged; pack it again or fetch a good copy",
            ) from None
        return cls.from_dict(raw, where=where)

    @classmethod
    def from_dict(cls, raw: object, *, where: str = MANIFEST) -> Manifest:
        """Validate a decoded manifest by hand (the runtime needs no jsonschema)."""
        if not isinstance(raw, dict):
            raise ManifestError("the manifest must be a JSON object", where=where)
        known = {
            "format_version", "name", "version", "created", "metadata", "runtime",
            "environment", "provenance", "files", "digest",
        }  # fmt: skip
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ManifestError(
                f"unknown manifest field(s): {', '.join(map(str, unknown))}",
                where=where,
                fix="the package was written by a newer tiffin, or edited by hand; upgrade tiffin",
            )
        fv = raw.get("format_version")
        if type(fv) is not int:
            raise ManifestError("format_version is missing or not an integer", where=where)
        if fv > FORMAT_VERSION or fv < 1:
            raise ManifestError(
                f"unsupported package format version {fv} (this tiffin reads {FORMAT_VERSION})",
                where=where,
                fix="upgrade tiffin to read this package",
            )
        for key in ("metadata", "runtime", "environment", "provenance"):
            if not isinstance(raw.get(key), dict):
                raise ManifestError(f"field {key!r} must be an object", where=f"{where}: {key}")
        if not isinstance(raw["runtime"].get("flavor"), str):
            raise ManifestError("runtime.flavor must be a string", where=f"{where}: runtime")
        created = raw.get("created")
        if created is not None and not isinstance(created, str):
            raise ManifestError("created must be a string or null", where=f"{where}: created")
        digest = raw.get("digest")
        if digest is not None and not (isinstance(digest, str) and _DIGEST_RE.match(digest)):
            raise ManifestError("digest must look like 'sha256:<64 hex>'", where=f"{where}: digest")
        files_raw = raw.get("files")
        if not isinstance(files_raw, list):
            raise ManifestError("files must be a list", where=f"{where}: files")
        files: list[FileEntry] = []
        seen: set[str] = set()
        for i, entry in enumerate(files_raw):
            files.append(_file_entry(entry, f"{where}: files[{i}]"))
            if files[-1].path in seen:
                raise ManifestError(f"file {files[-1].path!r} is listed twice", where=where)
            seen.add(files[-1].path)
        try:
            name = validate_name(raw.get("name"))
            version = validate_version(raw.get("version"))
        except ManifestError as exc:
            raise ManifestError(exc.message, where=f"{where}: {exc.where}", fix=exc.fix) from None
        return cls(
            name=name,
            version=version,
            runtime=raw["runtime"],
            files=tuple(files),
            metadata=raw["metadata"],
            environment=raw["environment"],
            provenance=raw["provenance"],
            created=created,
            format_version=fv,
            digest=digest,
        )


def _file_entry(entry: object, where: str) -> FileEntry:
    if not isinstance(entry, dict) or set(entry) != {"path", "size", "sha256", "layer"}:
        raise ManifestError(
            "each file entry must have exactly path, size, sha256 and layer", where=where
        )
    path, size, sha, layer = entry["path"], entry["size"], entry["sha256"], entry["layer"]
    if not isinstance(path, str) or not is_safe_relpath(path) or path == MANIFEST:
        raise ManifestError(f"unsafe or invalid file path {path!r}", where=where)
    if type(size) is not int or size < 0:
        raise ManifestError(f"invalid size {size!r} for {path}", where=where)
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise ManifestError(f"invalid sha256 for {path}", where=where)
    if layer not in LAYERS:
        raise ManifestError(f"unknown layer {layer!r} for {path}", where=where)
    return FileEntry(path=path, size=size, sha256=sha, layer=layer)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a manifest")


class Described:
    """What a sealed package says about itself, for the classes that hold its manifest."""

    manifest: Manifest

    @property
    def digest(self) -> str:
        assert self.manifest.digest is not None  # a sealed manifest always has one
        return self.manifest.digest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def flavor(self) -> str:
        return self.manifest.flavor
