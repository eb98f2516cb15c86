"""tiffin: sealed, versioned, content-addressed model packages.

``import tiffin`` is cheap (no NumPy, no frameworks): the verbs import their modules
on first use.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__
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

if TYPE_CHECKING:
    from .load import Predictor
    from .pack import Package
    from .signature import Signature, TensorSpec

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


_LAZY_CLASSES = {
    "Package": "tiffin.pack",
    "Predictor": "tiffin.load",
    "Signature": "tiffin.signature",
    "TensorSpec": "tiffin.signature",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module 'tiffin' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


class _TiffinModule(types.ModuleType):
    """Keeps the public verbs when a submodule of the same name is imported.

    Importing ``tiffin.pack`` (the module) would otherwise rebind ``tiffin.pack`` (the
    function) to the module, the usual price of lazy imports. The submodules stay
    reachable through ``sys.modules`` and ``from tiffin.pack import ...``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        current = self.__dict__.get(name)
        if isinstance(value, types.ModuleType) and isinstance(current, types.FunctionType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _TiffinModule
