"""Forged native state is refused with the field named, through skops and pickle alike."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tiffin
from tiffin.flavors.sklearn import dump_skops, load_bytes
from tiffin.security.native_trees import check_model, check_tree_state
from tiffin.security.unpickler import safe_loads


def _tree_state() -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    tree = model.tree_
    args = (tree.n_features, np.asarray(tree.n_classes, dtype=np.intp), tree.n_outputs)
    return args, tree.__getstate__(), model


def _forge(state: dict[str, Any], field: str, edit: Callable[[Any], None]) -> dict[str, Any]:
    forged = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    edit(forged)
    return forged


def _set(key: str, value: Any) -> Callable[[Any], None]:
    return lambda s: s.__setitem__(key, value)


def _node(i: int, field: str, value: int) -> Callable[[Any], None]:
    return lambda s: s["nodes"][field].__setitem__(i, value)


CASES: list[tuple[str, Callable[[Any], None], str]] = [
    ("node_count past the array", _set("node_count", 10_000), "node_count"),
    ("child pointing back", _node(0, "left_child", 0), "left"),
    ("child out of range", _node(0, "right_child", 10_000), "right"),
    ("half a leaf", _node(0, "left_child", -1), r"nodes\[0\]: one child is a leaf"),
    ("feature past n_features", _node(0, "feature", 4), "feature"),
    ("negative feature", _node(0, "feature", -7), "feature"),
    ("values of the wrong shape", lambda s: s.__setitem__("values", s["values"][:, :, :2]), "values"),
    ("values of the wrong dtype", lambda s: s.__setitem__("values", s["values"].astype(np.float32)), "values"),
    ("nodes of another dtype", lambda s: s.__setitem__("nodes", s["nodes"][["left_child"]]), "nodes"),
    ("max_depth not the depth", _set("max_depth", 50), "max_depth"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "edit", "field"), CASES, ids=[c[0] for c in CASES])
def test_forged_tree_refused_with_field_named(label: str, edit: Any, field: str) -> None:
    args, state, _ = _tree_state()
    check_tree_state(args, state)  # the real one passes
    with pytest.raises(tiffin.UnsafeArtifactError, match=field):
        check_tree_state(args, _forge(state, field, edit))


def test_forged_tree_arguments_refused() -> None:
    args, state, _ = _tree_state()
    with pytest.raises(tiffin.UnsafeArtifactError, match="n_classes"):
        check_tree_state((args[0], args[1][:0], 1), state)
    with pytest.raises(tiffin.UnsafeArtifactError, match="n_features"):
        check_tree_state((0, args[1], 1), state)


def _skops_with_tree_edit(model: Any, field: str, value: int) -> bytes:
    data = dump_skops(model)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    for name, body in members.items():
        if name.endswith(".npy"):
            arr = np.load(io.BytesIO(body))
            if arr.dtype.names and field in arr.dtype.names:
                arr = arr.copy()
                arr[field][0] = value
                buf = io.BytesIO()
                np.save(buf, arr)
                members[name] = buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return out.getvalue()


def test_forged_trees_refused_through_skops_and_pickle() -> None:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    _, _, tree_model = _tree_state()
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    hgb = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y)
    for model, field, value, named in [
        (tree_model, "left_child", 0, "left"),
        (forest, "feature", 99, "feature"),
        (hgb, "feature_idx", 99, "feature_idx"),
        (hgb, "left", 0, "left"),
    ]:
        with pytest.raises(tiffin.UnsafeArtifactError, match=named):
            load_bytes(_skops_with_tree_edit(model, field, value))
        np.testing.assert_array_equal(load_bytes(dump_skops(model)).predict(X), model.predict(X))
    # the pickle path checks the same state before Tree.__setstate__ runs
    args, state, _ = _tree_state()
    forged = _forge(state, "left", _node(0, "left_child", 0))
    from sklearn.tree._tree import Tree

    tree = Tree(*args)  # a real Tree pickle loads...
    tree.__setstate__(state)
    data = pickle.dumps(tree, protocol=2)
    safe_loads(data)

    # ...and one whose state is forged: Tree pickles state as a dict, so forge via reduce
    class Forged:
        def __reduce__(self) -> Any:
            return (Tree, args, forged)

    with pytest.raises(tiffin.UnsafeArtifactError, match="left"):
        safe_loads(pickle.dumps(Forged(), protocol=2))


def test_spline_and_owner_feature_counts_checked() -> None:
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import SplineTransformer
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    spline = SplineTransformer().fit(X)
    check_model(spline)
    spline.bsplines_[0].k = 40  # more degree than knots: evaluation would read past them
    with pytest.raises(tiffin.UnsafeArtifactError, match="bsplines_"):
        check_model(spline)
    tree = DecisionTreeClassifier(max_depth=2).fit(X, y)
    tree.n_features_in_ = 2  # input validated to 2 columns, nodes index up to 4
    with pytest.raises(tiffin.UnsafeArtifactError, match="n_features"):
        check_model(tree)
    assert json.dumps  # keep the import used by the helpers above


def _fitted_trees() -> dict[str, Any]:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    X, y = load_iris(return_X_y=True)
    return {
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y),
        "regressor": DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, y),
        "forest": RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y),
        "hgb": HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y),
    }


def _member(i: int, attr: str, value: Any) -> Callable[[Any], None]:
    return lambda m: setattr(m.estimators_[i], attr, value)


def _attr(attr: str, value: Any) -> Callable[[Any], None]:
    return lambda m: setattr(m, attr, value)


OWNER_CASES: list[tuple[str, str, Callable[[Any], None], str]] = [
    ("tree", "classes_ as a matrix", _attr("classes_", np.array([[0, 1, 2]])), "classes_"),
    ("tree", "fewer classes than the tree", _attr("classes_", np.array([0, 1])), "classes_"),
    ("tree", "no classes", _attr("classes_", np.array([], dtype=np.int64)), "classes_"),
    ("tree", "n_classes_ apart from classes_", _attr("n_classes_", 2), "n_classes_"),
    ("tree", "n_outputs_ apart from the tree", _attr("n_outputs_", 2), "n_outputs_"),
    ("regressor", "n_outputs_ apart from a regressor's tree", _attr("n_outputs_", 3), "n_outputs_"),
    ("forest", "a member with fewer classes", _member(2, "n_classes_", 2), r"estimators_\[2\]"),
    ("forest", "a member with no classes", _member(0, "classes_", np.array([])), r"estimators_\[0\]"),
    ("forest", "classes_ as a matrix", _attr("classes_", np.array([[0, 1, 2]])), "classes_"),
    ("forest", "more classes than the members", _attr("classes_", np.arange(6)), "classes_"),
    ("hgb", "a baseline per row", _attr("_baseline_prediction", np.zeros((2, 3))), "_baseline_prediction"),
    ("hgb", "no baseline", _attr("_baseline_prediction", np.zeros((0, 3))), "_baseline_prediction"),
    ("hgb", "a row of four predictors", lambda m: m._predictors[0].append(m._predictors[0][0]), r"_predictors\[0\]"),
    ("hgb", "classes_ as a matrix", _attr("classes_", np.array([[0, 1, 2]])), "classes_"),
    ("hgb", "trees per iteration for 2 classes", _attr("classes_", np.array([0, 1])), "n_trees_per_iteration_"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "label", "edit", "field"), OWNER_CASES, ids=[c[1] for c in OWNER_CASES]
)
def test_outputs_and_classes_agree_with_the_trees(
    kind: str, label: str, edit: Callable[[Any], None], field: str
) -> None:
    """Each of these loaded and then failed at predict with an IndexError or a shape error."""
    model = _fitted_trees()[kind]
    check_model(model)
    edit(model)
    with pytest.raises(tiffin.UnsafeArtifactError, match=field):
        check_model(model)
