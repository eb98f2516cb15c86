from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

import tiffin
from tests.conftest import predict_in_fresh_process
from tests.flavors._roundtrip import assert_reproducible, fresh_predict
from tests.security._mutation import encode_ubj
from tiffin.flavors import xgboost as flavor
from tiffin.security.xgboost_check import parse_model


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def test_classifier_proba_round_trip(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    clf = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, y)
    pkg = tiffin.pack(
        clf, tmp_path / "p", name="x", version="1", example=X[:4], method="predict_proba"
    )
    assert pkg.manifest.flavor == "xgboost"
    assert pkg.manifest.runtime["options"]["wrapper"] == "XGBClassifier"
    np.testing.assert_allclose(
        fresh_predict(pkg.path, X, tmp_path), clf.predict_proba(X), rtol=0, atol=1e-6
    )
    labels = tiffin.pack(clf, tmp_path / "q", name="x", version="1", example=X[:4])
    np.testing.assert_array_equal(fresh_predict(labels.path, X, tmp_path), clf.predict(X))


def test_booster_and_file_paths(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), num_boost_round=5)
    expected = booster.predict(xgb.DMatrix(X))
    pkg = tiffin.pack(booster, tmp_path / "b", name="x", version="1", example=X[:3])
    assert pkg.manifest.runtime["options"]["wrapper"] is None
    np.testing.assert_allclose(fresh_predict(pkg.path, X, tmp_path), expected, rtol=0, atol=1e-6)
    for suffix in ("ubj", "json", "bin"):  # recognised by the bytes, whatever the name
        src = tmp_path / f"model.{suffix}"
        booster.save_model(str(src.with_suffix(".json" if suffix == "json" else ".ubj")))
        if suffix == "bin":
            src.write_bytes(src.with_suffix(".ubj").read_bytes())
        pkg = tiffin.pack(src, tmp_path / f"f-{suffix}", name="x", version="1", example=X[:3])
        assert pkg.manifest.flavor == "xgboost"
        np.testing.assert_allclose(tiffin.load(pkg.path).predict(X), expected, rtol=0, atol=1e-6)


