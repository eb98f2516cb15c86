"""Lock the direct requirements into a full, hashed, transitive set for the target platform.

uv resolves (``uv pip compile --generate-hashes``) for ``--python-version`` and
``--python-platform`` (``--python 3.11 --platform linux/x86_64`` at pack time). uv does
not read pip's configuration, so the indexes, wheel folders and constraint files pip is
configured with (``pip config list``: pip.conf and ``PIP_*`` variables) are passed on,
together with uv's own ``UV_FIND_LINKS`` and ``UV_EXTRA_INDEX_URL``; ``UV_INDEX_URL``
(or ``UV_DEFAULT_INDEX``) replaces pip's ``index-url``. A pin
with a local label (``torch==2.13.0+cpu``) that no configured source carries is retried
with the accelerator's index (the PyTorch CPU or CUDA index).

When uv cannot lock for this machine because no index is reachable (or ``UV_OFFLINE``
is set), or because a requirement is on no index but installed here (an in-house
distribution), the lock falls back to the closure of what is installed, marked unhashed
and headed ``# UNHASHED`` with uv's reason, and a warning: never a silent failure, never
a lock that claims hashes it lacks. A requirement that no index has and that is not
installed here as pinned (a typo, a version that does not exist), and any failure to
lock for another target (whose closure this machine cannot know), are errors instead.
``tiffin env lock PKG`` locks such a package again where an index is reachable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import EnvironmentBuildError, UsageError
from ..package import layout
from .pins import accelerator_of, installed_pins, requirement_name

_PLATFORMS = {
    "linux/x86_64": "x86_64-unknown-linux-gnu",
    "linux/amd64": "x86_64-unknown-linux-gnu",
    "linux/aarch64": "aarch64-unknown-linux-gnu",
    "linux/arm64": "aarch64-unknown-linux-gnu",
    "darwin/arm64": "aarch64-apple-darwin",
    "darwin/aarch64": "aarch64-apple-darwin",
    "darwin/x86_64": "x86_64-apple-darwin",
    "macos/arm64": "aarch64-apple-darwin",
    "macos/aarch64": "aarch64-apple-darwin",
    "macos/x86_64": "x86_64-apple-darwin",
    "linux/ppc64le": "powerpc64le-unknown-linux-gnu",
    "linux/s390x": "s390x-unknown-linux-gnu",
    "linux/armv7l": "armv7-unknown-linux-gnueabihf",
    "win32/amd64": "x86_64-pc-windows-msvc",
    "win32/x86_64": "x86_64-pc-windows-msvc",
    "windows/amd64": "x86_64-pc-windows-msvc",
    "windows/x86_64": "x86_64-pc-windows-msvc",
}
_NETWORK = re.compile(
    r"Failed to fetch|error sending request|network was disabled|dns error|tcp connect"
    r"|Connection refused|timed out|Could not connect|offline",
    re.IGNORECASE,
)
UNHASHED_HEADER = "# UNHASHED"


def uv_binary() -> str:
    """The uv executable: beside this interpreter, on PATH, or from the uv package."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise EnvironmentBuildError(
            "uv is needed to lock and build environments", fix="pip install 'tiffin[pack]'"
        ) from None


