from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import tiffin
from tests.conftest import predict_in_fresh_process
from tests.flavors._roundtrip import assert_reproducible, fresh_predict
from tiffin.flavors import lightgbm as flavor


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
    src = tmp_path / "model.lgb"  # recognised by its content, whatever its name
    booster.save_model(str(src))
    assert flavor.detect_file(src)
    pkg = tiffin.pack(src, tmp_path / "p", name="l", version="1", example=X[:3])
    assert pkg.manifest.flavor == "lightgbm"
    text = (pkg.path / "artifacts/model.txt").read_text()
    assert text.startswith("tree\nversion=") and "[num_threads:" not in text
    np.testing.assert_allclose(
        fresh_predict(pkg.path, X, tmp_path), booster.predict(X), rtol=0, atol=1e-9
    )
    packed_booster = tiffin.pack(booster, tmp_path / "b", name="l", version="1", example=X[:3])
    assert packed_booster.digest == pkg.digest  # same model, same package
    for name, body in [("a.txt", "tree\n"), ("b.txt", "hello"), ("c.json", "{}")]:
        (tmp_path / name).write_text(body)
        assert not flavor.detect_file(tmp_path / name)


def test_dataframe_with_categories(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 400
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "city": pd.Categorical(rng.choice(["oslo", "lima", "pune"], n)),
            "items": rng.integers(0, 9, n),
        }
    )
    y = np.where(frame["city"] == "lima", "fraud", np.where(frame["amount"] > 1, "fraud", "ok"))
    clf = lgb.LGBMClassifier(n_estimators=8, min_child_samples=5, verbose=-1).fit(frame, y)
    pkg = tiffin.pack(clf, tmp_path / "p", name="l", version="1", example=frame[:5])
    assert pkg.manifest.runtime["options"]["categorical"] == ["city"]
    assert_reproducible(clf, tmp_path, name="l", version="1", example=frame[:5])
    # Plain strings (as JSON or a server sends them) without "lima": pandas would code
    # the rest differently from training, so the flavor must use the model's categories.
    rows = frame[frame["city"] != "lima"]
    request = tmp_path / "rows.json"
    request.write_text(json.dumps({c: rows[c].astype(object).tolist() for c in rows}))
    got = predict_in_fresh_process(pkg.path, f"json.load(open({str(request)!r}))", tmp_path)
    assert got["output"] == clf.predict(rows).tolist()
    m = tiffin.load(pkg.path)
    assert m.predict(frame).tolist() == clf.predict(frame).tolist()


def test_bad_method_and_unfitted(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, X[:, 0]), 2)
    with pytest.raises(tiffin.FlavorError, match="'predict_proba' is not available"):
        tiffin.pack(booster, tmp_path / "a", name="l", version="1", example=X[:2],
                    method="predict_proba")  # fmt: skip
    with pytest.raises(tiffin.FlavorError, match="not fitted"):
        tiffin.pack(lgb.LGBMClassifier(), tmp_path / "b", name="l", version="1", example=X[:2])
    reg = lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(X, X[:, 0])
    with pytest.raises(tiffin.FlavorError, match="no method 'predict_proba'"):
        tiffin.pack(reg, tmp_path / "c", name="l", version="1", example=X[:2],
                    method="predict_proba")  # fmt: skip
    assert not any(p.name in ("a", "b", "c") for p in tmp_path.iterdir())


def test_reproducible_signature_and_tamper(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = data
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    assert_reproducible(clf, tmp_path, name="l", version="1", example=X[:3])
    m = tiffin.load(tmp_path / "repro-a")
    with pytest.raises(tiffin.SignatureError, match="expects shape"):
        m.predict(X[:, :2])
    with pytest.raises(tiffin.SignatureError, match="expects dtype float64"):
        m.predict(X.astype(str))
    art = tmp_path / "repro-a/artifacts/model.txt"
    raw = bytearray(art.read_bytes())
    raw[200] ^= 1
    art.write_bytes(bytes(raw))
    with pytest.raises(tiffin.IntegrityError, match="artifacts/model.txt"):
        tiffin.load(tmp_path / "repro-a")
