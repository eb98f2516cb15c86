"""Where a package came from: tiffin, Python, platform, framework versions, git state."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from .._version import __version__
from ..errors import UsageError


def dist_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_state(cwd: str | None = None) -> dict[str, Any] | None:
    """The commit and dirty flag of the repository the packer runs in, if any.

    Untracked files are ignored for the dirty flag, so writing packages into a
    repository does not change the provenance of the next pack.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def collect(frameworks: tuple[str, ...]) -> dict[str, Any]:
    versions = {d: v for d in frameworks if (v := dist_version(d)) is not None}
    data: dict[str, Any] = {
        "tiffin": __version__,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": f"{sys.platform}/{platform.machine()}",
        "frameworks": versions,
    }
    git = git_state()
    if git is not None:
        data["git"] = git
    return data


def created_time() -> str | None:
    """SOURCE_DATE_EPOCH as an ISO UTC time, or None: no wall-clock time in the seal."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None or not epoch.strip():
        return None
    # The reproducible-builds spec: a malformed value is an error, not a silent "no time".
    try:
        if not re.fullmatch(r"[0-9]+", epoch.strip()):  # ASCII digits only, as the spec says
            raise ValueError(epoch)
        stamp = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970",
            where="SOURCE_DATE_EPOCH",
            fix="set it to an integer such as $(git log -1 --format=%ct), or unset it",
        ) from None
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
