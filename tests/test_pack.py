from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tiffin.package.integrity import walk_files


def _files(root: Path) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in walk_files(root)}


def test_pack_layout(packed_iris: Path) -> None:
    names = set(walk_files(packed_iris))
    assert {
        "tiffin.json", "schema.json", "README.md", "artifacts/model.skops",
        "env/requirements.txt", "examples/input.json", "examples/output.json",
    } <= names  # fmt: skip
    manifest = tiffin.inspect(packed_iris)
    assert manifest.flavor == "sklearn"
    layers = {f.path: f.layer for f in manifest.files}
    assert layers["artifacts/model.skops"] == "artifact"
    assert layers["schema.json"] == "schema"
    assert layers["env/requirements.txt"] == "environment"
    assert layers["examples/input.json"] == "examples"
    card = (packed_iris / "README.md").read_text()
    assert "# iris 1.0.0" in card and "| `input` | float64 | [any, 4] | NaN |" in card


def test_reproducible_bytes(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    model, X = iris_pipeline
    a = tiffin.pack(model, tmp_path / "a", name="iris", version="1.0.0", example=X[:5])
    b = tiffin.pack(model, tmp_path / "b", name="iris", version="1.0.0", example=X[:5])
    assert a.digest == b.digest
    assert _files(a.path) == _files(b.path)


def test_source_date_epoch(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, X = iris_pipeline
    plain = tiffin.pack(model, tmp_path / "a", name="iris", version="1.0.0", example=X[:5])
    assert plain.manifest.created is None
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = tiffin.pack(model, tmp_path / "b", name="iris", version="1.0.0", example=X[:5])
    assert dated.manifest.created == "2023-11-14T22:13:20Z"
    again = tiffin.pack(model, tmp_path / "c", name="iris", version="1.0.0", example=X[:5])
    assert again.digest == dated.digest != plain.digest
    for bad in ("abc", "-5", "1e9", str(10**20)):  # once silently "no time"
        monkeypatch.setenv("SOURCE_DATE_EPOCH", bad)
        with pytest.raises(tiffin.UsageError, match="SOURCE_DATE_EPOCH"):
            tiffin.pack(model, tmp_path / "d", name="iris", version="1.0.0", example=X[:5])
    assert not (tmp_path / "d").exists()  # nothing half-made
    assert not [p for p in tmp_path.iterdir() if "tiffin-tmp" in p.name]


def test_provenance(packed_iris: Path) -> None:
    prov = tiffin.inspect(packed_iris).provenance
    assert prov["tiffin"] == tiffin.__version__
    assert prov["frameworks"]["scikit-learn"]
    assert prov["python"].count(".") == 2


def test_git_provenance(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    monkeypatch.chdir(repo)
    model, X = iris_pipeline
    pkg = tiffin.pack(model, repo / "out", name="iris", version="1.0.0", example=X[:5])
    git = pkg.manifest.provenance["git"]
    assert len(git["commit"]) == 40 and git["dirty"] is False
    (repo / "train.py").write_text("x = 2\n")
    pkg = tiffin.pack(model, repo / "out2", name="iris", version="1.0.0", example=X[:5])
    assert pkg.manifest.provenance["git"]["dirty"] is True


def test_refuses_to_overwrite(packed_iris: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    model, X = iris_pipeline
    before = _files(packed_iris)
    with pytest.raises(tiffin.ConflictError, match="already exists"):
        tiffin.pack(model, packed_iris, name="iris", version="1.0.0", example=X[:5])
    assert _files(packed_iris) == before


def test_force_replaces_atomically(
    packed_iris: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    model, X = iris_pipeline
    pkg = tiffin.pack(model, packed_iris, name="iris", version="2.0.0", example=X[:5], force=True)
    assert tiffin.inspect(packed_iris).version == "2.0.0" == pkg.version
    leftovers = [p.name for p in packed_iris.parent.iterdir() if "tiffin-tmp" in p.name]
    assert leftovers == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # Name and version are arguments here: a UsageError (exit 2), not a bad tiffin.json.
        ({"name": "Bad Name"}, tiffin.UsageError, "invalid package name"),
        ({"name": "fraud\n"}, tiffin.UsageError, "invalid package name"),
        ({"version": "latest"}, tiffin.UsageError, "moving tag"),
        ({"version": ""}, tiffin.UsageError, "empty"),
        ({"version": "1.0 "}, tiffin.UsageError, "invalid package version"),
        ({"version": "1.0\n"}, tiffin.UsageError, "invalid package version"),
        ({"flavor": "tensorflow"}, tiffin.UsageError, "unknown flavor"),
        ({"example": None}, tiffin.UsageError, "give example="),
        ({"method": "explode"}, tiffin.FlavorError, "no method 'explode'"),
        ({"metadata": {"x": object()}}, tiffin.UsageError, "JSON-serialisable"),
        ({"example": np.zeros((2, 7))}, tiffin.FlavorError, "failed on the example"),
    ],
)
def test_bad_arguments(
    tmp_path: Path,
    iris_pipeline: tuple[Any, np.ndarray],
    kwargs: dict[str, Any],
    error: type,
    match: str,
) -> None:
    model, X = iris_pipeline
    args: dict[str, Any] = {"name": "iris", "version": "1.0.0", "example": X[:5], **kwargs}
    with pytest.raises(error, match=match):
        tiffin.pack(model, tmp_path / "out", **args)
    assert list(tmp_path.iterdir()) in ([], [tmp_path / ".out.tiffin-lock"])


def test_missing_parent_folders_are_created(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    """The README's quick start packs into out/ of a fresh folder."""
    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "out" / "deep" / "iris", name="iris", version="1.0.0",
                      example=X[:5])  # fmt: skip
    assert pkg.path == tmp_path / "out" / "deep" / "iris"
    assert tiffin.load(pkg.path).predict(X[:3]).tolist() == model.predict(X[:3]).tolist()
    assert sorted(p.name for p in (tmp_path / "out" / "deep").iterdir()) == [
        ".iris.tiffin-lock",
        "iris",
    ]
    # A failed pack leaves none of the folders it made, nor anything inside them.
    with pytest.raises(tiffin.FlavorError, match="failed on the example"):
        tiffin.pack(model, tmp_path / "new" / "sub" / "iris", name="iris", version="1.0.0",
                    example=np.zeros((2, 7)))  # fmt: skip
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(tiffin.UsageError, match="not a folder"):
        tiffin.pack(model, tmp_path / "file" / "iris", name="iris", version="1", example=X[:5])


def _pack_and_replay(model: Any, frame: Any, dest: Path, **kwargs: Any) -> Any:
    """Pack, then predict on the recorded example as verify does: it must give the record."""
    from tiffin.schema import typed_json as examples

    pkg = tiffin.pack(model, dest, name="df", version="1", example=frame, **kwargs)
    recorded_in = examples.loads((pkg.path / "examples/input.json").read_bytes())
    recorded_out = examples.loads((pkg.path / "examples/output.json").read_bytes())
    assert list(recorded_in.columns) == list(frame.columns)
    got = tiffin.load(pkg.path).predict(recorded_in)
    assert examples.compare(recorded_out, got) is None
    assert examples.compare(getattr(model, kwargs.get("method", "predict"))(frame), got) is None
    return pkg


def test_dataframe_column_order_is_kept(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LogisticRegression
    from xgboost import XGBRegressor

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"b": rng.normal(size=40), "a": 10 * rng.normal(size=40)})
    lr = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))
    _pack_and_replay(lr, frame.head(5), tmp_path / "lr", method="predict_proba")
    iris = load_iris(as_frame=True).data
    _pack_and_replay(KMeans(3, n_init=2, random_state=0).fit(iris), iris.head(5), tmp_path / "km")
    diabetes = load_diabetes(as_frame=True)
    xgb = XGBRegressor(n_estimators=5, max_depth=2).fit(diabetes.data, diabetes.target)
    assert list(diabetes.data.columns) != sorted(diabetes.data.columns)
    _pack_and_replay(xgb, diabetes.data.head(5), tmp_path / "xgb")


