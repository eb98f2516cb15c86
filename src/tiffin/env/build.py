"""Build a package's environment from its lock, into a content-addressed cache.

The cache key is the sha256 of the lock, the Python version and the tiffin runtime's
own sources, so every package with the same lock shares one environment and the
second build is a lookup. Builds happen in a temporary folder beside the cache entry,
under a file lock, and are renamed into place: two processes building the same
environment at once end with one good environment. The tiffin runtime goes in as its
pure-Python sources (standard library + NumPy, which the lock always pins); no packing
or serving dependencies are installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .. import layout
from ..errors import EnvironmentBuildError, PackageNotFoundError
from ..integrity import verify_tree
from .lock import pip_index_args, uv_binary

READY = ".tiffin-ready"


def cache_root() -> Path:
    base = os.environ.get("TIFFIN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tiffin"
    )
    return Path(base) / "envs"


def _runtime_digest() -> str:
    """Digest of the tiffin sources that go into every environment."""
    src = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(src.rglob("*.py")):
        h.update(path.relative_to(src).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def env_key(lock_text: str, python: str) -> str:
    h = hashlib.sha256()
    for part in (lock_text, python, _runtime_digest()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _python_of(env: Path) -> Path:
    return env / "bin" / "python"


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise EnvironmentBuildError(f"{what} failed: {proc.stderr.strip()[-2000:]}")


def ensure_environment(package: str | os.PathLike[str]) -> Path:
    """The Python of the package's environment, built from its lock if not cached."""
    root = Path(package)
    manifest = verify_tree(root)
    lock_path = root / layout.LOCK
    if not lock_path.is_file():
        raise PackageNotFoundError(
            f"{root} has no {layout.LOCK}", fix="pack it again with the environment capture on"
        )
    lock_text = lock_path.read_text(encoding="utf-8")
    python = str(
        manifest.environment.get("python") or f"{sys.version_info.major}.{sys.version_info.minor}"
    )
    hashed = bool((manifest.environment.get("lock") or {}).get("hashed"))
    return build_environment(lock_text, python=python, hashed=hashed)


def build_environment(lock_text: str, *, python: str, hashed: bool) -> Path:
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    key = env_key(lock_text, python)
    final = cache / key
    if (final / READY).is_file():
        return _python_of(final)
    with open(cache / f"{key}.lock", "w") as lock_fh:
        fcntl.flock(lock_fh, fcntl.LOCK_EX)  # a concurrent builder of this key waits here
        if (final / READY).is_file():
            return _python_of(final)
        shutil.rmtree(final, ignore_errors=True)
        tmp = cache / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.perf_counter()
        try:
            uv = uv_binary()
            _run(
                [uv, "venv", "--quiet", "--python", python, str(tmp)],
                "creating the virtual environment",
            )
            lock_file = tmp / "requirements.lock"
            lock_file.write_text(lock_text, encoding="utf-8")
            sync = [
                uv,
                "pip",
                "sync",
                "--quiet",
                "--python",
                str(_python_of(tmp)),
                *pip_index_args(),
                str(lock_file),
            ]
            if hashed:
                sync.insert(4, "--require-hashes")
            _run(sync, "installing the locked requirements")
            _install_runtime(tmp)
            (tmp / READY).write_text(
                json.dumps({"seconds": round(time.perf_counter() - started, 3)})
            )
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _python_of(final)


def _install_runtime(env: Path) -> None:
    site = subprocess.run(
        [str(_python_of(env)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    src = Path(__file__).resolve().parent.parent
    shutil.copytree(
        src, Path(site) / "tiffin", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def run_isolated(
    package: str | os.PathLike[str],
    input_file: str | os.PathLike[str],
    output_file: str | os.PathLike[str] | None,
) -> None:
    """``tiffin predict --isolated``: predict in the package's own environment."""
    python = ensure_environment(package)
    argv = [
        str(python),
        "-m",
        "tiffin.env.replay",
        "predict",
        str(Path(package).resolve()),
        str(Path(input_file).resolve()),
    ]
    if output_file:
        argv.append(str(Path(output_file).resolve()))
    proc = subprocess.run(argv, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        raise EnvironmentBuildError(
            f"predict failed in the package's environment: {proc.stderr.strip()[-2000:]}"
        )
