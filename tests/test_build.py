from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tiffin._build import build


def _repo(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], table: str) -> Path:
    import skops.io as sio

    model, X = iris_pipeline
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    sio.dump(model, repo / "model.skops")
    np.save(repo / "data" / "example.npy", X[:3])
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0"\n\n' + textwrap.dedent(table)
    )
    return repo


def test_build_from_pyproject(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    repo = _repo(tmp_path, iris_pipeline, """
        [tool.tiffin]
        name = "iris"
        version = "2.1.0"
        source = "model.skops"
        example = "data/example.npy"
        [tool.tiffin.metadata]
        description = "Iris from CI"
        license = "MIT"
    """)  # fmt: skip
    pkg = build(repo)
    assert pkg.path == repo / "dist" / "iris-2.1.0"
    assert pkg.manifest.metadata == {"description": "Iris from CI", "license": "MIT"}
    model, X = iris_pipeline
    np.testing.assert_array_equal(tiffin.load(pkg.path).predict(X), model.predict(X))
    # Same repository, same command: same digest.
    again = build(repo, force=True)
    assert again.digest == pkg.digest


def test_build_cli_and_tiffin_toml(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    repo = _repo(tmp_path, iris_pipeline, "")
    (repo / "tiffin.toml").write_text(
        'name = "iris"\nversion = "1.0.0"\nsource = "model.skops"\nexample = "data/example.npy"\nout = "pkgs/iris"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "build", str(repo)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (repo / "pkgs" / "iris" / "tiffin.json").is_file()


def test_build_factory(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    repo = _repo(tmp_path, iris_pipeline, """
        [tool.tiffin]
        name = "iris"
        version = "1.0.0"
        factory = "train.py:make_model"
        example = "data/example.npy"
    """)  # fmt: skip
    (repo / "train.py").write_text(
        "import skops.io as sio\n\ndef make_model():\n    return sio.load('model.skops', trusted=sio.get_untrusted_types(file='model.skops'))\n"
    )
    import os

    cwd = os.getcwd()
    os.chdir(repo)
    try:
        pkg = build(repo)
    finally:
        os.chdir(cwd)
    assert pkg.manifest.flavor == "sklearn"


_T = '[tool.tiffin]\nname = "iris"\nversion = "1"\nsource = "model.skops"\n'


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ('[tool.tiffin]\nname = "iris"\nsource = "model.skops"\n', "'version' is required"),
        ('[tool.tiffin]\nname = "iris"\nversion = "1"\n', "exactly one of 'source' or 'factory'"),
        ('[tool.tiffin]\nname = "iris"\nversion = "1"\nsource = "m"\nbogus = 1\n', "unknown key"),
        ("[tool.tiffin\n", "not valid TOML"),
        # Wrong TOML types are named, never coerced or iterated character by character.
        (_T + 'code = "src/features.py"\n', "'code' must be an array of strings"),
        (_T + 'requirements = "numpy==2.0"\n', "'requirements' must be an array of strings"),
        (_T + 'artifacts = "vocab.txt"\n', "'artifacts' must be a table of strings"),
        (_T + "example = 3\n", "'example' must be a string"),
        (_T + 'metadata = "x"\n', "'metadata' must be a table"),
        (_T + 'strict = "no"\n', "'strict' must be true or false"),
        ('[tool.tiffin]\nname = "iris"\nversion = 1.10\nsource = "model.skops"\n', "'version'"),
        ('[tool.tiffin]\nname = "Iris"\nversion = "1"\nsource = "model.skops"\n', "invalid"),
        ('[tool.tiffin]\nname = "iris"\nversion = "latest"\nsource = "m.skops"\n', "moving"),
        (_T + "dynamic_axes = [1]\n", "'dynamic_axes' must be a table of arrays of integers"),
        (
            _T + "[tool.tiffin.dynamic_axes]\ninput = 1\n",
            "array of integers \\(axes\\); it is int 1",
        ),
        (
            _T + '[tool.tiffin.dynamic_axes]\ninput = ["1"]\n',
            "dynamic_axes.input .*it holds str '1'",
        ),
        (_T + "[tool.tiffin.dynamic_axes]\ninput = [true]\n", "it holds bool True"),
        (_T + "[tool.tiffin.dynamic_axes]\ninput = [1, 1.0]\n", "it holds float 1.0"),
        ("tool = 3\n", "no \\[tool.tiffin\\] table"),
        ("[tool]\ntiffin = 3\n", "tool.tiffin must be a table"),
    ],
)
def test_bad_configs(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], table: str, match: str
) -> None:
    repo = _repo(tmp_path, iris_pipeline, "")
    (repo / "pyproject.toml").write_text(table)
    with pytest.raises(tiffin.UsageError, match=match):
        build(repo)

    assert not (repo / "dist").exists()  # nothing made for a refused config


def test_failing_factory_and_missing_config_are_clear(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    repo = _repo(tmp_path, iris_pipeline, """
        [tool.tiffin]
        name = "iris"
        version = "1"
        factory = "train.py:make"
    """)  # fmt: skip
    (repo / "train.py").write_text("def make():\n    raise RuntimeError('no data here')\n")
    with pytest.raises(tiffin.TiffinError, match="factory train.py:make raised RuntimeError"):
        build(repo)
    (repo / "train.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(tiffin.TiffinError, match="ModuleNotFoundError"):
        build(repo)
    with pytest.raises(tiffin.UsageError, match="does not exist"):
        build(repo / "nope.toml")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "build", str(repo)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.startswith("error: the factory")
    assert "Traceback" not in proc.stderr


SUM_MODEL = """
import numpy as np


class Sum:
    def load(self, context):
        pass

    def predict(self, inputs):
        return np.asarray(inputs).sum(axis=1)
"""


def test_build_dynamic_axes(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    repo = _repo(tmp_path, iris_pipeline, """
        [tool.tiffin]
        name = "sum"
        version = "1"
        source = "sum.py:Sum"
        example = "data/example.npy"
        [tool.tiffin.dynamic_axes]
        input = [1]
    """)  # fmt: skip
    (repo / "sum.py").write_text(SUM_MODEL)
    pkg = build(repo)
    assert json.loads((pkg.path / "schema.json").read_text())["inputs"][0]["shape"] == [-1, -1]
    np.testing.assert_array_equal(tiffin.load(pkg.path).predict(np.ones((2, 7))), [7.0, 7.0])


@pytest.mark.parametrize(
    ("axes", "match"),
    [("tokens = [1]", "names 'tokens', which is no input or output"), ("input = [2]", "no axis 2")],
)
def test_build_dynamic_axes_the_signature_refuses(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], axes: str, match: str
) -> None:
    table = _T + f'example = "data/example.npy"\n[tool.tiffin.dynamic_axes]\n{axes}\n'
    repo = _repo(tmp_path, iris_pipeline, table)
    with pytest.raises(tiffin.SignatureError, match=match):
        build(repo)
    assert not (repo / "dist").exists()  # pack removes the parent folders it made