def test_wrapper_file_reloads_as_wrapper(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = data
    clf = xgb.XGBClassifier(n_estimators=4).fit(X, y)
    src = tmp_path / "clf.json"
    clf.save_model(str(src))
    pkg = tiffin.pack(
        src, tmp_path / "p", name="x", version="1", example=X[:3], method="predict_proba"
    )
    assert pkg.manifest.runtime["options"]["wrapper"] == "XGBClassifier"
    np.testing.assert_allclose(
        tiffin.load(pkg.path).predict(X), clf.predict_proba(X), rtol=0, atol=1e-6
    )


def test_detect_file_by_bytes(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    xgb.XGBRegressor(n_estimators=2).fit(X, y).save_model(str(tmp_path / "m.ubj"))
    assert flavor.detect_file(tmp_path / "m.ubj")
    for name, body in [("other.json", b'{"a": 1}'), ("x.ubj", b"{Ugarbage"), ("e.ubj", b"")]:
        (tmp_path / name).write_bytes(body)
        assert not flavor.detect_file(tmp_path / name), name
    assert not flavor.detect_file(tmp_path / "missing.ubj")


def test_dataframe_with_categories(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "city": pd.Categorical(rng.choice(["oslo", "lima", "pune"], n)),
            "items": rng.integers(0, 9, n),
        }
    )
    y = ((frame["city"] == "lima") | (frame["amount"] > 0.5)).astype(int)
    clf = xgb.XGBClassifier(n_estimators=6, enable_categorical=True, max_cat_to_onehot=1)
    clf.fit(frame, y)
    pkg = tiffin.pack(
        clf, tmp_path / "p", name="x", version="1", example=frame[:5], method="predict_proba"
    )
    # A fresh process sends plain strings (as JSON or a server would) without "lima", so
    # the codes pandas gives the rest differ from training: XGBoost must re-code them.
    rows = frame[frame["city"] != "lima"]
    request = tmp_path / "rows.json"
    request.write_text(json.dumps({c: rows[c].astype(object).tolist() for c in rows}))
    got = predict_in_fresh_process(pkg.path, f"json.load(open({str(request)!r}))", tmp_path)
    np.testing.assert_allclose(
        np.asarray(got["output"]), clf.predict_proba(rows), rtol=0, atol=1e-6
    )


def test_ranker_and_regressor_reproducible(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = data
    reg = xgb.XGBRegressor(n_estimators=5).fit(X, y.astype(float))
    assert_reproducible(reg, tmp_path, name="r", version="1", example=X[:3])
    qid = np.repeat(np.arange(20), 10)
    ranker = xgb.XGBRanker(n_estimators=4).fit(X, y, qid=qid)
    pkg = tiffin.pack(ranker, tmp_path / "rank", name="r", version="1", example=X[:3])
    assert pkg.manifest.runtime["options"]["wrapper"] == "XGBRanker"
    np.testing.assert_allclose(fresh_predict(pkg.path, X, tmp_path), ranker.predict(X), atol=1e-6)


def test_bad_method_and_unfitted(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    booster = xgb.train({}, xgb.DMatrix(X, label=y), num_boost_round=2)
    with pytest.raises(tiffin.FlavorError, match="'predict_proba' is not available"):
        tiffin.pack(booster, tmp_path / "a", name="x", version="1", example=X[:2],
                    method="predict_proba")  # fmt: skip
    with pytest.raises(tiffin.FlavorError, match="not fitted"):
        tiffin.pack(xgb.XGBClassifier(), tmp_path / "b", name="x", version="1", example=X[:2])
    with pytest.raises(tiffin.FlavorError, match="no method 'explain'"):
        tiffin.pack(xgb.XGBClassifier(n_estimators=1).fit(X, y), tmp_path / "c", name="x",
                    version="1", example=X[:2], method="explain")  # fmt: skip
    assert not any(p.name in ("a", "b", "c") for p in tmp_path.iterdir())


def test_signature_and_tamper(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    reg = xgb.XGBRegressor(n_estimators=3).fit(X, y)
    pkg = tiffin.pack(reg, tmp_path / "p", name="r", version="1", example=X[:3])
    m = tiffin.load(pkg.path)
    with pytest.raises(tiffin.SignatureError, match="expects dtype float32"):
        m.predict(X.astype(np.float64))
    with pytest.raises(tiffin.SignatureError, match="expects shape"):
        m.predict(X[:, :3])
    art = pkg.path / "artifacts/model.ubj"
    data_ = bytearray(art.read_bytes())
    data_[10] ^= 1
    art.write_bytes(bytes(data_))
    with pytest.raises(tiffin.IntegrityError, match="artifacts/model.ubj"):
        tiffin.load(pkg.path)


def _reseal_with(pkg: Path, data: bytes) -> None:
    """Swap the model file and re-seal the manifest, as an attacker who can write would."""
    import dataclasses

    from tiffin.package.integrity import index_files, read_manifest

    (pkg / "artifacts" / "model.ubj").write_bytes(data)
    resealed = dataclasses.replace(read_manifest(pkg), files=index_files(pkg)).seal()
    (pkg / "tiffin.json").write_bytes(resealed.to_bytes())


def test_forged_model_files_are_refused_before_xgboost_reads_them(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """One edited field of a tree kills XGBoost's process at load or predict; a re-sealed
    package with such a file must be a FlavorError naming the field, in JSON and UBJSON."""
    X, y = data
    clf = xgb.XGBClassifier(n_estimators=3, max_depth=3).fit(X, y)
    pkg = tiffin.pack(clf, tmp_path / "p", name="x", version="1", example=X[:3]).path
    clf.save_model(str(tmp_path / "good.json"))
    good = json.loads((tmp_path / "good.json").read_text())
    template = parse_model((pkg / "artifacts" / "model.ubj").read_bytes())
    assert _ubj(good, template) == (pkg / "artifacts" / "model.ubj").read_bytes()

    def edit(change: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(good))
        change(doc["learner"], doc["learner"]["gradient_booster"]["model"])
        return doc

    def tree(model: dict[str, Any], key: str, i: int, value: Any) -> None:
        model["trees"][1][key][i] = value

    cases: dict[str, tuple[Any, str]] = {
        "child out of range": (
            lambda lr, m: tree(m, "left_children", 0, 9999),
            "tree 1 left_children",
        ),
        "child backwards (a cycle)": (
            lambda lr, m: tree(m, "right_children", 0, 0),
            "tree 1 right_children",
        ),
        "one child": (lambda lr, m: tree(m, "left_children", 0, -1), "one child"),
        "feature out of range": (
            lambda lr, m: tree(m, "split_indices", 0, 6),
            "split_indices: feature 6",
        ),
        "parent out of range": (
            lambda lr, m: tree(m, "parents", 1, 2147483647),
            "tree 1 parents",
        ),
        "short array": (lambda lr, m: m["trees"][1]["sum_hessian"].pop(), "tree 1 sum_hessian"),
        "tree_info group": (
            lambda lr, m: m["tree_info"].__setitem__(2, 3),
            "tree_info names output group 3",
        ),
        "tree_info length": (lambda lr, m: m["tree_info"].pop(), "tree_info has"),
        "num_trees": (
            lambda lr, m: m["gbtree_model_param"].__setitem__("num_trees", "99"),
            "num_trees",
        ),
        "num_class": (
            lambda lr, m: lr["learner_model_param"].__setitem__("num_class", "2"),
            "3 values for 2 output groups",
        ),
        "base_score": (
            lambda lr, m: lr["learner_model_param"].__setitem__("base_score", "[0.5,0.5]"),
            "base_score",
        ),
        "best_iteration": (
            lambda lr, m: lr["attributes"].__setitem__("best_iteration", "x"),
            "best_iteration",
        ),
        "iteration_indptr": (
            lambda lr, m: m["iteration_indptr"].__setitem__(1, 7),
            "iteration_indptr",
        ),
    }
    for label, (change, message) in cases.items():
        doc = edit(change)
        for blob in (json.dumps(doc).encode(), _ubj(doc, template)):
            _reseal_with(pkg, blob)
            with pytest.raises(tiffin.FlavorError, match=message) as caught:
                tiffin.load(pkg)
            assert "malformed XGBoost model" in str(caught.value), label
    src = tmp_path / "forged.json"
    src.write_text(json.dumps(edit(cases["child out of range"][0])))
    with pytest.raises(tiffin.FlavorError, match="left_children"):
        tiffin.pack(src, tmp_path / "q", name="x", version="1", example=X[:3])
    _reseal_with(pkg, (tmp_path / "good.json").read_bytes())
    np.testing.assert_allclose(tiffin.load(pkg).predict(X), clf.predict(X))


def _ubj(doc: Any, template: Any) -> bytes:
    """A JSON document as XGBoost's UBJSON: arrays typed as in ``template`` (a UBJSON
    model XGBoost wrote, parsed), values wrapped to the type as raw bytes would be."""

    def typed(value: Any, like: Any) -> Any:
        if isinstance(value, dict) and isinstance(like, dict):
            return {k: typed(v, like.get(k)) for k, v in value.items()}
        if isinstance(value, list) and isinstance(like, list):
            return [typed(v, like[min(i, len(like) - 1)]) for i, v in enumerate(value)]
        if isinstance(value, list) and isinstance(like, np.ndarray):
            if like.dtype.kind == "f":
                return np.asarray(value, dtype=like.dtype)
            return np.asarray(value, dtype=np.int64).astype(like.dtype)
        return value

    return encode_ubj(typed(doc, template))[0]


def test_every_kind_of_booster_passes_the_check(tmp_path: Path) -> None:
    """DART, linear, random-forest (parallel trees), multiclass, ranking, count and
    categorical boosters, in JSON and UBJSON, pass the check and predict as before;
    vector-leaf trees, which it does not read, are refused at pack with a clear error."""
    from tiffin.security.xgboost_check import check_model_bytes

    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    X[:, 3] = rng.integers(0, 6, 120)
    labels = rng.integers(0, 3, 120)

    def train(params: dict[str, Any], y: np.ndarray, rounds: int = 3, **kw: Any) -> Any:
        dtrain = xgb.DMatrix(X, label=y, **kw)
        depth = {} if params.get("booster") == "gblinear" else {"max_depth": 3}
        return xgb.train({**depth, **params}, dtrain, rounds)

    cat = {"feature_types": ["q", "q", "q", "c"], "enable_categorical": True}
    boosters = {
        "dart": train({"booster": "dart", "objective": "multi:softprob", "num_class": 3}, labels),
        "linear": train(
            {"booster": "gblinear", "objective": "multi:softprob", "num_class": 3}, labels
        ),
        "forest": train(
            {"num_parallel_tree": 4, "subsample": 0.8, "objective": "binary:logistic"}, labels > 0
        ),
        "softmax": train({"objective": "multi:softmax", "num_class": 3}, labels),
        "poisson": train({"objective": "count:poisson"}, labels),
        "categorical": train(
            {"max_cat_to_onehot": 1, "objective": "multi:softprob", "num_class": 3}, labels, **cat
        ),
        "two targets": train({"tree_method": "hist"}, np.column_stack([X[:, 0], X[:, 1]])),
    }
    for name, booster in boosters.items():
        for fmt in ("json", "ubj"):
            check_model_bytes(bytes(booster.save_raw(raw_format=fmt)), f"{name}.{fmt}")
        example = X[:3]
        dmatrix = xgb.DMatrix(X, **(cat if name == "categorical" else {}))
        pkg = tiffin.pack(booster, tmp_path / name, name="x", version="1", example=example)
        np.testing.assert_allclose(tiffin.load(pkg.path).predict(X), booster.predict(dmatrix))
    stopped = xgb.XGBClassifier(n_estimators=50, early_stopping_rounds=2, max_depth=2)
    stopped.fit(X[:80], labels[:80], eval_set=[(X[80:], labels[80:])], verbose=False)
    assert stopped.get_booster().attr("best_iteration") is not None
    pkg = tiffin.pack(stopped, tmp_path / "stopped", name="x", version="1", example=X[:3])
    np.testing.assert_array_equal(tiffin.load(pkg.path).predict(X), stopped.predict(X))
    vector = train({"tree_method": "hist", "multi_strategy": "multi_output_tree"}, X[:, :2])
    with pytest.raises(tiffin.FlavorError, match="vector leaves"):
        tiffin.pack(vector, tmp_path / "vector", name="x", version="1", example=X[:3])
    assert not (tmp_path / "vector").exists()
