"""One-file packages: ``tiffin archive`` writes a reproducible tar (optionally zstd), and
``tiffin unpack`` / ``tiffin.load("x.tiffin")`` read one back, refusing anything hostile.

Writing: entries sorted, times, owners and modes fixed, so the same package gives the
same archive bytes. Reading: only regular files with plain relative names (no ``..``,
no absolute paths, no links, devices or setuid bits, no duplicates), only into a new
empty folder, and at most ``max_bytes`` of decompressed data is ever read, so a zstd or
tar bomb stops at the cap. The result is then verified like any package folder.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

from ..errors import ArchiveError, ConflictError, UsageError
from .integrity import verify_tree, walk_files
from .manifest import is_safe_relpath

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_MAX_BYTES = int(os.environ.get("TIFFIN_ARCHIVE_MAX_BYTES", str(16 << 30)))
MAX_ENTRIES = 100_000
# Folders nested deeper than this are refused: a real package is a few levels deep, and
# tools that walk a tree recursively (shutil.rmtree among them) die of RecursionError
# on a tree a few thousand levels deep, which would leave a refused archive on disk.
MAX_DEPTH = 64
# tarfile reads a pax or GNU long-name header whole into memory: a tiny zstd file could
# declare one of gigabytes. Real ones hold a path or two.
MAX_HEADER_BYTES = 1 << 20
_HEADER_TYPES = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
    | {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)


class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses an extended header too large to be a real one, before tarfile reads it."""

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise ArchiveError(
                f"an extended tar header declares {self.size:,} bytes; refused",
                fix="this is not an archive tiffin wrote; do not use it",
            )
        return super()._proc_member(tarfile)  # type: ignore[misc,no-any-return]


def archive(
    package: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    compression: str | None = "zstd",
    force: bool = False,
) -> Path:
    """Write the (verified) package folder as one reproducible archive file."""
    root = Path(package)
    verify_tree(root)
    out = Path(out)
    if out.resolve().is_relative_to(root.resolve()):
        raise UsageError(
            f"{out} is inside the package it archives", fix="write the archive elsewhere"
        )
    if out.exists() and not force:
        raise ConflictError(
            f"{out} already exists",
            fix="choose another name, or overwrite it with force=True (--force)",
        )
    if compression not in (None, "zstd"):
        raise UsageError(f"unknown compression {compression!r}", fix="use 'zstd' or None")
    # a fresh, exclusively created name: a link planted at a predictable temp name
    # would otherwise redirect the write to the file it points at
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            sink: Any = raw
            writer = None
            if compression == "zstd":
                import zstandard

                writer = zstandard.ZstdCompressor(level=10).stream_writer(raw, closefd=False)
                sink = writer
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel in walk_files(root):
                    info = tarfile.TarInfo(rel)
                    full = root / rel
                    info.size = full.stat().st_size
                    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = (
                        0o644,
                        0,
                        0,
                        0,
                        "",
                        "",
                    )
                    with open(full, "rb") as fh:
                        tar.addfile(info, fh)
            if writer is not None:
                writer.close()  # type: ignore[no-untyped-call]
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