CUSTOM_STATE = """
import numpy as np


class Scaled:
    def __init__(self):
        self.k = 1.0

    def load(self, context):
        pass

    def predict(self, inputs):
        return np.asarray(inputs, dtype=np.float64) * self.k
"""


def test_output_is_the_original_objects_and_a_differing_rebuild_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State the saved package does not carry must stop the pack, not ship wrong answers."""
    (tmp_path / "scaled_model.py").write_text(CUSTOM_STATE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("scaled_model")
    try:
        model = module.Scaled()
        model.k = 3.0  # set after construction: the package rebuilds Scaled() with k = 1
        x = np.array([[1.0, 2.0]])
        with pytest.raises(tiffin.FlavorError, match="does not reproduce") as info:
            tiffin.pack(model, tmp_path / "p", name="s", version="1", example=x)
        assert "'output'" in info.value.message and "largest difference 4" in info.value.message
        assert info.value.fix and "state" in info.value.fix
        assert not (tmp_path / "p").exists()
        model.k = 1.0
        pkg = tiffin.pack(model, tmp_path / "q", name="s", version="1", example=x)
        assert tiffin.load(pkg.path).predict(x).tolist() == [[1.0, 2.0]]
    finally:
        sys.modules.pop("scaled_model", None)


def test_unknown_object_needs_pickle(tmp_path: Path) -> None:
    class Opaque:
        def predict(self, x: Any) -> Any:
            return x

    with pytest.raises((tiffin.UnsafeArtifactError, tiffin.FlavorError)):
        tiffin.pack(Opaque(), tmp_path / "out", name="o", version="1", example=np.zeros((1, 2)))
    assert not (tmp_path / "out").exists()


def test_explicit_signature(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    model, X = iris_pipeline
    sig = {"inputs": [{"name": "features", "dtype": "float64", "shape": [-1, 4]}],
           "outputs": [{"name": "label", "dtype": "int64", "shape": [-1]}]}  # fmt: skip
    pkg = tiffin.pack(
        model, tmp_path / "out", name="iris", version="1", example=X[:2], signature=sig
    )
    m = tiffin.load(pkg.path)
    assert m.signature.inputs[0].name == "features"
    assert m.predict_named({"features": X[:3]})["label"].tolist() == model.predict(X[:3]).tolist()
    schema = json.loads((pkg.path / "schema.json").read_text())
    assert schema["inputs"][0]["name"] == "features"


def test_example_recorded(packed_iris: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    from tiffin.schema import typed_json as examples

    model, X = iris_pipeline
    inp = examples.loads((packed_iris / "examples/input.json").read_bytes())
    out = examples.loads((packed_iris / "examples/output.json").read_bytes())
    np.testing.assert_array_equal(inp, X[:5])
    np.testing.assert_array_equal(out, model.predict(X[:5]))


@pytest.mark.parametrize(
    "method", ["fit", "fit_transform", "partial_fit", "set_params", "_validate_data"]
)
def test_mutating_methods_refused(tmp_path: Path, method: str) -> None:
    """fit_transform would refit the packed scaler on every batch it is asked about."""
    from sklearn.preprocessing import StandardScaler

    X = np.arange(12.0).reshape(6, 2)
    with pytest.raises(tiffin.UsageError, match="changes the model or is private"):
        tiffin.pack(StandardScaler().fit(X), tmp_path / "p", name="s", version="1",
                    example=X, method=method)  # fmt: skip
    assert not (tmp_path / "p").exists()
