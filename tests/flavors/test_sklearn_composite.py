"""scikit-learn models holding XGBoost, LightGBM and CatBoost estimators (flavors/sklearn_composite.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import catboost as cb
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import tiffin
from tests.conftest import run_python
from tiffin.package.integrity import index_files, read_manifest


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 240
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 10_000, n),
            "city": rng.choice(["paris", "lyon", "nice"], n),
        }
    )
    y = ((df["income"] > 50_000) ^ (df["city"] == "nice")).astype(int).to_numpy()
    return df, y


def _prep() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )


BOOSTERS: dict[str, Any] = {
    "xgboost": lambda: xgb.XGBClassifier(n_estimators=8, max_depth=3),
    "lightgbm": lambda: lgb.LGBMRegressor(n_estimators=8, verbose=-1),
    "catboost": lambda: cb.CatBoostClassifier(
        iterations=8, depth=3, verbose=0, allow_writing_files=False
    ),
}


def _fresh(packages: dict[str, Path], rows: pd.DataFrame, cwd: Path) -> dict[str, Any]:
    """Every package loaded in one new interpreter, each predicting on ``rows``."""
    rows.to_json(cwd / "rows.json", orient="split")
    proc = run_python(
        f"""
        import json, numpy as np, pandas as pd, tiffin
        rows = pd.read_json({str(cwd / "rows.json")!r}, orient="split")
        out = {{}}
        for key, path in { ({k: str(v) for k, v in packages.items()})!r}.items():
            out[key] = np.asarray(tiffin.load(path).predict(rows)).tolist()
        print(json.dumps(out))
        """,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("framework", list(BOOSTERS))
def test_pipeline_with_a_booster_step_round_trips_in_a_fresh_process(
    tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray], framework: str
) -> None:
    df, y = frame
    target = df["income"].to_numpy() / 1000 if framework == "lightgbm" else y
    model = Pipeline([("prep", _prep()), ("model", BOOSTERS[framework]())]).fit(df, target)
    methods = ["predict"] + (["predict_proba"] if hasattr(model, "predict_proba") else [])
    packages = {
        m: tiffin.pack(
            model, tmp_path / m, name="p", version="1", example=df.head(5), method=m
        ).path
        for m in methods
    }
    for path in packages.values():
        # the skops part names only scikit-learn's own types, and no framework's
        with zipfile.ZipFile(path / "artifacts/model.skops") as zf:
            schema = zf.read("schema.json").decode()
        assert framework not in schema and "tiffin-step-0" in schema
        assert list((path / "artifacts/steps/0").iterdir())
    # the user's model is untouched by the packing
    assert type(model.steps[-1][1]).__module__.startswith(framework)
    rows = df.sample(60, random_state=1)
    got = _fresh(packages, rows, tmp_path)
    np.testing.assert_array_equal(np.asarray(got["predict"]), model.predict(rows))
    if "predict_proba" in got:
        np.testing.assert_allclose(got["predict_proba"], model.predict_proba(rows), rtol=0, atol=0)
    loaded = tiffin.load(packages["predict"])
    assert loaded.signature.input_names() == ["age", "income", "city"]


def test_nested_pipelines_and_several_frameworks(
    tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray]
) -> None:
    """Steps deep inside nested pipelines and an ensemble: each framework in its own format.

    The unfitted templates in ``estimators`` come back as unfitted steps.
    """
    df, y = frame
    model = Pipeline(
        [
            ("prep", Pipeline([("cols", _prep())])),
            ("vote", StackingClassifier([
                ("x", Pipeline([("scale", StandardScaler()), ("xgb", BOOSTERS["xgboost"]())])),
                ("l", lgb.LGBMClassifier(n_estimators=5, verbose=-1)),
                ("c", BOOSTERS["catboost"]()),
            ], final_estimator=LogisticRegression())),
        ]
    ).fit(df, y)  # fmt: skip
    pkg = tiffin.pack(model, tmp_path / "p", name="n", version="1", example=df.head(4),
                      method="predict_proba")  # fmt: skip
    steps = read_manifest(pkg.path).runtime["options"]["steps"]
    fitted = [s for s in steps if s["methods"]]
    assert sorted(s["flavor"] for s in fitted) == ["catboost", "lightgbm", "xgboost"]
    assert sorted(Path(s["options"]["file"]).suffix for s in fitted) == [".json", ".txt", ".ubj"]
    # the fitted copies are reached through estimators_ and named_estimators_ alike
    assert all(len(s["paths"]) == 2 for s in fitted if s["flavor"] != "xgboost")
    rows = df.sample(50, random_state=2)
    got = _fresh({"p": pkg.path}, rows, tmp_path)
    np.testing.assert_allclose(got["p"], model.predict_proba(rows), rtol=0, atol=1e-12)


def _reseal(pkg: Path, rel: str, data: bytes) -> None:
    """Swap a file and re-seal the manifest, as an attacker who can write would."""
    (pkg / rel).write_bytes(data)
    resealed = dataclasses.replace(read_manifest(pkg), files=index_files(pkg)).seal()
    (pkg / "tiffin.json").write_bytes(resealed.to_bytes())


@pytest.fixture(scope="module")
def pristine_xgb_package(
    tmp_path_factory: pytest.TempPathFactory, frame: tuple[pd.DataFrame, np.ndarray]
) -> Path:
    df, y = frame
    model = Pipeline([("prep", _prep()), ("model", BOOSTERS["xgboost"]())]).fit(df, y)
    dest = tmp_path_factory.mktemp("xgb") / "p"
    return tiffin.pack(model, dest, name="t", version="1", example=df.head(3)).path


@pytest.fixture
def xgb_package(tmp_path: Path, pristine_xgb_package: Path) -> Path:
    """A private copy each test may damage."""
    return Path(shutil.copytree(pristine_xgb_package, tmp_path / "p"))


def test_changed_booster_file_refused(xgb_package: Path) -> None:
    art = xgb_package / "artifacts/steps/0/model.ubj"
    data = bytearray(art.read_bytes())
    data[40] ^= 1
    art.write_bytes(bytes(data))
    with pytest.raises(tiffin.IntegrityError, match="artifacts/steps/0/model.ubj"):
        tiffin.load(xgb_package)


def test_forged_booster_file_refused_before_xgboost_reads_it(
    xgb_package: Path, tmp_path: Path
) -> None:
    """A re-sealed package whose booster names a child out of range: XGBoost's own reader
    would index past its arrays; the flavor's checker refuses the file first."""
    rel = "artifacts/steps/0/model.ubj"
    booster = xgb.Booster()
    booster.load_model(bytearray((xgb_package / rel).read_bytes()))
    doc = json.loads(booster.save_raw("json"))
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][0] = 9999
    _reseal(xgb_package, rel, json.dumps(doc).encode())
    proc = run_python(
        f"""
        import tiffin
        try:
            tiffin.load({str(xgb_package)!r})
        except tiffin.FlavorError as exc:
            print("refused:", exc)
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr  # no crash by a signal
    assert "refused:" in proc.stdout and "left_children" in proc.stdout


def test_step_path_must_lead_to_its_placeholder(xgb_package: Path) -> None:
    manifest = read_manifest(xgb_package)
    options = manifest.runtime["options"]
    options["steps"][0]["paths"] = [[["attr", "steps"], ["item", 0], ["item", 1]]]
    resealed = dataclasses.replace(manifest, files=index_files(xgb_package)).seal()
    (xgb_package / "tiffin.json").write_bytes(resealed.to_bytes())
    with pytest.raises(tiffin.ManifestError, match="placeholder"):
        tiffin.load(xgb_package)


def test_step_file_outside_the_steps_folder_refused(xgb_package: Path) -> None:
    manifest = read_manifest(xgb_package)
    manifest.runtime["options"]["steps"][0]["options"]["file"] = "artifacts/model.skops"
    resealed = dataclasses.replace(manifest, files=index_files(xgb_package)).seal()
    (xgb_package / "tiffin.json").write_bytes(resealed.to_bytes())
    with pytest.raises(tiffin.ManifestError, match="outside artifacts/steps"):
        tiffin.load(xgb_package)


def test_reproducible_and_the_loaded_step_is_a_fitted_classifier(
    tmp_path: Path, pristine_xgb_package: Path, frame: tuple[pd.DataFrame, np.ndarray]
) -> None:
    from sklearn.base import is_classifier

    df, y = frame
    model = Pipeline([("prep", _prep()), ("model", BOOSTERS["xgboost"]())]).fit(df, y)
    again = tiffin.pack(model, tmp_path / "again", name="t", version="1", example=df.head(3))
    # same data, same hyper-parameters, a fresh fit: byte for byte the same package
    assert again.digest == tiffin.inspect(pristine_xgb_package).digest
    inner = tiffin.load(again.path)
    pipeline = inner._model.model  # type: ignore[attr-defined]
    assert is_classifier(pipeline) and list(pipeline.classes_) == [0, 1]
    with pytest.raises(tiffin.FlavorError, match="cannot be refitted"):
        pipeline.steps[-1][1].fit(df, y)


def test_the_step_frameworks_are_recorded_and_pinned_without_capture(
    tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "off")
    df, y = frame
    model = Pipeline([("prep", _prep()), ("xgb", BOOSTERS["xgboost"]())]).fit(df, y)
    pkg = tiffin.pack(model, tmp_path / "p", name="x", version="1", example=df.head(3))
    manifest = read_manifest(pkg.path)
    pinned = {r.split("==")[0] for r in manifest.environment["requirements"]}
    assert {"scikit-learn", "skops", "xgboost"} <= pinned
    assert "xgboost" in json.dumps(manifest.provenance)
