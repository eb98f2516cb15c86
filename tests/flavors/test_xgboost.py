from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

import tiffin
from tests.conftest import predict_in_fresh_process
from tests.flavors._roundtrip import assert_reproducible, fresh_predict
from tiffin.flavors import xgboost as flavor


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
