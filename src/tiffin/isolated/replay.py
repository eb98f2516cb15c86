"""Replay a package's recorded examples in an environment's Python (``tiffin verify``)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import VerificationError
from .run import child_failure, run_child

REPLAY_TIMEOUT = 1800  # seconds: loading a large model in a cold environment is slow


def replay(root: Path, python: Path, *, current: bool, rtol: float, atol: float) -> Any:
    """The child's replay result, with the cold start (launch to first prediction) added.

    Runs in a scratch working folder: a model that writes beside itself must not change
    the sealed package it is being verified from.
    """
    with tempfile.TemporaryDirectory(prefix="tiffin-verify-") as scratch:
        launched = time.time()
        try:
            proc = run_child(
                python, ["examples", str(root), repr(rtol), repr(atol)], cwd=scratch,
                current=current, timeout=REPLAY_TIMEOUT, error=VerificationError,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise VerificationError(
                f"the replay did not finish within {REPLAY_TIMEOUT} s",
                where=str(root),
                fix="run `tiffin predict PKG --isolated` on the example to see where it hangs",
            ) from None
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("TIFFIN-REPLAY "):
            result = json.loads(line[len("TIFFIN-REPLAY ") :])
    if proc.returncode != 0 or result is None:
        raise child_failure(proc.stderr, root, error=VerificationError, keep_reported=False)
    result["cold_start_seconds"] = round(max(result["predicted_at"] - launched, 0.0), 4)
    return result
