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