def pip_config() -> dict[str, list[str]]:
    """pip's settings that matter for finding packages: option -> values, in pip's order.

    Asked of this interpreter's pip, or, where it has none (a uv-made environment), of
    the ``pip`` on PATH: the global and user configuration files are the same for both.
    """
    out = ""
    for pip in ([sys.executable, "-m", "pip"], [shutil.which("pip3") or shutil.which("pip")]):
        if pip[0] is None:
            continue
        try:
            proc = subprocess.run(
                [str(p) for p in pip] + ["config", "list"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            out = proc.stdout
            break
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        option = key.split(".")[-1]
        for v in value.strip().strip("'\"").split():
            if v not in found.setdefault(option, []):
                found[option].append(v)
    return found


def pip_index_args(
    config: dict[str, list[str]] | None = None, extra_indexes: Sequence[str] = ()
) -> list[str]:
    """pip's configured indexes and wheel folders, as uv arguments (missing folders skipped).

    uv's own ``UV_FIND_LINKS`` and ``UV_EXTRA_INDEX_URL`` are merged in (a command-line
    option would otherwise hide them); ``UV_INDEX_URL``/``UV_DEFAULT_INDEX`` win over
    pip's ``index-url``.
    """
    config = pip_config() if config is None else config
    find_links = config.get("find-links", []) + re.split(
        r"[,\s]+", os.environ.get("UV_FIND_LINKS", "").strip()
    )
    extra = [
        *config.get("extra-index-url", []),
        *os.environ.get("UV_EXTRA_INDEX_URL", "").split(),
        *extra_indexes,
    ]
    args: list[str] = []
    for v in dict.fromkeys(v for v in find_links if v):
        if v.startswith(("http://", "https://", "file:")) or Path(v).exists():
            args += ["--find-links", v]
    if not (os.environ.get("UV_INDEX_URL") or os.environ.get("UV_DEFAULT_INDEX")):
        for v in config.get("index-url", [])[:1]:
            args += ["--index-url", v]
    for v in dict.fromkeys(extra):
        if v.startswith("file://") and not Path(v[7:]).exists():
            continue
        args += ["--extra-index-url", v]
    if args:
        # pip looks at every index for the best version; uv's default stops at the first.
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def pip_constraint_args(config: dict[str, list[str]] | None = None) -> list[str]:
    """pip's configured constraint files, as uv arguments (missing files skipped)."""
    config = pip_config() if config is None else config
    args: list[str] = []
    for v in config.get("constraint", []):
        if Path(v).is_file():
            args += ["--constraint", v]
    return args


def uv_platform(platform: str) -> str:
    """``linux/x86_64`` -> ``x86_64-unknown-linux-gnu``; uv's own names pass through."""
    return _PLATFORMS.get(platform.lower(), platform)


def compile_lock(
    requirements: Sequence[str],
    *,
    python: str,
    platform: str,
    extra_indexes: Sequence[str] = (),
    omit: Sequence[str] = (),
) -> str:
    """``uv pip compile --generate-hashes`` for the target; raises with uv's reason."""
    config = pip_config()
    argv = [
        uv_binary(), "pip", "compile", "-", "--generate-hashes", "--quiet", "--no-header",
        "--python-version", python, "--python-platform", uv_platform(platform),
        *pip_index_args(config, extra_indexes), *pip_constraint_args(config),
        *(a for name in omit for a in ("--no-emit-package", name)),
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            argv,
            input="".join(f"{r}\n" for r in requirements),
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        raise EnvironmentBuildError(
            "uv could not lock the requirements: timed out after 600 s asking the indexes",
            fix="check that the package index is reachable",
        ) from None
    if proc.returncode != 0:
        raise EnvironmentBuildError(
            f"uv could not lock the requirements: {proc.stderr.strip()[-1500:]}",
            fix="check the pins, and that a package index (or --find-links folder) is reachable",
        )
    return proc.stdout


def installed_closure(requirements: Sequence[str], reason: str = "") -> str:
    """Pins of the requirements and everything they need, as installed here (no hashes).

    A requirement that is not installed here (or is pinned to another version than the
    installed one) is kept as written, so that a build from this lock fails naming it
    instead of quietly leaving it out or swapping the version.
    """
    pins, missing = installed_pins(requirements)
    lines = [
        f"{UNHASHED_HEADER}: uv could not lock, so this is the closure of what was installed",
        "# where the package was made. `tiffin env lock PKG` locks it again with hashes.",
    ]
    if reason:
        lines.append("# uv said: " + " ".join(reason.split())[:300])
    if missing:
        lines.append("# not installed as pinned (kept as given): " + ", ".join(sorted(missing)))
    text = "\n".join(lines) + "\n"
    text += "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))
    text += "".join(f"{r}\n" for r in sorted(set(missing)))
    return text


def accelerator_indexes(requirements: Sequence[str]) -> list[str]:
    """The index of a local-label pin (``torch==2.13.0+cpu``: the PyTorch CPU index), if any.

    Passed as one more ``--extra-index-url`` through :func:`pip_index_args`, which sets
    the index strategy once (uv refuses the option twice).
    """
    acc = accelerator_of(requirements)
    if acc and acc.get("index") and "+" in str(acc.get("package", "")):
        return [str(acc["index"])]
    return []


_PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;\\]+)", re.MULTILINE)
_CUDA_LIBRARY = re.compile(r"^nvidia-[a-z0-9-]+$")


def pins_of(lock_text: str) -> list[str]:
    """The ``name==version`` pins of a lock or requirements text."""
    return [m.group(1) for m in _PIN_LINE.finditer(lock_text)]


def gpu_only_packages(requirements: Sequence[str], text: str) -> list[str]:
    """NVIDIA CUDA libraries that only a dependency pulls in, for a CPU package.

    XGBoost's Linux wheels declare ``nvidia-nccl-cu12`` (about 470 MB) and load it only
    for multi-GPU training; a package whose pins name no CUDA build has no use for it.
    A CUDA library the user requires directly, or any package with a CUDA accelerator
    (a ``+cu128`` or PyPI Linux torch), keeps them all.
    """
    acc = accelerator_of(requirements)
    if acc is not None and acc.get("kind") != "cpu":
        return []
    direct = {requirement_name(r) for r in requirements}
    names = {requirement_name(p) for p in pins_of(text)}
    return sorted(n for n in names - direct if _CUDA_LIBRARY.match(n))


def lock_text(
    requirements: Sequence[str],
    *,
    python: str,
    platform: str,
    say: Callable[[str], Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The lock's text and its description for the manifest (``status``, ``hashed``...).

    Warnings go to ``say`` (a lock made ahead of time keeps them until it is used),
    by default to stderr.
    """
    say = say or sys.stderr.write
    try:
        extra: list[str] = []
        try:
            text = compile_lock(requirements, python=python, platform=platform)
        except EnvironmentBuildError:
            extra = accelerator_indexes(requirements)
            if not extra:
                raise
            text = compile_lock(requirements, python=python, platform=platform, extra_indexes=extra)
        info: dict[str, Any] = {"status": "locked", "hashed": True, "tool": "uv pip compile"}
        cuda = gpu_only_packages(requirements, text)
        if cuda:
            text = compile_lock(
                requirements, python=python, platform=platform, extra_indexes=extra,
                omit=cuda,
            )  # fmt: skip
            info["omitted"] = cuda
            say(
                f"tiffin: the lock leaves out {', '.join(cuda)}: CUDA libraries that a "
                "dependency declares for GPU use, and this package is for the CPU (require "
                "them directly to keep them)\n"
            )
    except EnvironmentBuildError as exc:
        cause = exc.message.partition(": ")[2] or exc.message
        offline = bool(_NETWORK.search(cause)) or _uv_offline()
        kind = "no package index reachable" if offline else "unresolvable"
        short = " ".join(cause.split())[-300:]
        missing = installed_pins(requirements)[1]
        here = _is_this_machine(python, platform)
        # The closure stands in only for what it is: this machine's installed packages,
        # when no index could be asked. A pin that no reachable index has and that is not
        # installed here, or a lock for another target, can only fail later: say so now.
        if not offline or missing or not here:
            raise EnvironmentBuildError(
                f"cannot lock the requirements for Python {python} on {platform} ({kind}): "
                + short,
                where=layout.REQUIREMENTS,
                fix=(f"these are on no reachable index and not installed here as pinned: "
                     f"{', '.join(sorted(missing))}; check their names and versions, or add "
                     "the index that has them (pip config, UV_EXTRA_INDEX_URL)")
                if missing
                else "lock again where the index that carries these pins for that target is "
                "reachable (for a local-label pin such as +cpu: the accelerator's index)"
                if not here
                else "check the pins, and that the package index carries them for this target",
            ) from None  # fmt: skip
        say(
            f"tiffin: warning: uv could not lock the requirements ({kind}: {short}); "
            "writing the UNHASHED closure of the installed packages instead\n"
        )
        text = installed_closure(requirements, reason=short)
        info = {"status": "installed-closure", "hashed": False, "tool": "installed", "reason": kind}
    info["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    info["python"], info["platform"] = python, platform
    return text, info


class LockAhead:
    """A lock computed in a thread for a guess of the requirements, while capture runs.

    Locking asks the indexes (seconds) and does not depend on the trace, only on its
    outcome; for most models the outcome is the guess (the flavor's frameworks).
    """

    def __init__(self, requirements: Sequence[str], *, python: str, platform: str) -> None:
        self.requirements = sorted(requirements)
        self._notes: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiffin-lock")
        self._future = self._pool.submit(
            lock_text, self.requirements, python=python, platform=platform, say=self._notes.append
        )
        # The thread is not waited on when the guess was wrong: uv finishes on its own.
        self._pool.shutdown(wait=False)

    def result_for(self, requirements: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
        """The lock if it was made for ``requirements`` (its error, if it failed), else None."""
        if sorted(requirements) != self.requirements:
            return None
        made = self._future.result()
        for note in self._notes:
            sys.stderr.write(note)
        return made


def _uv_offline() -> bool:
    return os.environ.get("UV_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _is_this_machine(python: str, platform: str) -> bool:
    here = f"{sys.platform}/{_machine()}"
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    return python.split(".")[:2] == mine.split(".") and uv_platform(platform) == uv_platform(here)


def _machine() -> str:
    import platform as _platform

    return _platform.machine().lower()


_PYTHON = re.compile(r"^3\.\d{1,2}(\.\d{1,2})?$")
_UV_TRIPLE = re.compile(r"^[a-z0-9_]+(-[a-z0-9_.]+)+$")


def check_target(python: str | None, platform: str | None) -> None:
    """Refuse a target Python or platform (where given) that no lock could be made for."""
    if python is not None and not _PYTHON.match(python):
        raise UsageError(
            f"target Python {python!r} is not a Python 3 version",
            where="--python",
            fix="give a version like 3.11 or 3.12.4",
        )
    if (
        platform is not None
        and platform.lower() not in _PLATFORMS
        and not _UV_TRIPLE.match(platform)
    ):
        raise UsageError(
            f"unknown target platform {platform!r}",
            where="--platform",
            fix="use one of " + ", ".join(sorted(_PLATFORMS)) + " (or a uv target triple)",
        )


def write_lock(
    root: Path,
    requirements: Sequence[str],
    *,
    python: str,
    platform: str,
    ahead: LockAhead | None = None,
) -> dict[str, Any]:
    """Write env/requirements.lock under ``root`` and describe it for the manifest.

    ``ahead``: a lock started before the requirements were known, used when it was made
    for exactly these.
    """
    made = ahead.result_for(requirements) if ahead is not None else None
    text, info = made or lock_text(requirements, python=python, platform=platform)
    path = root / layout.LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return info


def relock(
    package: str | os.PathLike[str],
    *,
    dest: str | os.PathLike[str] | None = None,
    python: str | None = None,
    platform: str | None = None,
) -> Any:
    """Lock a package's requirements again (a new target, or hashes after an offline pack).

    Writes the package again, atomically, at ``dest`` (default: in place) with the new
    lock and a new seal. A detached signature no longer matches and is dropped. Returns
    the new :class:`~tiffin.package.manifest.Manifest`.
    """
    from ..package.atomic import destination_lock, make_temp_dir, publish
    from ..package.integrity import index_files, verify_tree

    check_target(python, platform)  # what was given, at once
    src = Path(package)
    manifest = verify_tree(src)
    target = Path(dest) if dest is not None else src
    env = dict(manifest.environment)
    new_python = python or str(env.get("python") or f"{sys.version_info[0]}.{sys.version_info[1]}")
    new_platform = platform or str(env.get("platform") or "linux/x86_64")
    requirements = [str(r) for r in env.get("requirements", [])]
    with destination_lock(target):
        tmp = make_temp_dir(target)
        try:
            shutil.copytree(
                src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(layout.SIGNATURE)
            )
            if (src / layout.SIGNATURE).exists():
                sys.stderr.write(
                    "tiffin: the package's signature covers the old lock; sign it again\n"
                )
            env["lock"] = write_lock(tmp, requirements, python=new_python, platform=new_platform)
            env["python"], env["platform"] = new_python, new_platform
            sealed = dataclasses.replace(
                manifest, environment=env, files=index_files(tmp), digest=None
            ).seal()
            (tmp / layout.MANIFEST).write_bytes(sealed.to_bytes())
            publish(tmp, target, replace=target.resolve() == src.resolve())
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return sealed
