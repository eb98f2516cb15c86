"""Start the child entry point in an environment's Python and turn its failures into errors.

One child command line, one environment for it, one mapping from what went wrong in the
child (a missing module, a tiffin error it reported, anything else) to a tiffin error:
``tiffin verify`` and ``tiffin predict --isolated`` must never describe the same failure
in two ways.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .. import errors
from ..errors import TiffinError
from ..package import layout
from .child import ERROR_PREFIX

CHILD = "tiffin.isolated.child"
# The variables that would let the host's packages leak into the child, and the signing
# policy: the host applied it, with the caller's keys, before starting the child, which
# has no keys to apply it with.
_HOST_ONLY = (
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "TIFFIN_REQUIRE_SIGNED",
    "TIFFIN_REQUIRE_SIGNATURE",
)  # fmt: skip


def clean_env() -> dict[str, str]:
    """This process's environment minus what must not reach the child."""
    return {k: v for k, v in os.environ.items() if k not in _HOST_ONLY}


def run_child(
    python: Path,
    args: list[str],
    *,
    cwd: str | os.PathLike[str],
    current: bool = False,
    timeout: float | None = None,
    error: type[TiffinError] = errors.EnvironmentBuildError,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tiffin.isolated.child ARGS`` in ``cwd``; the finished process.

    ``current``: ``python`` is this interpreter, which may run tiffin from a source tree,
    so tiffin stays importable (``-P`` still keeps the working folder off the path). A
    Python that will not start raises ``error``; a timeout raises ``TimeoutExpired``.
    """
    env = clean_env()
    flags = ["-I", "-B"]  # -B: importing code/ must not write __pycache__ into the package
    if current:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent.parent)
        flags = ["-B", "-P"] if sys.version_info >= (3, 11) else ["-B"]
    argv = [str(python), *flags, "-m", CHILD, *args]
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
        )
    except OSError as exc:
        raise error(
            f"cannot start the environment's Python {python}: {exc.strerror or exc}",
            where=str(python),
            fix="build the environment again: `tiffin env build PKG`",
        ) from None


def missing_module(stderr: str) -> str | None:
    """The module a failed child could not import, from its error output."""
    m = re.search(r"No module named '([^']+)'", stderr)
    return m.group(1) if m else None


def reported_error(stderr: str) -> TiffinError | None:
    """The tiffin error the child reported (its last ``TIFFIN-ERROR`` line), as its own class."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(ERROR_PREFIX):
            try:
                data = json.loads(line[len(ERROR_PREFIX) :])
                cls = getattr(errors, str(data["type"]), TiffinError)
                if not (isinstance(cls, type) and issubclass(cls, TiffinError)):
                    cls = TiffinError
                return cls(str(data["message"]), where=data.get("where"), fix=data.get("fix"))
            except (ValueError, KeyError, TypeError):
                return None
    return None


def child_failure(
    stderr: str, root: Path, *, error: type[TiffinError], keep_reported: bool
) -> TiffinError:
    """The error for a child that failed, from its stderr.

    A missing module is named first (the commonest failure, and the one a reported error
    would hide). A tiffin error the child reported is kept as it is (``keep_reported``,
    so a wrong input still exits with its own code) or told as ``error``.
    """
    module = missing_module(stderr)
    if module:
        return error(
            f"module {module!r} is missing from the package's environment",
            where=str(root / layout.REQUIREMENTS),
            fix=f"add the distribution that provides {module!r} to the requirements (or "
            "let tiffin infer them), then pack again",
        )
    reported = reported_error(stderr)
    if reported is not None:
        if keep_reported:
            return reported
        return error(
            f"the package failed to run: {type(reported).__name__}: {reported.message}"
            + (f" (in {reported.where})" if reported.where else ""),
            where=str(root),
            fix=reported.fix
            or "run `tiffin predict PKG --isolated` on the example to see the failure",
        )
    return error(
        f"the package failed to run: {stderr.strip()[-1500:]}",
        where=str(root),
        fix="run `tiffin verify PKG` for a full report",
    )
