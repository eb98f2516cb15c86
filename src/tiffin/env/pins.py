"""Requirement strings and installed distributions: names, closures, accelerator builds.

Shared by the capture (which pins what the model imports), the probes and the lock.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    """The canonical distribution name of a requirement string (``"Foo_Bar>=1"`` -> foo-bar)."""
    m = _REQ_NAME.match(req)
    return canonical(m.group(1)) if m else canonical(req)


def installed_pins(requirements: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Installed versions of the requirements' closure, and the requirements not installed
    as written (absent, or installed at a version their specifier does not admit).

    Versions match by PEP 440 (``==1.*``, and ``==2.13.0`` for an installed
    ``2.13.0+cpu``); a dependency whose environment marker is false here (another
    platform, another Python, an extra) is not part of the closure.
    """
    # packaging comes with the packing extra; lint imports this module without it
    from packaging.requirements import InvalidRequirement, Requirement

    pins: dict[str, str] = {}
    missing: list[str] = []
    todo = [(requirement_name(r), r) for r in requirements]
    while todo:
        name, original = todo.pop()
        if name in pins:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if original:
                missing.append(original)
            continue
        if original and not _admits(original, dist.version):
            missing.append(original)  # pinned to a version other than the installed one
            continue
        pins[name] = dist.version
        for req in dist.requires or []:
            try:
                parsed = Requirement(req)
            except InvalidRequirement:
                continue
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                todo.append((canonical(parsed.name), ""))
    return pins, missing


def _admits(requirement: str, version: str) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        spec = Requirement(requirement).specifier
    except InvalidRequirement:
        return False
    return spec.contains(version, prereleases=True)


def accelerator_of(pins: Sequence[str]) -> dict[str, Any] | None:
    """What hardware the pins were built for, from local version labels.

    ``{"kind": "cpu", "package": "torch==2.13.0+cpu", "index": ...}`` for a CPU build
    (the index is where a rebuild finds it), ``{"kind": "cuda", "cuda": "12.8", ...}``
    for a CUDA build; None when no pinned package is hardware-specific.
    """
    for pin in pins:
        name, _, version = pin.partition("==")
        name = canonical(name)
        if name in ("torch", "torchvision", "torchaudio", "jax", "jaxlib"):
            label = version.partition("+")[2]
            if label == "cpu":
                return {
                    "kind": "cpu",
                    "package": pin,
                    "index": "https://download.pytorch.org/whl/cpu",
                }
            if label.startswith("cu") and label[2:].isdigit() and len(label) > 3:
                return {"kind": "cuda", "cuda": f"{label[2:-1]}.{label[-1]}", "package": pin,
                        "index": f"https://download.pytorch.org/whl/{label}"}  # fmt: skip
            if name == "torch" and sys.platform == "linux":
                return {
                    "kind": "cuda",
                    "package": pin,
                    "note": "PyPI's Linux torch wheels are CUDA builds",
                }
        if name.startswith("nvidia-") or name in ("cupy", "tensorrt") or "-cuda" in name:
            return {"kind": "cuda", "package": pin}
    return None


_OWNERS: tuple[tuple[tuple[str, int], ...], dict[str, list[str]]] | None = None


def top_level_owners() -> dict[str, list[str]]:
    """Top-level module -> the distributions providing it (``packages_distributions``).

    Walking every installed distribution takes most of a second with a few hundred of
    them, and one pack asks several times; the answer is kept while no folder on
    ``sys.path`` changes (installing or removing a distribution changes its folder).
    """
    global _OWNERS
    key = tuple(_stamp(p) for p in sys.path)
    if _OWNERS is None or _OWNERS[0] != key:
        found = {k: list(v) for k, v in metadata.packages_distributions().items()}
        _OWNERS = (key, found)
    return {k: list(v) for k, v in _OWNERS[1].items()}


def _stamp(folder: str) -> tuple[str, int]:
    try:
        return folder, os.stat(folder or ".").st_mtime_ns
    except OSError:
        return folder, -1
