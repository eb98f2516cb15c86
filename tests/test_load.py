from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tests.conftest import predict_in_fresh_process


def test_fresh_process_round_trip(
    packed_iris: Path, iris_pipeline: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    model, X = iris_pipeline
    out = predict_in_fresh_process(packed_iris, "np.array(" + repr(X[:10].tolist()) + ")", tmp_path)
    assert out["output"] == model.predict(X[:10]).tolist()


def test_predictor_surface(packed_iris: Path) -> None:
    m = tiffin.load(packed_iris)
    assert m.name == "iris" and m.version == "1.0.0" and m.flavor == "sklearn"
    assert m.digest == tiffin.inspect(packed_iris).digest
    assert "iris 1.0.0" in repr(m)
    named = m.predict_named({"input": np.zeros((2, 4))})
    assert list(named) == ["output"] and named["output"].shape == (2,)


def test_signature_enforced(packed_iris: Path) -> None:
    m = tiffin.load(packed_iris)
    with pytest.raises(tiffin.SignatureError, match=r"expects shape \[-1, 4\]"):
        m.predict(np.zeros((1, 3)))
    with pytest.raises(tiffin.SignatureError, match="expects dtype float64"):
        m.predict(np.array([["a", "b", "c", "d"]]))


def test_skops_is_imported_without_torch(packed_iris: Path, tmp_path: Path) -> None:
    from tests.conftest import run_python

    proc = run_python(
        f"""
        import sys, tiffin
        tiffin.load({str(packed_iris)!r}).predict([[1.0, 2.0, 3.0, 4.0]])
        print("torch" in sys.modules, "skops.io" in sys.modules)
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


def test_import_tiffin_is_light(tmp_path: Path) -> None:
    from tests.conftest import run_python

    proc = run_python(
        "import sys, tiffin; print(sorted(m for m in ('numpy', 'pandas', 'click', 'sklearn') if m in sys.modules))",
        cwd=tmp_path,
    )
    assert proc.stdout.strip() == "[]", proc.stderr


SHIFT_SRC = """
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Shift(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X) + {k}
"""


@pytest.mark.parametrize("flavor", ["sklearn", "pickle"])
def test_two_versions_with_the_same_module_name_keep_their_own_code(
    tmp_path: Path, flavor: str
) -> None:
    """v1 and v2 of a model both ship code/shiftmod.py, with different code. skops and
    the unpickler rebuild classes by plain name, and both versions once got the class of
    the version loaded first: v2 silently answered with v1's code."""
    from tests.conftest import run_python

    for version, k in (("1", 1.0), ("2", 100.0)):
        src = tmp_path / f"src{version}"
        src.mkdir()
        (src / "shiftmod.py").write_text(SHIFT_SRC.format(k=k))
        options: dict[str, Any] = (
            {"allow_pickle": True, "flavor": "pickle", "code": [str(src / "shiftmod.py")]}
            if flavor == "pickle" else {"trusted_types": ["shiftmod.Shift"]}
        )  # fmt: skip
        run = run_python(
            f"""
            import sys, numpy as np, tiffin
            from sklearn.linear_model import LinearRegression
            from sklearn.pipeline import make_pipeline
            sys.path.insert(0, {str(src)!r})
            from shiftmod import Shift
            X = np.arange(20.0).reshape(10, 2)
            pipe = make_pipeline(Shift(), LinearRegression().fit(X, X.sum(1)))
            tiffin.pack(pipe, {str(tmp_path / f"m-{version}")!r}, name="m", version="{version}",
                        example=X[:2], **{options!r})
            """,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
    load = {"allow_pickle": True} if flavor == "pickle" else {}
    (tmp_path / "shiftmod.py").write_text("raise ImportError('the working folder is not the package')")  # fmt: skip
    check = run_python(
        f"""
        import sys, numpy as np, tiffin
        a = tiffin.load({str(tmp_path / "m-1")!r}, **{load!r})
        b = tiffin.load({str(tmp_path / "m-2")!r}, **{load!r})
        X = np.arange(4.0).reshape(2, 2)
        print(*(round(float(m.predict(X[:1])[0]), 6) for m in (a, b)), "shiftmod" in sys.modules)
        """,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["3.0", "201.0", "False"]
