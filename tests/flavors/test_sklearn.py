from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tiffin
from tests.conftest import predict_in_fresh_process, run_python


@pytest.fixture
def frame_pipeline() -> tuple[Any, pd.DataFrame]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 10_000, n),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "plan": rng.choice(["free", "pro"], n),
        }
    )
    y = (frame["income"] > 50_000).astype(int) ^ (frame["city"] == "nice").astype(int)
    model = Pipeline(
        [
            ("prep", ColumnTransformer([
                ("num", StandardScaler(), ["age", "income"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
            ])),
            ("clf", RandomForestClassifier(n_estimators=10, random_state=0)),
        ]
    ).fit(frame, y)  # fmt: skip
    return model, frame


def test_column_transformer_over_dataframe(
    tmp_path: Path, frame_pipeline: tuple[Any, pd.DataFrame]
) -> None:
    model, frame = frame_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="churn", version="1.0.0", example=frame.head(8),
                      method="predict_proba")  # fmt: skip
    sig = tiffin.load(pkg.path).signature
    assert sig.input_kind == "dataframe"
    assert {s.name: s.dtype for s in sig.inputs} == {
        "age": "int64",
        "income": "float64",
        "city": "str",
        "plan": "str",
    }
    rows = frame.head(20)
    code = f"__import__('pandas').DataFrame({rows.to_dict(orient='list')!r})"
    out = predict_in_fresh_process(pkg.path, code, tmp_path)
    np.testing.assert_allclose(out["output"], model.predict_proba(rows), rtol=0, atol=1e-12)


def test_reproducible(tmp_path: Path, frame_pipeline: tuple[Any, pd.DataFrame]) -> None:
    model, frame = frame_pipeline
    a = tiffin.pack(model, tmp_path / "a", name="m", version="1", example=frame.head(3))
    b = tiffin.pack(model, tmp_path / "b", name="m", version="1", example=frame.head(3))
    assert a.digest == b.digest
    assert (a.path / "artifacts/model.skops").read_bytes() == (
        b.path / "artifacts/model.skops"
    ).read_bytes()


def test_skops_file_path(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    import skops.io as sio

    model, X = iris_pipeline
    src = tmp_path / "model.skops"
    sio.dump(model, src)
    pkg = tiffin.pack(src, tmp_path / "p", name="iris", version="1", example=X[:4])
    assert pkg.manifest.flavor == "sklearn"
    np.testing.assert_array_equal(tiffin.load(pkg.path).predict(X), model.predict(X))


def _inject_untrusted_type(path: Path) -> None:
    """Rewrite a skops file so one node claims to be an os-level type."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members["schema.json"])
    schema["__module__"] = "os"
    schema["__class__"] = "system"
    members["schema.json"] = json.dumps(schema).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path.write_bytes(buf.getvalue())


def test_untrusted_type_in_skops_file_refused_at_pack(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    import skops.io as sio

    model, X = iris_pipeline
    src = tmp_path / "model.skops"
    sio.dump(model, src)
    _inject_untrusted_type(src)
    with pytest.raises(tiffin.UnsafeArtifactError, match="os.system"):
        tiffin.pack(src, tmp_path / "p", name="iris", version="1", example=X[:4])
    assert not (tmp_path / "p").exists()


def test_untrusted_type_refused_at_load(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    """Even with a re-sealed manifest, load refuses a skops type outside the audited set."""
    from tiffin.flavors import LoadContext
    from tiffin.flavors.sklearn import load

    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="iris", version="1", example=X[:4])
    artifact = pkg.path / "artifacts/model.skops"
    _inject_untrusted_type(artifact)
    with pytest.raises(tiffin.UnsafeArtifactError, match="os.system"):
        load(LoadContext(path=pkg.path, options=pkg.manifest.runtime["options"]))


def test_custom_estimator_type_needs_declaration(tmp_path: Path) -> None:
    """A user's own estimator class is not audited: skops refuses it unless declared."""
    src = tmp_path / "myest.py"
    src.write_text(
        "import numpy as np\n"
        "from sklearn.base import BaseEstimator\n"
        "class Doubler(BaseEstimator):\n"
        "    def fit(self, X, y=None):\n"
        "        self.k_ = 2.0\n"
        "        return self\n"
        "    def predict(self, X):\n"
        "        return np.asarray(X) * self.k_\n"
    )
    proc = run_python(
        f"""
        import sys, numpy as np, tiffin
        sys.path.insert(0, {str(tmp_path)!r})
        from myest import Doubler
        m = Doubler().fit(None)
        try:
            tiffin.pack(m, {str(tmp_path / "p")!r}, name="d", version="1", example=np.ones((2, 2)))
        except tiffin.UnsafeArtifactError as exc:
            print("refused", "myest.Doubler" in str(exc))
        pkg = tiffin.pack(m, {str(tmp_path / "q")!r}, name="d", version="1", example=np.ones((2, 2)),
                          trusted_types=["myest.Doubler"], code=[{str(src)!r}])
        print(tiffin.load(pkg.path).predict(np.ones((1, 2))).tolist())
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "refused True"
    assert "[[2.0, 2.0]]" in proc.stdout


def test_trust_is_by_exact_name_not_module_prefix() -> None:
    """A name under sklearn.* that is really shutil.rmtree is not on the list; nor is a
    tree outside the tree loader (its state would skip the check)."""
    import sklearn.datasets._base as base

    from tiffin.security.skops_audit import judge

    def node(loader: str, name: str) -> dict[str, Any]:
        module, _, cls = name.rpartition(".")
        return {"__loader__": loader, "__module__": module, "__class__": cls, "content": {}}

    assert base.shutil.rmtree  # the re-export exists
    for loader, name in [
        ("FunctionNode", "sklearn.datasets._base.shutil"),
        ("ObjectNode", "sklearn.tree._tree.Tree"),
        ("ObjectNode", "sklearn.utils._testing.TempMemmap"),
        ("ConstructorFromReduceNode", "sklearn.linear_model._logistic.LogisticRegression"),
        ("SomeNewNode", "builtins.dict"),
    ]:
        with pytest.raises(tiffin.UnsafeArtifactError, match="closed list"):
            judge(node(loader, name))
    assert judge(node("TreeNode", "sklearn.tree._tree.Tree")) == ["sklearn.tree._tree.Tree"]


_TEXT_PIPELINE = """
    import sys
    import tiffin
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs = ["good movie", "bad film", "great acting", "terrible plot", "good fun", "awful"] * 4
    labels = [1, 0, 1, 0, 1, 0] * 4
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(docs, labels)
    pkg = tiffin.pack(model, sys.argv[1], name="text", version="1", example=docs[:3],
                      method="predict_proba")
    print(pkg.digest)
    print(model.predict_proba(["good bad", "never seen"]).tolist())
"""


def test_text_pipeline_reproducible_across_processes(tmp_path: Path) -> None:
    """A vectorizer caches id(stop_words), a memory address; it must not reach the bytes."""
    script = tmp_path / "pack_text.py"
    script.write_text(textwrap.dedent(_TEXT_PIPELINE))
    runs = []
    for name in ("a", "b"):
        proc = subprocess.run(
            [sys.executable, str(script), str(tmp_path / name)],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs.append(proc.stdout.split("\n"))
    assert runs[0][0] == runs[1][0]
    assert (tmp_path / "a/artifacts/model.skops").read_bytes() == (
        tmp_path / "b/artifacts/model.skops"
    ).read_bytes()
    out = predict_in_fresh_process(tmp_path / "a", "['good bad', 'never seen']", tmp_path)
    np.testing.assert_allclose(out["output"], json.loads(runs[0][1]), rtol=0, atol=1e-12)


def _mixed_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(np.array(["paris", "rome", "oslo", None], dtype=object), size=n)
    city[1] = np.nan  # None and NaN both mean missing in a string column
    count = pd.array(rng.integers(0, 5, size=n), dtype="Int64")
    count[2] = pd.NA
    return pd.DataFrame(
        {
            "city": city,
            "count": count,
            "flag": rng.random(n) > 0.5,
            "kind": pd.Categorical(rng.choice(["a", "b"], size=n)),
            "amount": rng.normal(size=n),
        }
    )


def test_column_transformer_over_nullable_bool_and_category_columns(tmp_path: Path) -> None:
    """Strings with None/NaN, nullable Int64 with <NA>, bool and category, unseen values."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = _mixed_frame(80, 0)
    y = (train["amount"] > 0).astype(int)
    prep = ColumnTransformer(
        [
            ("cat", make_pipeline(
                SimpleImputer(strategy="constant", fill_value="missing"),
                OneHotEncoder(handle_unknown="ignore"),
            ), ["city", "kind"]),
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["count", "amount"]),
            ("flag", "passthrough", ["flag"]),
        ]
    )  # fmt: skip
    model = make_pipeline(prep, LogisticRegression()).fit(train, y)
    pkg = tiffin.pack(model, tmp_path / "p", name="mixed", version="1", example=train.head(8),
                      method="predict_proba")  # fmt: skip
    specs = {s.name: (s.dtype, s.nullable) for s in pkg.load().signature.inputs}
    assert specs["count"] == ("int64", True) and specs["flag"] == ("bool", False)
    rows = _mixed_frame(30, 1)
    rows.loc[0, "city"] = "tokyo"  # never seen in training
    rows.to_parquet(tmp_path / "rows.parquet")
    code = f"__import__('pandas').read_parquet({str(tmp_path / 'rows.parquet')!r})"
    out = predict_in_fresh_process(pkg.path, code, tmp_path)
    np.testing.assert_allclose(out["output"], model.predict_proba(rows), rtol=0, atol=1e-12)


def test_declared_user_function_ships_in_code(tmp_path: Path) -> None:
    """A FunctionTransformer's own function is imported at load: it must be in the package."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "feats.py").write_text(
        "import numpy as np\nfrom scaling import K\n\n"
        "def logabs(x):\n    return np.log1p(np.abs(x)) * K\n"
    )
    (proj / "scaling.py").write_text("K = 3.0\n")
    proc = run_python(
        f"""
        import sys, json, numpy as np, tiffin
        sys.path.insert(0, {str(proj)!r})
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer
        import feats
        X = np.random.default_rng(0).normal(size=(40, 3))
        m = make_pipeline(FunctionTransformer(feats.logabs), LinearRegression()).fit(X, X.sum(1))
        tiffin.pack(m, {str(tmp_path / "p")!r}, name="f", version="1", example=X[:3],
                    trusted_types=["feats.logabs"])
        print(json.dumps(m.predict(X[:4]).tolist()))
        np.save({str(tmp_path / "x.npy")!r}, X[:4])
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    want = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in (tmp_path / "p" / "code").iterdir()) == ["feats.py", "scaling.py"]
    shutil.rmtree(proj)
    code = f"np.load({str(tmp_path / 'x.npy')!r})"
    out = predict_in_fresh_process(tmp_path / "p", code, tmp_path)
    np.testing.assert_allclose(out["output"], want, rtol=0, atol=1e-12)


def test_hist_gradient_boosting_with_native_categories(tmp_path: Path) -> None:
    """categorical_features='from_dtype' (the default) stores a functools.partial of
    check_array; skops rebuilds it from audited parts, so it packs without declarations."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"c": pd.Categorical(rng.choice(["x", "y", "z"], 300)), "v": rng.normal(size=300)}
    )
    y = ((frame["c"] == "x") ^ (frame["v"] > 0)).astype(int)
    model = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(frame, y)
    pkg = tiffin.pack(model, tmp_path / "p", name="hgb", version="1", example=frame.head(5),
                      method="predict_proba")  # fmt: skip
    rows = frame.head(40)
    plain = {"c": rows["c"].astype(str).tolist(), "v": rows["v"].tolist()}  # as JSON sends it
    out = predict_in_fresh_process(pkg.path, repr(plain), tmp_path)
    np.testing.assert_allclose(out["output"], model.predict_proba(rows), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "func",
    [
        "numpy.testing._private.utils.runstring",  # exec(astr, dict)
        "numpy.save",  # defined elsewhere, re-exported under numpy
        "numpy.lib._npyio_impl.savetxt",
        "sklearn.datasets.fetch_openml",  # downloads
    ],
)
def test_dangerous_functions_in_audited_packages_refused(tmp_path: Path, func: str) -> None:
    """A FunctionTransformer calls its func on every request; these read, write or exec."""
    import importlib

    from sklearn.preprocessing import FunctionTransformer

    module, _, name = func.rpartition(".")
    model = FunctionTransformer(func=getattr(importlib.import_module(module), name)).fit(
        np.zeros((2, 2))
    )
    with pytest.raises(tiffin.UnsafeArtifactError, match="closed list"):
        tiffin.pack(model, tmp_path / "p", name="f", version="1", example=np.zeros((1, 2)),
                    method="transform")  # fmt: skip


def test_partial_trusted_only_around_check_array(tmp_path: Path) -> None:
    import functools

    from sklearn.preprocessing import FunctionTransformer

    bound = functools.partial(np.savetxt, str(tmp_path / "written.txt"))
    model = FunctionTransformer(func=bound).fit(np.zeros((2, 2)))
    with pytest.raises(tiffin.UnsafeArtifactError, match="functools.partial"):
        tiffin.pack(model, tmp_path / "p", name="f", version="1", example=np.zeros((1, 2)),
                    method="transform")  # fmt: skip
    assert not (tmp_path / "written.txt").exists()  # refused before anything ran


@pytest.mark.parametrize("kind", ["spline", "birch"])
def test_spline_transformer_and_birch_pack_and_reload_by_default(tmp_path: Path, kind: str) -> None:
    """SplineTransformer holds SciPy BSplines (reviewed, checked at load); Birch packs
    without its training-only CF tree, which skops cannot write."""
    from sklearn.cluster import Birch
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import SplineTransformer

    X = load_iris(return_X_y=True)[0]
    model = SplineTransformer().fit(X) if kind == "spline" else Birch().fit(X)
    method = "transform" if kind == "spline" else "predict"
    pkg = tiffin.pack(model, tmp_path / "p", name=kind, version="1", example=X[:5], method=method)
    out = tiffin.load(pkg.path).predict(X[:20])
    got = next(iter(out.values())) if isinstance(out, dict) else out
    np.testing.assert_allclose(np.asarray(got), getattr(model, method)(X[:20]))
    assert kind == "spline" or hasattr(model, "root_")  # the caller's model keeps its tree


def _gaps_frame(n: int = 120) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "income": rng.normal(size=n),
            "city": rng.choice(["paris", "lyon", "nice"], n).astype(object),
            "plan": rng.choice(["free", "pro"], n).astype(object),
        }
    )
    return frame, (frame["income"] > 0).to_numpy().astype(int)


def test_imputed_string_column_accepts_gaps_though_the_example_had_none(tmp_path: Path) -> None:
    """Trained and packed without a single gap: the imputer decides, not the example."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    frame, y = _gaps_frame()
    prep = ColumnTransformer([
        ("num", "passthrough", ["income"]),
        ("city", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), ["city"]),
        ("plan", OrdinalEncoder(), ["plan"]),
    ])  # fmt: skip
    model = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(frame, y)
    pkg = tiffin.pack(model, tmp_path / "p", name="g", version="1", example=frame.head(5),
                      method="predict_proba")  # fmt: skip
    specs = {s.name: s for s in tiffin.load(pkg.path).signature.inputs}
    assert specs["city"].nullable and "SimpleImputer" in specs["city"].nullable_reason
    assert not specs["plan"].nullable  # OrdinalEncoder(handle_unknown="error") refuses gaps
    rows = frame.head(4).copy()
    rows.loc[1, "city"] = None
    rows.loc[2, "city"] = np.nan
    listed = repr(rows.to_dict(orient="list")).replace("nan", "float('nan')")
    out = predict_in_fresh_process(pkg.path, f"__import__('pandas').DataFrame({listed})", tmp_path)
    np.testing.assert_allclose(out["output"], model.predict_proba(rows), rtol=0, atol=1e-12)
    rows.loc[3, "plan"] = None
    with pytest.raises(tiffin.SignatureError, match="'plan' has missing values"):
        tiffin.load(pkg.path).predict(rows)


