from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

import tiffin
from tests.flavors._roundtrip import assert_reproducible, fresh_predict


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
    np.testing.assert_allclose(
        fresh_predict(pkg.path, X, tmp_path), clf.predict_proba(X), atol=1e-6
    )
    labels = tiffin.pack(clf, tmp_path / "q", name="x", version="1", example=X[:4])
    np.testing.assert_array_equal(fresh_predict(labels.path, X, tmp_path), clf.predict(X))


def test_booster_and_file_path(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), num_boost_round=5)
    expected = booster.predict(xgb.DMatrix(X))
    pkg = tiffin.pack(booster, tmp_path / "b", name="x", version="1", example=X[:3])
    np.testing.assert_allclose(fresh_predict(pkg.path, X, tmp_path), expected, atol=1e-6)
    for suffix in ("ubj", "json"):
        src = tmp_path / f"model.{suffix}"
        booster.save_model(str(src))
        pkg = tiffin.pack(src, tmp_path / f"f-{suffix}", name="x", version="1", example=X[:3])
        assert pkg.manifest.flavor == "xgboost"
        np.testing.assert_allclose(tiffin.load(pkg.path).predict(X), expected, atol=1e-6)


def test_regressor_reproducible(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    reg = xgb.XGBRegressor(n_estimators=5).fit(X, y.astype(float))
    assert_reproducible(reg, tmp_path, name="r", version="1", example=X[:3])


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
