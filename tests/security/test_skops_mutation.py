"""Mutation campaign: 1,000 edited skops files each of a decision tree, a random forest and
a HistGradientBoosting model, each loaded and predicted in a long-lived worker process.

None may crash the worker (a signal) or hang it, and none may load and then fail at
predict with an ordinary Python exception (an index error from NumPy, a shape error): every
mutant is refused with a TiffinError, or loads and predicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.security.skops_mutants import campaign, mutants

MUTANTS = 1000


def _model(kind: str) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    return {
        "decision_tree": DecisionTreeClassifier(max_depth=4, random_state=0),
        "random_forest": RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0),
        "hist_gradient_boosting": HistGradientBoostingClassifier(
            max_iter=3, max_leaf_nodes=4, random_state=0
        ),
    }[kind]


@pytest.mark.parametrize("kind", ["decision_tree", "random_forest", "hist_gradient_boosting"])
def test_mutants_never_crash_or_hang(tmp_path: Path, kind: str) -> None:
    from sklearn.datasets import load_iris

    from tiffin.flavors.sklearn import dump_skops, load_bytes

    X, y = load_iris(return_X_y=True)
    model = _model(kind).fit(X, y)
    data = dump_skops(model)
    np.testing.assert_array_equal(load_bytes(data).predict(X), model.predict(X))
    np.save(tmp_path / "X.npy", X[::10])
    counts, bad = campaign(mutants(data, MUTANTS, seed=20), tmp_path / "X.npy")
    print(f"{kind}: {MUTANTS} mutants: {dict(counts)}")
    assert sum(counts.values()) == MUTANTS
    assert not bad, bad[:5]
    assert set(counts) <= {"refused", "predicted"}
    # the campaign reaches both sides: checks that refuse, and edits that still load
    assert counts["refused"] > MUTANTS // 4 and counts["predicted"] > MUTANTS // 10
