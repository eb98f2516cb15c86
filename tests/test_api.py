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


def test_verbs_survive_submodule_imports() -> None:
    import tiffin.archive
    import tiffin.lint
    import tiffin.load
    import tiffin.pack
    import tiffin.verify

    assert callable(tiffin.pack) and tiffin.pack.__module__ == "tiffin"
    assert callable(tiffin.load) and tiffin.load.__module__ == "tiffin"
    for verb in ("archive", "lint", "verify"):
        assert getattr(tiffin, verb).__module__ == "tiffin", verb


def test_errors_have_distinct_exit_codes() -> None:
    from tiffin.errors import EXIT_CODES

    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    err = tiffin.IntegrityError("x changed", where="pkg", fix="pack again")
    assert str(err) == "x changed (in pkg)\n  fix: pack again"
    assert isinstance(err, tiffin.TiffinError) and err.exit_code == 4
