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


def _reseal_with(pkg: Path, text: str) -> None:
    """Swap the model text and re-seal the manifest, as an attacker who can write would."""
    import dataclasses

    from tiffin.package.integrity import index_files, read_manifest

    (pkg / "artifacts" / "model.txt").write_bytes(text.encode("utf-8"))
    resealed = dataclasses.replace(read_manifest(pkg), files=index_files(pkg)).seal()
    (pkg / "tiffin.json").write_bytes(resealed.to_bytes())


def _tree_line(text: str, tree: int, key: str) -> str:
    block = text[text.index(f"Tree={tree}\n") :]
    start = block.index(f"\n{key}=") + 1
    return block[start : block.index("\n", start)]


def _resized(text: str) -> str:
    """``tree_sizes`` recomputed after an edit, as a careful attacker would."""
    import re

    trees = text[text.index("\nTree=") + 1 : text.index("\nend of trees") + 1]
    blocks = re.split(r"(?=^Tree=)", trees, flags=re.M)
    sizes = " ".join(str(len(b.encode())) for b in blocks if b)
    return re.sub(r"^tree_sizes=.*$", f"tree_sizes={sizes}", text, count=1, flags=re.M)


def test_malformed_model_text_is_refused_before_lightgbm_reads_it(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """LightGBM's reader dies of SIGABRT/SIGSEGV on a cut-short text and follows child
    indices blindly; a re-sealed package with such a text must be a FlavorError, never a
    dead (or hung) process."""
    X, _ = data
    clf = lgb.LGBMClassifier(n_estimators=4, num_leaves=7, verbose=-1).fit(X, X[:, 0] > 0)
    pkg = tiffin.pack(clf, tmp_path / "p", name="l", version="1", example=X[:3]).path
    good = (pkg / "artifacts" / "model.txt").read_text()
    left = _tree_line(good, 1, "left_child")
    split = _tree_line(good, 0, "split_feature")
    sizes = next(line for line in good.splitlines() if line.startswith("tree_sizes="))
    end_of_parameters = good.index("end of parameters")
    header, params = good[: good.index("\nparameters:")], good[good.index("\nparameters:") :]
    first_param = next(line for line in params.splitlines() if line.startswith("["))
    cut_param = first_param.split(":")[0]  # '[boosting': LightGBM's reader segfaults on it
    wide_child = " ".join([*left.split()[:-1], "4000"])
    cycle = "left_child=" + " ".join(["0"] * len(left.split()))
    far_feature = "split_feature=" + " ".join(["99"] * len(split.split()))
    cases = {
        "cut short": (good[: good.index("Tree=2") + 50], "end of trees"),
        "cut inside the parameters": (good[: end_of_parameters - 5], "end of parameters"),
        "a parameter line cut short": (
            header + params.replace(first_param, cut_param, 1),
            "name: value",
        ),
        "tree sizes off by one": (good.replace(sizes, sizes + "1", 1), "tree_sizes"),
        "child out of range": (good.replace(left, wide_child, 1), "child 4000"),
        "a cycle": (good.replace(left, cycle, 1), "the root is named as a child"),
        "feature out of range": (good.replace(split, far_feature, 1), "feature 99"),
        "NUL byte": (good.replace("shrinkage", "shrink\x00age", 1), "NUL"),
        "trees per iteration": (
            good.replace("num_tree_per_iteration=1", "num_tree_per_iteration=2", 1),
            "disagree",
        ),
        "broken pandas_categorical": (
            good.replace("pandas_categorical:null", 'pandas_categorical:[["a"', 1),
            "pandas_categorical line is not JSON",
        ),
        "empty objective": (
            good.replace("objective=binary sigmoid:1", "objective=", 1),
            "objective line is empty",
        ),
    }
    for label, (text, message) in cases.items():
        resize = label not in ("cut short", "tree sizes off by one")
        _reseal_with(pkg, _resized(text) if resize else text)
        with pytest.raises(tiffin.FlavorError, match=message) as caught:
            tiffin.load(pkg)
        assert "malformed LightGBM model text" in str(caught.value), label
    _reseal_with(pkg, good)
    assert tiffin.load(pkg).predict(X[:5]).tolist() == clf.predict(X[:5]).tolist()


def test_every_kind_of_booster_passes_the_check(tmp_path: Path) -> None:
    """Linear leaves, categorical splits, a random forest (its header has a flag line),
    one-vs-all multiclass and a custom objective (no objective line) all pack and load."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    X[:, 3] = rng.integers(0, 12, 300)
    y = (X[:, 0] > 0).astype(int)

    def squared(preds: np.ndarray, data: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        return preds - data.get_label(), np.ones_like(preds)

    quiet = {"verbose": -1}
    boosters = {
        "linear": lgb.train({"objective": "regression", "linear_tree": True, **quiet},
                            lgb.Dataset(X, 2 * X[:, 0] + X[:, 1]), 5),
        "cats": lgb.train({"objective": "binary", "min_data_per_group": 5, **quiet},
                          lgb.Dataset(X, (X[:, 3] % 3 == 0).astype(int), categorical_feature=[3]), 5),
        "forest": lgb.train({"objective": "binary", "boosting": "rf", "bagging_freq": 1,
                             "bagging_fraction": 0.5, **quiet}, lgb.Dataset(X, y), 3),
        "ova": lgb.train({"objective": "multiclassova", "num_class": 3, **quiet},
                         lgb.Dataset(X, rng.integers(0, 3, 300)), 3),
        "custom": lgb.train({"objective": squared, **quiet}, lgb.Dataset(X, X[:, 0]), 3),
    }  # fmt: skip
    texts = {name: b.model_to_string() for name, b in boosters.items()}
    assert "is_linear=1" in texts["linear"] and "\naverage_output\n" in texts["forest"]
    assert "\nobjective=" not in texts["custom"]
    assert any(line.startswith("num_cat=") and line != "num_cat=0" for line in texts["cats"].splitlines())  # fmt: skip
    for name, booster in boosters.items():
        pkg = tiffin.pack(booster, tmp_path / name, name=name, version="1", example=X[:3])
        np.testing.assert_allclose(tiffin.load(pkg.path).predict(X), booster.predict(X), atol=1e-9)


def test_carriage_returns_are_refused_in_the_bytes(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """The checker sees the bytes LightGBM reads: a carriage return inside a line (or a
    CRLF line end) in a packaged model text is refused, however the file is read."""
    from tiffin.security.lightgbm_check import check_model_text

    X, _ = data
    clf = lgb.LGBMClassifier(n_estimators=3, num_leaves=5, verbose=-1).fit(X, X[:, 0] > 0)
    pkg = tiffin.pack(clf, tmp_path / "p", name="l", version="1", example=X[:3]).path
    good = (pkg / "artifacts" / "model.txt").read_bytes().decode()
    line = good[: good.index("num_leaves=")].count("\n") + 1
    inside = good.replace("num_leaves=", "num_leaves=\r", 1)
    with pytest.raises(tiffin.FlavorError, match=f"line {line} holds a carriage return"):
        check_model_text(inside, "model.txt")
    for text in (inside, good.replace("\n", "\r\n")):
        _reseal_with(pkg, text)
        with pytest.raises(tiffin.FlavorError, match="carriage return"):
            tiffin.load(pkg)
    # A file saved with CRLF line ends (a Windows checkout) packs as LightGBM's own text.
    src = tmp_path / "windows.txt"
    src.write_bytes(good.replace("\n", "\r\n").encode())
    again = tiffin.pack(
        src, tmp_path / "w", name="l", version="1", example=X[:3], flavor="lightgbm"
    )
    assert b"\r" not in (again.path / "artifacts" / "model.txt").read_bytes()
    np.testing.assert_allclose(tiffin.load(again.path).predict(X), clf.predict_proba(X)[:, 1])
