"""tiffin: sealed, versioned, content-addressed model packages.

This module is the whole public API: the names in ``__all__`` (pinned by
``tests/test_api.py``). The verbs are the implementations themselves, with their real
signatures, from private modules (``_pack``, ``_load``, ``_verify``, ``_lint``) and
from the parts of the library (``package``, ``security``, ``schema``).
``import tiffin`` imports neither NumPy nor any framework: a verb's module is imported
the first time the verb is used.

Example::

    pkg = tiffin.pack(model, "out/iris-1.0.0", name="iris", version="1.0.0", example=X[:5])
    tiffin.load("out/iris-1.0.0").predict(X[:3])
"""

from __future__ import annotations

import importlib
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
from .package.integrity import verify_tree as _verify_tree
from .package.manifest import Manifest

if TYPE_CHECKING:
    from ._lint import lint
    from ._load import Predictor, load
    from ._pack import Package, pack
    from ._verify import verify
    from .package.archive import archive, unpack
    from .schema.signature import Signature
    from .schema.tensorspec import TensorSpec
    from .security.signing import keygen
    from .security.signing import sign_package as sign

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

# Public name -> (module, attribute), imported on first use.
_LAZY = {
    "pack": ("tiffin._pack", "pack"),
    "Package": ("tiffin._pack", "Package"),
    "load": ("tiffin._load", "load"),
    "Predictor": ("tiffin._load", "Predictor"),
    "verify": ("tiffin._verify", "verify"),
    "lint": ("tiffin._lint", "lint"),
    "archive": ("tiffin.package.archive", "archive"),
    "unpack": ("tiffin.package.archive", "unpack"),
    "sign": ("tiffin.security.signing", "sign_package"),
    "keygen": ("tiffin.security.signing", "keygen"),
    "Signature": ("tiffin.schema.signature", "Signature"),
    "TensorSpec": ("tiffin.schema.tensorspec", "TensorSpec"),
}


def inspect(path: Any) -> Manifest:
    """The verified manifest of a package (every file checked, nothing deserialized)."""
    return _verify_tree(path)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'tiffin' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