def test_encoder_that_learned_a_missing_category_or_ignores_unknowns(tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    frame, y = _gaps_frame()
    frame.loc[::9, "city"] = None  # training saw gaps in city; the example has none
    prep = ColumnTransformer([
        ("city", OneHotEncoder(), ["city"]),
        ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ("plan_rank", OrdinalEncoder(), ["plan"]),  # refuses a gap: plan stays strict
        ("city_rank", make_pipeline(SimpleImputer(strategy="most_frequent"), OrdinalEncoder()),
         ["city"]),
    ])  # fmt: skip
    model = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(frame, y)
    example = frame.dropna().head(5)
    pkg = tiffin.pack(model, tmp_path / "p", name="e", version="1", example=example)
    specs = {s.name: s for s in tiffin.load(pkg.path).signature.inputs}
    assert specs["city"].nullable and "learned a missing value" in specs["city"].nullable_reason
    assert "SimpleImputer" in specs["city"].nullable_reason  # every reason is recorded
    assert not specs["plan"].nullable  # a gap is fine for one encoder, not for the other
    rows = example.copy()
    rows.loc[rows.index[0], "city"] = None
    np.testing.assert_array_equal(tiffin.load(pkg.path).predict(rows), model.predict(rows))


def test_voting_and_stacking_ensembles_pack_without_declarations(tmp_path: Path) -> None:
    """Their named_estimators_ is a Bunch (a dict with attribute access), on the list."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import StackingClassifier, VotingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    members = [("lr", LogisticRegression(max_iter=500)), ("dt", DecisionTreeClassifier())]
    for i, model in enumerate((VotingClassifier(members), StackingClassifier(members))):
        model.fit(X, y)
        pkg = tiffin.pack(model, tmp_path / f"e{i}", name="e", version="1", example=X[:4])
        assert tiffin.load(pkg.path).predict(X[:4]).tolist() == model.predict(X[:4]).tolist()
