"""tiffin: sealed, versioned, content-addressed model packages.

Importing tiffin is cheap: frameworks, the server and packing tools load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ArchiveError,
    ConflictError,
    EnvironmentBuildError,
    FlavorError,
    IntegrityError,
    ManifestError,
    PackageNotFoundError,
    SignatureError,
    SignatureVerificationError,
    TiffinError,
    UnsafeArtifactError,
    UsageError,
    VerificationError,
)
from .manifest import Manifest
from .signature import Signature, TensorSpec

if TYPE_CHECKING:
    from .load import Predictor
    from .pack import Package

__version__ = "0.1.0"

__all__ = [
    "ArchiveError",
    "ConflictError",
    "EnvironmentBuildError",
    "FlavorError",
    "IntegrityError",
    "Manifest",
    "ManifestError",
    "Package",
    "PackageNotFoundError",
    "Predictor",
    "Signature",
    "SignatureError",
    "SignatureVerificationError",
    "TensorSpec",
    "TiffinError",
    "UnsafeArtifactError",
    "UsageError",
    "VerificationError",
    "__version__",
    "inspect",
    "load",
    "pack",
]


def pack(model: Any, dest: Any, **kwargs: Any) -> Package:
    """Pack a model into a sealed package folder; see :func:`tiffin.pack.pack`."""
    from .pack import pack as _pack

    return _pack(model, dest, **kwargs)


def load(path: Any, **kwargs: Any) -> Predictor:
    """Verify and load a package; see :func:`tiffin.load.load`."""
    from .load import load as _load

    return _load(path, **kwargs)


def inspect(path: Any) -> Manifest:
    """The verified manifest of a package (nothing is deserialized)."""
    from .integrity import verify_tree

    return verify_tree(path)


def __getattr__(name: str) -> Any:
    if name == "Package":
        from .pack import Package

        return Package
    if name == "Predictor":
        from .load import Predictor

        return Predictor
    raise AttributeError(f"module 'tiffin' has no attribute {name!r}")
