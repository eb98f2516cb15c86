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
    SigningError,
    TiffinError,
    UnsafeArtifactError,
    UsageError,
    VerificationError,
)
from .manifest import Manifest

if TYPE_CHECKING:
    from .load import Predictor
    from .pack import Package
    from .signature import Signature
    from .tensorspec import TensorSpec

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
    "SigningError",
    "TensorSpec",
    "TiffinError",
    "UnsafeArtifactError",
    "UsageError",
    "VerificationError",
    "__version__",
    "archive",
    "inspect",
    "keygen",
    "lint",
    "load",
    "pack",
    "sign",
    "unpack",
    "verify",
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


def verify(path: Any, **kwargs: Any) -> Any:
    """Integrity, a clean environment from the lock, replayed examples; see :mod:`tiffin.verify`."""
    from .verify import verify as _verify

    return _verify(path, **kwargs)


def lint(path: Any) -> Any:
    """The packaging anti-pattern findings for a package; see :mod:`tiffin.lint`."""
    from .lint import lint as _lint

    return _lint(path)


def sign(path: Any, key: Any) -> Any:
    """Sign a package (every file's sha256) with a private key; writes ``tiffin.sig``."""
    from .security.signing import sign_package

    return sign_package(path, key)


def keygen(private_path: Any, public_path: Any = None, **kwargs: Any) -> Any:
    """Make a key pair (PEM files; Ed25519 unless ``algorithm=``) for signing packages."""
    from .security.signing import keygen as _keygen

    return _keygen(private_path, public_path, **kwargs)


def archive(path: Any, out: Any, **kwargs: Any) -> Any:
    """Write a package as one reproducible archive file; see :mod:`tiffin.archive`."""
    from .archive import archive as _archive

    return _archive(path, out, **kwargs)


def unpack(path: Any, dest: Any, **kwargs: Any) -> Any:
    """Unpack an archive into a new folder, refusing anything hostile; see :mod:`tiffin.archive`."""
    from .archive import unpack as _unpack

    return _unpack(path, dest, **kwargs)


_LAZY_CLASSES = {
    "Package": "tiffin.pack",
    "Predictor": "tiffin.load",
    "Signature": "tiffin.signature",
    "TensorSpec": "tiffin.tensorspec",
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
