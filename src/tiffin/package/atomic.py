"""Writing a package folder atomically: a temporary folder beside the target, fsync, rename.

A crash at any point leaves the old package or the complete new one. Temporary folders
carry the writer's PID, so the next writer removes those whose writer is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConflictError, TiffinError

TMP_MARK = ".tiffin-tmp-"
_OLD = "old-"  # the old package, moved aside by the rename fallback of publish
_RENAME_EXCHANGE = 2


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: Path, name: str) -> list[Path]:
    """Remove temporary folders of ``name`` left by writers that no longer run.

    One exception: where the rename fallback of :func:`publish` died between moving the
    old package aside and moving the new one in, the destination is missing and the
    aside folder is the old package, whole; it is moved back, not deleted.
    """
    removed: list[Path] = []
    prefix = f".{name}{TMP_MARK}"
    if not parent.is_dir():
        return removed
    dest = parent / name
    for entry in sorted(parent.iterdir()):
        if not entry.name.startswith(prefix):
            continue
        pid_text, _, rest = entry.name[len(prefix) :].partition("-")
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            if rest.startswith(_OLD) and not (dest.exists() or dest.is_symlink()):
                os.rename(entry, dest)
                fsync_dir(parent)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def destination_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on writing ``dest``; a second writer gets ConflictError."""
    lock_path = dest.parent / f".{dest.name}.tiffin-lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"another process is writing {dest}",
                fix="wait for it to finish, or write to another destination",
            ) from None
        yield
    finally:
        os.close(fd)


def make_temp_dir(dest: Path) -> Path:
    tmp = dest.parent / f".{dest.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    return tmp


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (and root itself)."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(tmp: Path, dest: Path, *, replace: bool) -> None:
    """Move the finished temporary folder to ``dest`` in one atomic step."""
    fsync_tree(tmp)
    if dest.exists() or dest.is_symlink():
        if not replace:
            raise ConflictError(
                f"{dest} already exists", fix="choose another destination or pass force=True"
            )
        if not dest.is_dir() or dest.is_symlink():
            raise ConflictError(
                f"{dest} exists and is not a package folder; refusing to replace it"
            )
        if _exchange(tmp, dest):
            # tmp now holds the old package; it is garbage from here on.
            fsync_dir(dest.parent)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = dest.parent / f".{dest.name}{TMP_MARK}{os.getpid()}-{_OLD}{secrets.token_hex(4)}"
        os.rename(dest, old)
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise ConflictError(f"{dest} appeared while packing") from None
        raise
    fsync_dir(dest.parent)


def disk_error(exc: OSError, dest: Path) -> TiffinError:
    if exc.errno == errno.ENOSPC:
        return TiffinError(
            f"the disk is full while writing {dest}; nothing was written",
            fix="free space on that disk or write elsewhere",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TiffinError(
            f"cannot write {dest}: {exc.strerror}", fix="check the folder's permissions"
        )
    return TiffinError(f"writing {dest} failed: {exc}")
