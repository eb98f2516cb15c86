"""Lock the direct requirements into a full, hashed, transitive set for the target platform.

uv resolves (``uv pip compile --generate-hashes``) for ``--python-version`` and
``--python-platform``. uv does not read pip's configuration, so the package indexes and
wheel folders pip is configured with (``pip config list``) are passed on, and
``UV_INDEX_URL``/``UV_EXTRA_INDEX_URL``/``UV_FIND_LINKS`` work as usual. With no index
reachable, the lock falls back to the closure of what is installed, marked unhashed,
with a warning: never a silent failure, never a lock that claims hashes it lacks.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import layout
from ..errors import EnvironmentBuildError

_PLATFORMS = {
    "linux/x86_64": "x86_64-unknown-linux-gnu",
    "linux/amd64": "x86_64-unknown-linux-gnu",
    "linux/aarch64": "aarch64-unknown-linux-gnu",
    "linux/arm64": "aarch64-unknown-linux-gnu",
    "darwin/arm64": "aarch64-apple-darwin",
    "darwin/x86_64": "x86_64-apple-darwin",
    "win32/amd64": "x86_64-pc-windows-msvc",
    "windows/amd64": "x86_64-pc-windows-msvc",
}


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


def pip_index_args() -> list[str]:
    """pip's configured indexes and wheel folders, as uv arguments."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    args: list[str] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        option = key.split(".")[-1]
        if option == "find-links":
            for v in value.split():
                if not v.startswith("file:") and not Path(v).exists():
                    continue
                args += ["--find-links", v]
        elif option == "extra-index-url":
            for v in value.split():
                if v.startswith("file://") and not Path(v[7:]).exists():
                    continue
                args += ["--extra-index-url", v]
        elif option == "index-url":
            args += ["--index-url", value]
    if args:
        args += ["--index-strategy", "unsafe-best-match"]
    seen: list[str] = []
    for i in range(0, len(args), 2):
        pair = args[i : i + 2]
        if " ".join(pair) not in [" ".join(seen[j : j + 2]) for j in range(0, len(seen), 2)]:
            seen += pair
    return seen


def uv_platform(platform: str) -> str:
    return _PLATFORMS.get(platform.lower(), platform)


def compile_lock(requirements: Sequence[str], *, python: str, platform: str) -> str:
    proc = subprocess.run(
        [uv_binary(), "pip", "compile", "-", "--generate-hashes", "--quiet", "--no-header",
         "--python-version", python, "--python-platform", uv_platform(platform), *pip_index_args()],
        input="".join(f"{r}\n" for r in requirements), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise EnvironmentBuildError(
            f"uv could not lock the requirements: {proc.stderr.strip()[-1500:]}"
        )
    return proc.stdout


def installed_closure(requirements: Sequence[str]) -> str:
    """Pins of the requirements and everything they need, as installed here (no hashes)."""
    from .capture import requirement_name

    todo = [requirement_name(r) for r in requirements]
    pins: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in pins:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        pins[name] = dist.version
        for req in dist.requires or []:
            if "extra ==" in req or "extra==" in req:
                continue
            m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if m:
                todo.append(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    header = (
        "# UNHASHED: no package index was reachable, so this is the closure of what was\n"
        "# installed where the package was made. `tiffin env lock PKG` can replace it.\n"
    )
    return header + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))


def write_lock(
    root: Path, requirements: Sequence[str], *, python: str, platform: str
) -> dict[str, Any]:
    """Write env/requirements.lock and describe it for the manifest."""
    try:
        text = compile_lock(requirements, python=python, platform=platform)
        info: dict[str, Any] = {"status": "locked", "hashed": True, "tool": "uv pip compile"}
    except EnvironmentBuildError as exc:
        sys.stderr.write(
            f"tiffin: warning: could not lock with uv ({exc.message.splitlines()[0][:200]}); "
            "writing the UNHASHED closure of the installed packages instead\n"
        )
        text = installed_closure(requirements)
        info = {"status": "installed-closure", "hashed": False, "tool": "installed"}
    path = root / layout.LOCK
    path.write_text(text, encoding="utf-8")
    info["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    info["python"], info["platform"] = python, platform
    return info