class _Capped(io.RawIOBase):
    """A reader that fails once more than ``limit`` bytes have come through."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner, self.limit, self.count = inner, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.inner.read(len(buffer))
        except OSError:
            raise
        except Exception as exc:  # zstandard.ZstdError: corrupt compressed data
            raise ArchiveError(
                f"the archive's compressed data is damaged: {exc}",
                fix="fetch the archive again",
            ) from None
        self.count += len(data)
        if self.count > self.limit:
            raise ArchiveError(
                f"the archive expands past {self.limit:,} bytes; stopped reading",
                fix="raise max_bytes (TIFFIN_ARCHIVE_MAX_BYTES) only if you trust the archive",
            )
        buffer[: len(data)] = data
        return len(data)


def _open_stream(path: Path, max_bytes: int) -> tuple[Any, list[Any]]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through `closers`
    closers: list[Any] = [raw]
    head = raw.read(4)
    raw.seek(0)
    stream: Any = raw
    if head == ZSTD_MAGIC:
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        closers.insert(0, stream)
    return io.BufferedReader(_Capped(stream, max_bytes), buffer_size=1 << 16), closers


def _make_parents(dest: Path, name: str) -> Path:
    """Create the folders above ``name`` one by one (``Path.mkdir(parents=True)``
    recurses once per level, so a path of a few thousand ``a/`` dies of RecursionError)."""
    folder = dest
    for part in name.split("/")[:-1]:
        folder = folder / part
        if not folder.is_dir():
            folder.mkdir()
    return folder / name.rsplit("/", 1)[-1]


def _extract(path: Path, dest: Path, max_bytes: int) -> None:
    """Extract into ``dest`` (an existing empty folder), refusing hostile entries."""
    stream, closers = _open_stream(path, max_bytes)
    seen: set[str] = set()
    declared = 0
    try:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|", tarinfo=_GuardedTarInfo)  # noqa: SIM115
        except tarfile.TarError as exc:
            raise ArchiveError(f"{path} is not a tiffin archive: {exc}") from None
        with tar:
            for count, member in enumerate(tar, 1):
                name = member.name
                if count > MAX_ENTRIES:
                    raise ArchiveError(f"more than {MAX_ENTRIES} entries", where=str(path))
                if not is_safe_relpath(name):
                    raise ArchiveError(f"entry {name!r} has an unsafe path", where=str(path))
                if name.count("/") >= MAX_DEPTH:
                    raise ArchiveError(
                        f"entry {name[:60]!r}... is nested more than {MAX_DEPTH} folders deep",
                        where=str(path),
                    )
                if name in seen:
                    raise ArchiveError(f"entry {name!r} appears twice", where=str(path))
                seen.add(name)
                if member.issym() or member.islnk():
                    raise ArchiveError(f"entry {name!r} is a link", where=str(path))
                if member.isdir():
                    continue
                if not member.isreg():
                    raise ArchiveError(
                        f"entry {name!r} is a device, FIFO or other special file", where=str(path)
                    )
                if member.mode & (stat.S_ISUID | stat.S_ISGID):
                    raise ArchiveError(
                        f"entry {name!r} has the setuid or setgid bit", where=str(path)
                    )
                if member.issparse():
                    # a sparse entry's holes are written as zeros that were never read,
                    # so a few bytes of archive could fill the disk past the byte cap
                    raise ArchiveError(
                        f"entry {name!r} is a sparse file; tiffin archives hold none",
                        where=str(path),
                    )
                declared += member.size
                if declared > max_bytes:
                    raise ArchiveError(
                        f"entry {name!r} takes the archive past {max_bytes:,} bytes; refused",
                        where=str(path),
                        fix="raise max_bytes (TIFFIN_ARCHIVE_MAX_BYTES) only if you trust it",
                    )
                target = _make_parents(dest, name)
                src = tar.extractfile(member)
                assert src is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except tarfile.TarError as exc:
        raise ArchiveError(f"{path} is damaged: {exc}") from None
    except OSError as exc:
        raise ArchiveError(f"{path} could not be read: {exc}") from None
    finally:
        for c in closers:
            c.close()


def unpack(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Unpack an archive into ``dest``, which must not exist or be an empty folder."""
    src, dest = Path(path), Path(dest)
    if not src.is_file():
        raise UsageError(f"archive {src} does not exist")
    if dest.is_symlink():
        raise UsageError(
            f"{dest} is a symbolic link", fix="unpack into a new folder, not through a link"
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(
            f"{dest} exists and is not an empty folder", fix="unpack into a new folder"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        _extract(src, tmp, max_bytes)
        verify_tree(tmp)
        if dest.exists():
            dest.rmdir()
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def open_archive(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Extract an archive into a private temporary folder (removed at exit) for loading."""
    tmp = Path(tempfile.mkdtemp(prefix="tiffin-archive-"))
    try:
        _extract(Path(path), tmp, max_bytes)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atexit.register(shutil.rmtree, tmp, True)
    return tmp
