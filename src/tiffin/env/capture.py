"""Capture the model's direct requirements (first version: the flavor's frameworks).

To be replaced by import tracing in a subprocess (issue #3).
"""

from __future__ import annotations

import platform as _platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import layout
from ..provenance import dist_version


def capture(
    root: Path,
    *,
    flavor: str,
    frameworks: tuple[str, ...],
    requirements: Sequence[str] | None,
    python: str | None = None,
    platform: str | None = None,
) -> dict[str, Any]:
    if requirements is not None:
        reqs = sorted(str(r) for r in requirements)
    else:
        reqs = sorted(f"{d}=={v}" for d in frameworks if (v := dist_version(d)) is not None)
    path = root / layout.REQUIREMENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in reqs), encoding="utf-8")
    return {
        "python": python or f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": platform or f"{sys.platform}/{_platform.machine()}",
        "requirements": reqs,
    }
