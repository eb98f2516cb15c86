"""Environment tests pack with the real capture and lock, into a private env cache."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tiffin


@pytest.fixture(autouse=True)
def real_capture(monkeypatch: pytest.MonkeyPatch, env_cache: Path) -> Iterator[None]:
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "on")
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(env_cache))
    yield


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("env-cache")


PREDICT_IMPORT = textwrap.dedent(
    """
    import numpy as np


    class VersionScaled:
        def load(self, context):
            pass

        def predict(self, inputs):
            import packaging.version  # a third-party module, imported only here

            major = packaging.version.Version(packaging.__version__).major
            return np.asarray(inputs, dtype=np.float64) * major
    """
)


@pytest.fixture
def custom_source(tmp_path: Path) -> Path:
    src = tmp_path / "scaled.py"
    src.write_text(PREDICT_IMPORT)
    return src


def pack_custom(src: Path, dest: Path, **kwargs: object) -> tiffin.Package:
    return tiffin.pack(
        f"{src}:VersionScaled", dest, name="scaled", version="1", example=np.ones((2, 2)), **kwargs
    )  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def packed_env_iris(tmp_path_factory: pytest.TempPathFactory, env_cache: Path) -> Path:
    import os

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    old = {k: os.environ.get(k) for k in ("TIFFIN_ENV_CAPTURE", "TIFFIN_CACHE_DIR")}
    os.environ["TIFFIN_ENV_CAPTURE"] = "on"
    os.environ["TIFFIN_CACHE_DIR"] = str(env_cache)
    try:
        X, y = load_iris(return_X_y=True)
        model = LogisticRegression(max_iter=500).fit(X, y)
        return tiffin.pack(
            model,
            tmp_path_factory.mktemp("envpkg") / "iris",
            name="iris",
            version="1",
            example=X[:3],
        ).path
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
