"""The closed list against the installed scikit-learn, and every registry estimator packed.

Fitting the whole registry takes about half a minute; packing and reloading every
estimator about as long again, so the module is marked slow except for the cheap checks.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tests.conftest import run_python
from tiffin.security import trusted_types


def test_list_is_for_the_installed_scikit_learn() -> None:
    import sklearn

    assert sklearn.__version__ == trusted_types.SKLEARN_VERSION, (
        "regenerate with: python -m tiffin.security.trusted_types"
    )
    # In a fresh interpreter: another test importing sklearn.experimental adds the
    # halving searches to this process's registry.
    code = (
        "import json; from sklearn.utils import all_estimators; "
        "from tiffin.security.trusted_types import _qualname; "
        "print(json.dumps(sorted(_qualname(c) for _, c in all_estimators())))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    registry = set(json.loads(run.stdout))
    assert registry == set(trusted_types.ESTIMATORS)
    assert not set(trusted_types.INTERNAL) & registry
    # exact names only: no entry is a module or a prefix of another
    names = trusted_types.TYPES | set(trusted_types.FUNCTIONS)
    assert all(n.count(".") >= 1 and not n.endswith(".") for n in names)
    assert "functools.partial" not in names
    assert not any(n.startswith("sklearn.callback") for n in names)


@pytest.fixture(scope="module")
def fitted() -> list[tuple[str, Any]]:
    return list(trusted_types.fitted_estimators())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # the registry's deprecated estimators
def test_every_default_estimator_is_covered_by_the_list(fitted: list[tuple[str, Any]]) -> None:
    """Each fitted estimator's skops file passes the judge, and its pickle the allow-list."""
    from tiffin.flavors.sklearn import dump_skops
    from tiffin.security.skops_audit import judge, read_schema
    from tiffin.security.unpickler import safe_loads

    assert len(fitted) >= 130
    for name, est in fitted:
        judge(read_schema(dump_skops(est)), where=name)
        safe_loads(pickle.dumps(est, protocol=5))


def _method(est: Any) -> str | None:
    """The prediction method a package would serve; None for estimators that only
    fit (clusterers and embeddings without predict or transform: nothing to serve)."""
    for method in ("predict", "transform"):
        if hasattr(est, method):
            return method
    return None


@pytest.mark.slow
# the estimators' own warnings on iris (deprecations, convergence, casts) are not the subject
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_default_estimator_packs_and_reloads(
    tmp_path: Path, fitted: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SplineTransformer and Birch included; reloaded in one fresh process."""
    from sklearn.datasets import load_iris

    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "off")
    X = load_iris(return_X_y=True)[0][:8]
    packed: dict[str, Any] = {}
    fit_only: list[str] = []
    other_input: list[str] = []
    for name, est in fitted:
        method = _method(est)
        if method is None:
            fit_only.append(name)
            continue
        x = np.abs(X).round() if name in ("CategoricalNB",) else X
        try:
            result = getattr(est, method)(x)
            expected = np.asarray(result.toarray() if hasattr(result, "toarray") else result)
        except (ValueError, TypeError, AttributeError):
            other_input.append(name)  # text or dict input (FeatureHasher, HashingVectorizer)
            continue
        tiffin.pack(est, tmp_path / name, name=name.lower(), version="1", example=x,
                    method=method)  # fmt: skip
        packed[name] = (method, x.tolist(), expected)
    assert {"SplineTransformer", "Birch"} <= set(packed)
    assert len(other_input) <= 3, other_input
    jobs = {n: {"method": m, "x": x} for n, (m, x, _) in packed.items()}
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    proc = run_python(
        f"""
        import json, numpy as np, tiffin
        jobs = json.load(open({str(tmp_path / "jobs.json")!r}))
        out = {{}}
        for name, job in jobs.items():
            m = tiffin.load({str(tmp_path)!r} + "/" + name)
            got = m.predict(np.asarray(job["x"]))
            got = list(got.values())[0] if isinstance(got, dict) else got
            if isinstance(got, np.ndarray) and got.dtype == object and got.ndim == 0:
                got = got.item()
            out[name] = np.asarray(got.toarray() if hasattr(got, "toarray") else got).tolist()
        print(json.dumps(out))
        """,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out) == set(packed)
    for name, (_, _, expected) in packed.items():
        if expected.dtype.kind in "fiub":
            np.testing.assert_allclose(np.asarray(out[name]), expected, rtol=1e-6, atol=1e-9,
                                       err_msg=name)  # fmt: skip
    print(
        f"estimators packed and reloaded in a fresh process: {len(packed)}; "
        f"fit-only (no predict or transform to serve): {len(fit_only)} {fit_only}; "
        f"not numeric input: {other_input}"
    )
