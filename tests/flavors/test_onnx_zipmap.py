"""ONNX classifiers whose probabilities come out of a ZipMap (a sequence of maps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import tiffin
from tests.conftest import predict_in_fresh_process

X, Y = load_iris(return_X_y=True)
X32 = X.astype(np.float32)
NAMES = np.array(["setosa", "versicolor", "virginica"])


def _skl2onnx(model: object) -> onnx.ModelProto:
    from skl2onnx import to_onnx

    proto = to_onnx(model, X32[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    assert "ZipMap" in [n.op_type for n in proto.graph.node]  # skl2onnx's default
    return proto


def test_int_labels_in_process_and_fresh(tmp_path: Path) -> None:
    clf = LogisticRegression(max_iter=500).fit(X, Y)
    pkg = tiffin.pack(_skl2onnx(clf), tmp_path / "p", name="lr", version="1", example=X32[:5])
    zipmap = pkg.manifest.runtime["options"]["zipmap"]
    assert zipmap["output_probability"]["labels"] == [0, 1, 2]
    model = pkg.load()
    specs = {s.name: s for s in model.signature.outputs}
    assert specs["output_probability"].dtype == "float32"
    assert specs["output_probability"].shape == (-1, 3)
    assert specs["output_label"].dtype == "int64"
    assert model.signature.params["onnx_zipmap"] == zipmap
    assert "float32 [n, n_classes]" in zipmap["output_probability"]["mapping"]
    out = model.predict(X32)
    np.testing.assert_allclose(out["output_probability"], clf.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(out["output_label"], clf.predict(X))
    np.save(tmp_path / "x.npy", X32[:7])
    fresh = predict_in_fresh_process(pkg.path, "np.load('x.npy')", tmp_path)
    np.testing.assert_allclose(
        np.asarray(fresh["output_probability"], np.float32), clf.predict_proba(X[:7]), atol=1e-5
    )


def test_string_labels_keep_their_order(tmp_path: Path) -> None:
    clf = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, NAMES[Y])
    pkg = tiffin.pack(_skl2onnx(clf), tmp_path / "p", name="rf", version="1", example=X32[:5])
    labels = pkg.manifest.runtime["options"]["zipmap"]["output_probability"]["labels"]
    assert labels == list(clf.classes_)
    out = pkg.load().predict(X32)
    np.testing.assert_allclose(out["output_probability"], clf.predict_proba(X), atol=1e-5)
    assert list(out["output_label"]) == list(clf.predict(X))


def test_through_the_server_codec(tmp_path: Path) -> None:
    from tiffin.serve.protocols.v2_codec import decode_request, encode_response

    clf = LogisticRegression(max_iter=500).fit(X, Y)
    pkg = tiffin.pack(_skl2onnx(clf), tmp_path / "p", name="lr", version="1", example=X32[:5])
    model = tiffin.load(pkg.path)
    request = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 4],
                           "data": X32[:4].ravel().tolist()}]}  # fmt: skip
    arrays, header = decode_request(json.dumps(request).encode(), None)
    body, _ = encode_response(model.predict_named(arrays), header, "lr", "1")
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    probability = outputs["output_probability"]
    assert probability["datatype"] == "FP32" and probability["shape"] == [4, 3]
    np.testing.assert_allclose(
        np.reshape(probability["data"], (4, 3)), clf.predict_proba(X[:4]), atol=1e-5
    )
    assert outputs["output_label"]["data"] == clf.predict(X[:4]).tolist()


def test_catboost_onnx_export(tmp_path: Path) -> None:
    import catboost

    clf = catboost.CatBoostClassifier(
        iterations=20, depth=3, verbose=False, random_seed=0, allow_writing_files=False
    )
    clf.fit(X, Y)
    src = tmp_path / "cb.onnx"
    clf.save_model(str(src), format="onnx")
    pkg = tiffin.pack(src, tmp_path / "p", name="cb", version="1", example=X32[:5])
    assert pkg.manifest.runtime["options"]["zipmap"]["probabilities"]["labels"] == [0, 1, 2]
    out = pkg.load().predict(X32)
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(out["label"], clf.predict(X).ravel())
