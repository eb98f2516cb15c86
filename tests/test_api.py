"""The public API is pinned: changing it must be a deliberate edit here."""

from __future__ import annotations

import tiffin

PUBLIC = [
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


def test_all_is_pinned() -> None:
    assert sorted(tiffin.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves() -> None:
    for name in tiffin.__all__:
        assert getattr(tiffin, name) is not None


def test_verbs_are_the_implementations_with_their_signatures() -> None:
    """No wrappers: ``help(tiffin.pack)`` and type checkers see the real parameters."""
    import inspect

    import tiffin._lint
    import tiffin._load
    import tiffin._pack
    import tiffin._verify

    assert tiffin.pack is tiffin._pack.pack
    assert tiffin.load is tiffin._load.load
    assert tiffin.verify is tiffin._verify.verify
    assert tiffin.lint is tiffin._lint.lint
    params = inspect.signature(tiffin.pack).parameters
    assert {"model", "dest", "name", "version", "example", "dynamic_axes"} <= set(params)
    assert params["name"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "require_signed" in inspect.signature(tiffin.load).parameters


def test_import_tiffin_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tiffin; heavy = [m for m in ('numpy', 'sklearn', 'torch') if m in sys.modules];"
        " assert not heavy, heavy"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
