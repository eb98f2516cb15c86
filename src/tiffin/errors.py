"""One exception tree for tiffin.

Every error says what was wrong, where (file, field, input name) and how to fix it,
and carries a stable exit code that the CLI documents::

    TiffinError (1)
     ├── UsageError (2)               bad arguments or options
     ├── PackageNotFoundError (3)     no package at the given path
     ├── IntegrityError (4)           a file changed, missing, extra or linked
     ├── ManifestError (5)            tiffin.json unreadable or invalid
     ├── SignatureError (6)           inputs do not match the inference signature (schema)
     ├── UnsafeArtifactError (7)      pickle or another code-carrying format refused
     ├── FlavorError (8)              the framework could not save or load the model
     ├── EnvironmentBuildError (9)    capture, lock or environment build failed
     ├── VerificationError (10)       replayed examples differ, or the package fails to run
     ├── SigningError (11)            the package's signing is missing or wrong (tiffin.sig)
     ├── ConflictError (12)           destination exists or is being written by another process
     └── ArchiveError (13)            a package archive is malformed or hostile
"""

from __future__ import annotations


class TiffinError(Exception):
    """Root of every tiffin error."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        self.message = message
        self.where = where
        self.fix = fix
        super().__init__(self.format())

    def format(self) -> str:
        text = self.message
        if self.where:
            text = f"{text} (in {self.where})"
        if self.fix:
            text = f"{text}\n  fix: {self.fix}"
        return text


class UsageError(TiffinError):
    """Bad arguments or options."""

    exit_code = 2


class PackageNotFoundError(TiffinError):
    """No package at the given path."""

    exit_code = 3


class IntegrityError(TiffinError):
    """A package file changed, is missing, is extra, or is a link."""

    exit_code = 4


class ManifestError(TiffinError):
    """tiffin.json cannot be read or does not follow the format."""

    exit_code = 5


class SignatureError(TiffinError):
    """Inputs or outputs do not match the inference signature."""

    exit_code = 6


class UnsafeArtifactError(TiffinError):
    """An artifact would run code when loaded (pickle and friends) and was refused."""

    exit_code = 7


class FlavorError(TiffinError):
    """The framework could not save, reload or run the model."""

    exit_code = 8


class EnvironmentBuildError(TiffinError):
    """Capturing, locking or building the environment failed."""

    exit_code = 9


class VerificationError(TiffinError):
    """The package did not reproduce its recorded examples in a clean environment."""

    exit_code = 10


class SigningError(TiffinError):
    """A package signature is missing, malformed, or made by an untrusted key."""

    exit_code = 11


class ConflictError(TiffinError):
    """The destination exists, or another process is writing it."""

    exit_code = 12


class ArchiveError(TiffinError):
    """A package archive is malformed or hostile."""

    exit_code = 13


def _tree(cls: type[TiffinError]) -> list[type[TiffinError]]:
    return [cls] + [sub for child in cls.__subclasses__() for sub in _tree(child)]


# Derived from the classes above, so a new error cannot be left out of the CLI's help.
EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code for cls in sorted(_tree(TiffinError), key=lambda c: c.exit_code)
}
