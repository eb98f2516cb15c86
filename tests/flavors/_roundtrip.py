"""Shared checks for flavor round trips: fresh-process equality and reproducible bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import tiffin
from tests.conftest import run_python
from tiffin.package.integrity import walk_files


def fresh_predict(pkg: Path, x: np.ndarray, cwd: Path) -> np.ndarray:
    """Load ``pkg`` in a new interpreter and predict on ``x`` (passed as a .npy file)."""
    np.save(cwd / "x.npy", x)
    proc = run_python(
        f"""
        import numpy as np, tiffin
        m = tiffin.load({str(pkg)!r})
        out = m.predict(np.load({str(cwd / "x.npy")!r}))
        np.save({str(cwd / "y.npy")!r}, np.asarray(out))
        """,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    return np.load(cwd / "y.npy")


def assert_reproducible(model: Any, tmp_path: Path, **kwargs: Any) -> None:
    a = tiffin.pack(model, tmp_path / "repro-a", **kwargs)
    b = tiffin.pack(model, tmp_path / "repro-b", **kwargs)
    assert a.digest == b.digest
    files = walk_files(a.path)
    assert files == walk_files(b.path)
    for rel in files:
        assert (a.path / rel).read_bytes() == (b.path / rel).read_bytes(), rel
