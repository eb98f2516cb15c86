"""Environment tests pack with the real capture and lock, into a private env cache.

Environments are shared: one session-scoped cache folder, so packages with the same lock
reuse one build. ``make_wheel`` writes real (tiny) wheels into a local find-links folder,
so tests can lock a library at versions that exist nowhere else, with no network.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import textwrap
import zipfile
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

SCALE_MODEL = textwrap.dedent(
    """
    import numpy as np


    class Scaled:
        def load(self, context):
            pass

        def predict(self, inputs):
            import tiffinscale  # from the local wheel "tiffin-scale"

            return np.asarray(inputs, dtype=np.float64) * tiffinscale.FACTOR
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


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """Write a pure-Python wheel ``name==version`` holding ``files`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    norm = name.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: tiffin-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in contents.items():
            zf.writestr(path, text)
    return wheel


@pytest.fixture(scope="session")
def scale_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links folder with tiffin-scale 1.0 (FACTOR = 1) and 2.0 (FACTOR = 2)."""
    folder = tmp_path_factory.mktemp("wheels")
    for version, factor in (("1.0", 1), ("2.0", 2)):
        make_wheel(
            folder, "tiffin-scale", version, {"tiffinscale/__init__.py": f"FACTOR = {factor}\n"}
        )
    return folder


@pytest.fixture
def scale_installed(
    scale_wheels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """tiffin-scale 1.0 'installed' for this test (a site folder on sys.path and PYTHONPATH),
    its wheels findable by uv (UV_FIND_LINKS); yields the model source file."""
    site = tmp_path / "site"
    with zipfile.ZipFile(scale_wheels / "tiffin_scale-1.0-py3-none-any.whl") as zf:
        zf.extractall(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("UV_FIND_LINKS", str(scale_wheels))
    src = tmp_path / "scalemodel.py"
    src.write_text(SCALE_MODEL)
    yield src
    sys.modules.pop("tiffinscale", None)


@pytest.fixture(scope="session")
def packed_env_iris(tmp_path_factory: pytest.TempPathFactory, env_cache: Path) -> Path:
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
