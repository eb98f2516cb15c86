"""Mutation campaign: 1,000 edited skops files each of a KNeighborsClassifier over a
KDTree and over a BallTree, each loaded and predicted in a long-lived worker process.

The tree's arrays (``idx_array``, ``node_data``, ``node_bounds``, ``data``), its counts and
its distance metric are memory that scikit-learn's C code indexes unchecked. Every mutant
is refused with a TiffinError, or loads and predicts: no crash, no hang, no ordinary
Python exception at predict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.security.skops_mutants import campaign, mutants

MUTANTS = 1000


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree"])
def test_mutants_never_crash_hang_or_fail_at_predict(tmp_path: Path, algorithm: str) -> None:
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier

    from tiffin.flavors.sklearn import dump_skops, load_bytes

    X, y = load_iris(return_X_y=True)
    # few rows per leaf, so the tree has inner nodes for the edits to reach
    model = KNeighborsClassifier(n_neighbors=3, algorithm=algorithm, leaf_size=8).fit(X, y)
    data = dump_skops(model)
    np.testing.assert_array_equal(load_bytes(data).predict(X), model.predict(X))
    np.save(tmp_path / "X.npy", X[::10])
    counts, bad = campaign(mutants(data, MUTANTS, seed=21), tmp_path / "X.npy")
    print(f"KNeighborsClassifier({algorithm}): {MUTANTS} mutants: {dict(counts)}")
    assert sum(counts.values()) == MUTANTS
    assert not bad, bad[:5]
    assert set(counts) <= {"refused", "predicted"}
    assert counts["refused"] > MUTANTS // 4 and counts["predicted"] > MUTANTS // 10
