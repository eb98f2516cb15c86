"""File digests and the check that a package folder is exactly what its manifest says.

Runs before anything in the package is deserialized (DESIGN principle 2).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import IntegrityError, ManifestError, PackageNotFoundError
from .layout import MANIFEST, UNINDEXED, layer_of
from .manifest import FileEntry, Manifest

_CHUNK = 1 << 20
# A manifest is small; refusing a huge one keeps a hostile package from eating memory.
MAX_MANIFEST_BYTES = 16 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def walk_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as a sorted relative POSIX path.

    Uses lstat only, so nothing is followed: a symlink, hard link, device, FIFO, socket
    or setuid/setgid file anywhere in the tree is an IntegrityError naming it.
    """
    found: list[str] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                full = Path(entry.path)
                rel = full.relative_to(root).as_posix()
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    raise IntegrityError(
                        f"{rel} is a symbolic link; packages hold only regular files",
                        where=str(root),
                        fix="remove the link; a package must not point outside itself",
                    )
                if stat.S_ISDIR(st.st_mode):
                    stack.append(full)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    raise IntegrityError(
                        f"{rel} is not a regular file (device, FIFO or socket)",
                        where=str(root),
                        fix="remove it from the package folder",
                    )
                if st.st_nlink > 1:
                    raise IntegrityError(
                        f"{rel} is a hard link shared with another file",
                        where=str(root),
                        fix="replace the link with a copy of the file",
                    )
                if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    raise IntegrityError(
                        f"{rel} has the setuid or setgid bit", where=str(root), fix="chmod u-s,g-s"
                    )
                found.append(rel)
    return sorted(found)


def index_files(root: Path) -> tuple[FileEntry, ...]:
    """Hash every file of a package folder (except the manifest and signature)."""
    entries = []
    for rel in walk_files(root):
        if rel in UNINDEXED:
            continue
        full = root / rel
        entries.append(
            FileEntry(
                path=rel, size=full.stat().st_size, sha256=sha256_file(full), layer=layer_of(rel)
            )
        )
    return tuple(entries)


def read_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``tiffin.json`` of the package at ``root`` (no file checks)."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise PackageNotFoundError(
            f"no package folder at {root}",
            fix="give the folder that `tiffin pack` wrote (it holds tiffin.json)",
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise PackageNotFoundError(
            f"{root} is not a tiffin package: {MANIFEST} is missing",
            fix="give the folder that `tiffin pack` wrote",
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise IntegrityError(f"{MANIFEST} is not a regular file", where=str(root))
    if st.st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{MANIFEST} is {st.st_size} bytes, over the limit", where=str(path))
    return Manifest.from_bytes(path.read_bytes(), where=str(path))


def verify_tree(root: str | os.PathLike[str], manifest: Manifest | None = None) -> Manifest:
    """Check that the folder holds exactly the files its manifest lists, byte for byte.

    Returns the manifest. Raises IntegrityError naming the first changed, missing, extra
    or linked file, and when the manifest's own digest does not match its body.
    """
    root = Path(root)
    if manifest is None:
        manifest = read_manifest(root)
    if manifest.digest is None or manifest.compute_digest() != manifest.digest:
        raise IntegrityError(
            f"{MANIFEST} was changed after sealing: its digest does not match its content",
            where=str(root / MANIFEST),
            fix="do not edit a sealed package; pack it again",
        )
    expected = manifest.file_map()
    present = [rel for rel in walk_files(root) if rel not in UNINDEXED]
    extra = sorted(set(present) - set(expected))
    if extra:
        raise IntegrityError(
            f"{extra[0]} is not listed in the manifest (extra file)",
            where=str(root),
            fix="remove files added after packing, or pack again",
        )
    missing = sorted(set(expected) - set(present))
    if missing:
        raise IntegrityError(
            f"{missing[0]} is listed in the manifest but missing",
            where=str(root),
            fix="the package is incomplete; fetch a complete copy or pack again",
        )
    for rel in sorted(expected):
        entry = expected[rel]
        if entry.layer != layer_of(rel):
            # layers are shipped and cached on their own (OCI), so a file filed under
            # the wrong one would travel or be trusted as something it is not
            raise IntegrityError(
                f"{rel} is listed in the {entry.layer} layer, but belongs to {layer_of(rel)}",
                where=str(root / MANIFEST),
                fix="the manifest was edited by hand; pack the package again",
            )
        full = root / rel
        if full.stat().st_size != entry.size or sha256_file(full) != entry.sha256:
            raise IntegrityError(
                f"{rel} was changed: its sha256 does not match the manifest",
                where=str(root),
                fix="the file was tampered with or damaged; fetch a good copy or pack again",
            )
    return manifest
