"""Build a package's environment from its lock, into a content-addressed cache.

The cache lives in ``$TIFFIN_CACHE_DIR/envs`` (default ``~/.cache/tiffin/envs``, or
``$XDG_CACHE_HOME/tiffin/envs``). The key is the sha256 of the lock, the Python version
and the tiffin runtime's own sources, so every package with the same lock shares one
environment and the second build is a lookup (a folder with a ``.tiffin-ready`` mark).

A build runs ``uv venv`` + ``uv pip sync --require-hashes`` (no hashes only for a lock
marked unhashed) in a temporary folder beside the cache entry, under an exclusive file
lock on the key, and is renamed into place: two processes building the same environment
at once end with one good environment, the second waiting and then finding it ready; a
killed build leaves only a temporary folder, removed by the next builder. The tiffin
runtime goes in as its pure-Python sources (standard library + NumPy, which every lock
pins); no packing or serving dependencies are installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform as _platform
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import EnvironmentBuildError, PackageNotFoundError
from ..package import layout
from ..package.open import open_package
from .lock import (
    UNHASHED_HEADER,
    accelerator_indexes,
    pins_of,
    pip_index_args,
    uv_binary,
    uv_platform,
)

READY = ".tiffin-ready"
_TMP = ".tmp-"


def cache_root() -> Path:
    """Where environments are cached: ``$TIFFIN_CACHE_DIR/envs`` or ``~/.cache/tiffin/envs``."""
    base = os.environ.get("TIFFIN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tiffin"
    )
    # Absolute: the environment's Python is run from other working folders.
    return Path(base).expanduser().absolute() / "envs"


def _runtime_source() -> Path:
    return Path(__file__).resolve().parent.parent


def _runtime_digest() -> str:
    """Digest of the tiffin sources that go into every environment."""
    src = _runtime_source()
    h = hashlib.sha256()
    for path in sorted(src.rglob("*.py")):
        h.update(path.relative_to(src).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def env_key(lock_text: str, python: str) -> str:
    """The cache key of an environment: lock, Python version, tiffin runtime."""
    h = hashlib.sha256()
    for part in (lock_text, python, _runtime_digest()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def python_of(env: Path) -> Path:
    """The interpreter of the environment folder ``env``."""
    return env / "bin" / "python"


def _run(argv: list[str], what: str, fix: str | None = None) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise EnvironmentBuildError(
            f"{what} did not finish within 1800 s",
            fix="check that the package index is reachable, then build again",
        ) from None
    if proc.returncode != 0:
        raise EnvironmentBuildError(
            f"{what} failed: {proc.stderr.strip()[-2000:]}",
            fix=fix
            or "check that every pin in env/requirements.lock exists for this platform and "
            "that its index is reachable (pip's find-links and index URLs are passed to uv)",
        )


def _this_platform() -> str:
    return f"{sys.platform}/{_platform.machine()}".lower()


def _same_platform(target: str) -> bool:
    return uv_platform(target.lower()) == uv_platform(_this_platform())


def ensure_environment(package: str | os.PathLike[str]) -> Path:
    """The Python of the package's environment, built from its lock if not cached.

    Verifies the package first. Example::

        python = ensure_environment("fraud-1.2.0")   # ~/.cache/tiffin/envs/<key>/bin/python
    """
    opened = open_package(package, require_signed=False)  # the caller applies the policy
    root, env = opened.root, opened.manifest.environment
    target = str(env.get("platform") or _this_platform())
    if not _same_platform(target):
        raise EnvironmentBuildError(
            f"the package's lock is for {target}, and this machine is {_this_platform()}",
            where=str(root / layout.LOCK),
            fix="build it on a machine of that platform, lock it for this one with "
            "`tiffin env lock PKG --platform ...`, or use --env current",
        )
    python = str(env.get("python") or f"{sys.version_info.major}.{sys.version_info.minor}")
    lock_path = root / layout.LOCK
    if lock_path.is_file():
        text = lock_path.read_text(encoding="utf-8")
        hashed = bool((env.get("lock") or {}).get("hashed")) and not text.startswith(
            UNHASHED_HEADER
        )
        return build_environment(text, python=python, hashed=hashed)
    reqs = root / layout.REQUIREMENTS
    if not reqs.is_file():
        raise PackageNotFoundError(
            f"{root} has neither {layout.LOCK} nor {layout.REQUIREMENTS}",
            fix="pack it again with the environment capture on (TIFFIN_ENV_CAPTURE unset)",
        )
    sys.stderr.write(
        f"tiffin: warning: {root} has no lock (packed with TIFFIN_ENV_CAPTURE=off); "
        "resolving its requirements.txt now, without hashes\n"
    )
    return build_environment(
        reqs.read_text(encoding="utf-8"), python=python, hashed=False, resolve=True
    )


# A live builder finishes or fails within uv's own timeout (1,800 s); one that holds the
# lock longer is stuck (stopped, or hung on a network mount), so waiting on is pointless.
LOCK_WAIT = 2_000.0


def _wait_for_lock(fh: Any, path: Path) -> None:
    """Take the build lock, or fail clearly once ``LOCK_WAIT`` seconds have passed."""
    deadline = time.monotonic() + LOCK_WAIT
    said = False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise EnvironmentBuildError(
                    f"another process has been building this environment for over "
                    f"{LOCK_WAIT:.0f} s and still holds {path}",
                    where=str(path),
                    fix="stop the stuck `tiffin` process that holds it (`fuser` names it), then retry",
                ) from None
            if not said and sys.stderr.isatty():
                sys.stderr.write("tiffin: waiting for another process building this environment\n")
                said = True
            time.sleep(0.1)


def build_environment(
    lock_text: str, *, python: str, hashed: bool = True, resolve: bool = False
) -> Path:
    """Build (or find) the environment for ``lock_text``; returns its Python.

    ``resolve=True`` treats the text as requirements to resolve (``uv pip install``)
    rather than a complete lock to sync. A cached environment whose files no longer
    match what its build left (a file deleted, truncated or added since) is built again.
    """
    cache = cache_root()
    key = env_key(lock_text + ("\0resolve" if resolve else ""), python)
    final = cache / key
    if _damage(final) is None:
        return python_of(final)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / f"{key}.lock", "w") as lock_fh:
            _wait_for_lock(lock_fh, cache / f"{key}.lock")  # a concurrent builder waits here
            damage = _damage(final)
            if damage is None:
                return python_of(final)
            if (final / READY).is_file():
                sys.stderr.write(
                    f"tiffin: warning: the cached environment {final} was changed since it was "
                    f"built ({damage}); building it again\n"
                )
            # Under the lock, anything left for this key is from a builder that died.
            shutil.rmtree(final, ignore_errors=True)
            for stale in cache.glob(f".{key}{_TMP}*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = cache / f".{key}{_TMP}{os.getpid()}"
            if sys.stderr.isatty():
                sys.stderr.write(f"tiffin: building environment {key} (first use of this lock)\n")
            started = time.perf_counter()
            try:
                _create(tmp, lock_text, python=python, hashed=hashed, resolve=resolve)
                mark: dict[str, object] = {
                    "seconds": round(time.perf_counter() - started, 3),
                    "python": python,
                    "files": _file_sizes(tmp),
                }
                (tmp / READY).write_text(json.dumps(mark))
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except OSError as exc:
        raise EnvironmentBuildError(
            f"cannot write the environment cache at {cache}: {exc.strerror or exc}",
            where=str(exc.filename or cache),
            fix="set TIFFIN_CACHE_DIR to a writable folder with free space (`tiffin env path` "
            "shows the one in use)",
        ) from exc
    return python_of(final)


def _file_sizes(env: Path) -> dict[str, int]:
    """Every file of an environment and its size (links as -1), bytecode caches aside."""
    sizes: dict[str, int] = {}
    for folder, subfolders, names in os.walk(env):
        subfolders[:] = [d for d in subfolders if d != "__pycache__"]
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, env)
            if rel == READY or name.endswith(".pyc"):
                continue
            st = os.lstat(path)
            sizes[rel] = -1 if stat.S_ISLNK(st.st_mode) else st.st_size
    return sizes


def _damage(env: Path) -> str | None:
    """None when ``env`` is a finished build whose files are as it left them, else why not.

    Sizes, not digests: a stat of every file takes milliseconds (a scikit-learn
    environment has about 4,000), so a cache hit stays instant and still notices a
    deleted, truncated or added file. Same-size edits are left to ``tiffin verify``,
    which replays the examples there.
    """
    try:
        mark = json.loads((env / READY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "not built"
    recorded = mark.get("files") if isinstance(mark, dict) else None
    if not isinstance(recorded, dict):
        return "built by an older tiffin, without a file list"
    if not python_of(env).exists():
        return f"its interpreter {python_of(env)} is gone"
    try:
        found = _file_sizes(env)
    except OSError as exc:
        return f"unreadable: {exc}"
    for rel, size in recorded.items():
        if rel not in found:
            return f"{rel} is missing"
        if found[rel] != size:
            return f"{rel} changed size"
    extra = sorted(found.keys() - recorded.keys())
    if extra:
        return f"{extra[0]} was added"
    return None


def _create(tmp: Path, lock_text: str, *, python: str, hashed: bool, resolve: bool) -> None:
    uv = uv_binary()
    _run(
        [uv, "venv", "--quiet", "--relocatable", "--no-python-downloads", "--python", python,
         str(tmp)],
        f"creating a Python {python} virtual environment",
        fix=f"install Python {python} (`uv python install {python}`), or lock the package for "
        "a Python installed here: `tiffin env lock PKG --python X.Y`",
    )  # fmt: skip
    lock_file = tmp / "requirements.lock"
    lock_file.write_text(lock_text, encoding="utf-8")
    try:
        _run(
            _install_argv(uv, tmp, lock_file, hashed, resolve), "installing the locked requirements"
        )
    except EnvironmentBuildError:
        # A local-label pin (torch==2.13.0+cpu) lives on its accelerator's index, which
        # the machine that locked it may have had as a local wheel folder: retry there.
        extra = accelerator_indexes(pins_of(lock_text))
        if not extra:
            raise
        argv = _install_argv(uv, tmp, lock_file, hashed, resolve, extra)
        _run(argv, "installing the locked requirements")
    _install_runtime(tmp)


def _install_argv(
    uv: str, env: Path, lock_file: Path, hashed: bool, resolve: bool, extra: Sequence[str] = ()
) -> list[str]:
    """``uv pip sync`` (or ``install -r`` to resolve) of ``lock_file`` into ``env``."""
    verb = ["install"] if resolve else ["sync"]
    argv = [uv, "pip", *verb, "--quiet", "--python", str(python_of(env))]
    argv += pip_index_args(extra_indexes=extra)
    if hashed:
        argv.append("--require-hashes")
    return [*argv, *(["-r"] if resolve else []), str(lock_file)]


def _install_runtime(env: Path) -> None:
    """Copy the running tiffin's sources into the environment (no extras, no deps)."""
    site = subprocess.run(
        [str(python_of(env)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    shutil.copytree(
        _runtime_source(),
        Path(site) / "tiffin",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
