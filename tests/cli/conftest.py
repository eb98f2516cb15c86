"""Fixtures shared by the command tests: a model file to pack, and models of every output kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

KINDS_MODEL = """
import numpy as np
import pandas as pd


class Tensor:
    def load(self, context):
        pass

    def predict(self, inputs):
        # Any width in, three columns out: the output's shape does not follow the input's.
        x = np.asarray(inputs, dtype=np.float64)
        return (x.sum(axis=1, keepdims=True) * [1, 2, 3]).astype(np.float32)


class Frame(Tensor):
    def predict(self, inputs):
        x = np.asarray(inputs, dtype=np.float64)
        return pd.DataFrame({"label": [f"r{v:.0f}" for v in x[:, 0]], "n": x[:, 1].astype(np.int64)})


class Dict(Tensor):
    def predict(self, inputs):
        x = np.asarray(inputs, dtype=np.float64)
        return {"label": np.array([f"r{v:.0f}" for v in x[:, 0]], dtype=object),
                "score": x[:, :2].astype(np.float32)}


class Strings(Tensor):
    def predict(self, inputs):
        return [f"r{v:.0f}" for v in np.asarray(inputs, dtype=np.float64)[:, 0]]
"""


@pytest.fixture
def skops_file(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> Path:
    import skops.io as sio

    model, X = iris_pipeline
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    np.save(tmp_path / "example.npy", X[:5])
    return path


@pytest.fixture
def kinds_model(tmp_path: Path) -> str:
    (tmp_path / "kinds.py").write_text(KINDS_MODEL)
    np.save(tmp_path / "example.npy", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    return f"{tmp_path / 'kinds.py'}"
