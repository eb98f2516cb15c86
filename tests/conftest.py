"""Shared fixtures: small real models and a fresh-process runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

# Packing traces imports in a subprocess and locks with uv; most tests pack many small
# packages and do not need that, so it is off here and on in tests/env (which re-enable it).
os.environ.setdefault("TIFFIN_ENV_CAPTURE", "off")


def run_python(
    code: str, *, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this environment."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
    )  # fmt: skip


def predict_in_fresh_process(pkg: Path, inputs_code: str, cwd: Path) -> Any:
    """Load ``pkg`` in a new process, predict on ``inputs_code``, return JSON-decoded output."""
    code = f"""
        import json, numpy as np, tiffin
        from tiffin.schema.signature import named_arrays
        m = tiffin.load({str(pkg)!r})
        x = {inputs_code}
        out = named_arrays(m.predict(x))
        print(json.dumps({{k: np.asarray(v).tolist() for k, v in out.items()}}))
    """
    proc = run_python(code, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def iris_pipeline() -> tuple[Any, np.ndarray]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return model, X


@pytest.fixture
def packed_iris(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> Path:
    import tiffin

    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "iris-1.0.0", name="iris", version="1.0.0", example=X[:5])
    return pkg.path
