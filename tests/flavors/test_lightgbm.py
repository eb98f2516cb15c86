from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

import tiffin
from tests.flavors._roundtrip import assert_reproducible, fresh_predict


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5))
    y = np.where(X[:, 0] > 0.3, "high", np.where(X[:, 0] < -0.3, "low", "mid"))
    return X, y


def test_classifier_labels_and_proba(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    clf = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
    pkg = tiffin.pack(clf, tmp_path / "p", name="l", version="1", example=X[:4])
    assert pkg.manifest.flavor == "lightgbm"
    got = tiffin.load(pkg.path).predict(X)
    assert got.tolist() == clf.predict(X).tolist()
    proba = tiffin.pack(
        clf, tmp_path / "q", name="l", version="1", example=X[:4], method="predict_proba"
    )
    np.testing.assert_allclose(
        fresh_predict(proba.path, X, tmp_path), clf.predict_proba(X), atol=1e-9
    )


def test_binary_and_regressor(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    yb = (X[:, 1] > 0).astype(int)
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, yb)
    pkg = tiffin.pack(
        clf, tmp_path / "b", name="l", version="1", example=X[:4], method="predict_proba"
    )
    np.testing.assert_allclose(tiffin.load(pkg.path).predict(X), clf.predict_proba(X), atol=1e-9)
    reg = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, X[:, 2])
    pkg = tiffin.pack(reg, tmp_path / "r", name="l", version="1", example=X[:4])
    np.testing.assert_allclose(fresh_predict(pkg.path, X, tmp_path), reg.predict(X), atol=1e-9)


def test_booster_text_file(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, X[:, 0]), 5)
    src = tmp_path / "model.txt"
    booster.save_model(str(src))
    pkg = tiffin.pack(src, tmp_path / "p", name="l", version="1", example=X[:3])
    assert pkg.manifest.flavor == "lightgbm"
    np.testing.assert_allclose(tiffin.load(pkg.path).predict(X), booster.predict(X), atol=1e-9)


def test_reproducible_and_signature(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    assert_reproducible(clf, tmp_path, name="l", version="1", example=X[:3])
    m = tiffin.load(tmp_path / "repro-a")
    with pytest.raises(tiffin.SignatureError, match="expects shape"):
        m.predict(X[:, :2])
