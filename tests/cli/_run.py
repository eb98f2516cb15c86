"""Running the ``tiffin`` command: in this process (cheap) or as a real subprocess.

In-process runs go through ``tiffin.cli.main``, the console script's own entry point, with
stdout and stderr captured as bytes, so what a command writes to ``sys.stdout.buffer`` is
seen too. A subprocess run is kept for what only a fresh interpreter shows (``python -m
tiffin.cli``, nothing left over from the test process).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TIFFIN = [sys.executable, "-m", "tiffin.cli"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def tiffin(*args: str, env: dict[str, str] | None = None) -> Result:
    """``tiffin ARGS`` through ``tiffin.cli.main`` in this process, with ``env`` set."""
    from tiffin.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    out_text = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    err_text = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    code = 0
    try:
        with contextlib.redirect_stdout(out_text), contextlib.redirect_stderr(err_text):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    out_text.detach()
    err_text.detach()
    return Result(code, stdout, stderr)


def tiffin_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tiffin.cli ARGS`` in a fresh interpreter."""
    return subprocess.run([*TIFFIN, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
