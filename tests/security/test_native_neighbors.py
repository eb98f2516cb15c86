"""Forged KDTree, BallTree and distance-metric state is refused with the field named,
through skops and pickle alike, and a neighbours model must agree with its tree."""

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
from tiffin.security.native_neighbors import check_tree_state
from tiffin.security.native_trees import check_model
from tiffin.security.unpickler import safe_loads

KD = "sklearn.neighbors._kd_tree.KDTree"
BALL = "sklearn.neighbors._ball_tree.BallTree"


def _fitted(algorithm: str, **kwargs: Any) -> tuple[Any, Any, Any]:
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier

    X, y = load_iris(return_X_y=True)
    model = KNeighborsClassifier(n_neighbors=3, algorithm=algorithm, leaf_size=8, **kwargs)
    return model.fit(X, y), X, y


def _state(algorithm: str, **kwargs: Any) -> list[Any]:
    model, _, _ = _fitted(algorithm, **kwargs)
    return [v.copy() if isinstance(v, np.ndarray) else v for v in model._tree.__getstate__()]


def _at(i: int, value: Any) -> Callable[[list[Any]], None]:
    return lambda s: s.__setitem__(i, value)


def _entry(i: int, index: Any, value: Any) -> Callable[[list[Any]], None]:
    return lambda s: s[i].__setitem__(index, value)


def _node(i: int, field: str, value: int) -> Callable[[list[Any]], None]:
    return lambda s: s[2][field].__setitem__(i, value)


def _metric(name: str, **kwargs: Any) -> Any:
    from sklearn.metrics import DistanceMetric

    return DistanceMetric.get_metric(name, **kwargs)


CASES: list[tuple[str, str, Callable[[list[Any]], None], str]] = [
    ("kd_tree", "point index past the rows", _entry(1, 0, 150), "idx_array"),
    ("kd_tree", "point index negative", _entry(1, 3, -1), "idx_array"),
    ("kd_tree", "idx_array shorter than data", lambda s: s.__setitem__(1, s[1][:-1]), "idx_array"),
    ("kd_tree", "a leaf's range past idx_array", _node(-1, "idx_end", 10_000), r"node_data\[\d+\]"),
    ("kd_tree", "a range that starts after it ends", _node(0, "idx_start", 149), r"node_data\[0\]"),
    ("kd_tree", "a last node made inner", _node(-1, "is_leaf", 0), "is_leaf"),
    ("kd_tree", "is_leaf not 0 or 1", _node(0, "is_leaf", 7), "is_leaf"),
    ("kd_tree", "n_nodes past node_data", _at(6, 63), "n_nodes"),
    ("kd_tree", "fewer records than n_nodes", lambda s: s.__setitem__(2, s[2][:-2]), "node_data"),
    ("kd_tree", "node_bounds for fewer features", lambda s: s.__setitem__(3, np.ascontiguousarray(s[3][:, :, :2])), "node_bounds"),
    ("ball_tree", "centroids as KD bounds", lambda s: s.__setitem__(3, np.concatenate([s[3], s[3]])), "node_bounds"),
    ("kd_tree", "data of another dtype", lambda s: s.__setitem__(0, s[0].astype(np.float32)), "data"),
    ("kd_tree", "data not contiguous", lambda s: s.__setitem__(0, np.asfortranarray(s[0])), "data"),
    ("kd_tree", "leaf_size 0", _at(4, 0), "leaf_size"),
    ("kd_tree", "no metric", _at(11, None), "dist_metric"),
    ("kd_tree", "a metric KDTree does not take", _at(11, _metric("hamming")), "dist_metric"),
    ("ball_tree", "seuclidean weights for 2 of 4 features", _at(11, _metric("seuclidean", V=np.ones(2))), r"dist_metric\.vec"),
    ("ball_tree", "mahalanobis matrix for 3 features", _at(11, _metric("mahalanobis", VI=np.eye(3))), r"dist_metric\.mat"),
    ("ball_tree", "haversine over 4 features", _at(11, _metric("haversine")), "haversine"),
    ("kd_tree", "minkowski weights for 5 features", _at(11, _metric("minkowski", p=3, w=np.ones(5))), r"dist_metric\.vec"),
    ("kd_tree", "sample weights for fewer rows", _at(12, np.ones(10)), "sample_weight"),
    ("kd_tree", "a state of 12 entries", lambda s: s.pop(), "state"),
]  # fmt: skip


@pytest.mark.parametrize(("algorithm", "label", "edit", "field"), CASES, ids=[c[1] for c in CASES])
def test_forged_tree_state_refused_with_field_named(
    algorithm: str, label: str, edit: Callable[[list[Any]], None], field: str
) -> None:
    kind = KD if algorithm == "kd_tree" else BALL
    state = _state(algorithm)
    check_tree_state(kind, tuple(state))  # the real one passes
    edit(state)
    with pytest.raises(tiffin.UnsafeArtifactError, match=field):
        check_tree_state(kind, tuple(state))


@pytest.mark.parametrize(
    ("algorithm", "kwargs"),
    [
        ("kd_tree", {}),
        ("ball_tree", {}),
        ("kd_tree", {"metric": "minkowski", "p": 3}),
        ("kd_tree", {"metric": "manhattan"}),
        ("ball_tree", {"metric": "mahalanobis", "metric_params": {"VI": np.eye(4)}}),
        ("ball_tree", {"metric": "seuclidean", "metric_params": {"V": np.ones(4)}}),
        ("brute", {}),
    ],
)
def test_real_models_load_and_predict_through_skops_and_pickle(
    algorithm: str, kwargs: dict[str, Any]
) -> None:
    model, X, _ = _fitted(algorithm, **kwargs)
    expected = model.predict(X)
    np.testing.assert_array_equal(load_bytes(dump_skops(model)).predict(X), expected)
    np.testing.assert_array_equal(safe_loads(pickle.dumps(model, protocol=5)).predict(X), expected)


def _skops_with_tree_array(model: Any, position: int, edit: Callable[[Any], Any]) -> bytes:
    """The model's skops file with entry ``position`` of the tree's state edited."""
    data = dump_skops(model)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members["schema.json"])
    name = schema["content"]["content"]["_tree"]["content"]["content"][position]["file"]
    buf = io.BytesIO()
    np.save(buf, edit(np.load(io.BytesIO(members[name]))))
    members[name] = buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for member, body in members.items():
            zf.writestr(member, body)
    return out.getvalue()


def _set_first(value: Any) -> Callable[[Any], Any]:
    def edit(arr: Any) -> Any:
        arr = arr.copy()
        arr.reshape(-1)[0] = value
        return arr

    return edit


def _end_of_last(arr: Any) -> Any:
    arr = arr.copy()
    arr["idx_end"][-1] = 10**9
    return arr


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree"])
def test_forged_tree_refused_through_skops(algorithm: str) -> None:
    model, _, _ = _fitted(algorithm)
    for position, edit, field in [
        (1, _set_first(10**6), "idx_array"),
        (2, _end_of_last, "node_data"),
        (3, lambda a: np.ascontiguousarray(a[:, :-1]), "node_bounds"),
    ]:
        with pytest.raises(tiffin.UnsafeArtifactError, match=field):
            load_bytes(_skops_with_tree_array(model, position, edit))


def test_forged_tree_refused_through_pickle_before_build() -> None:
    from sklearn.neighbors._kd_tree import KDTree, newObj

    state = _state("kd_tree")
    state[1][0] = 10**6

    class Forged:
        def __reduce__(self) -> Any:
            return (newObj, (KDTree,), tuple(state))

    with pytest.raises(tiffin.UnsafeArtifactError, match="idx_array"):
        safe_loads(pickle.dumps(Forged(), protocol=2))

    metric = _metric("seuclidean", V=np.ones(4))
    metric_state = (2.0, np.ones((2, 2)), np.zeros((1, 1)))  # vec of two dimensions

    class ForgedMetric:
        def __reduce__(self) -> Any:
            return (newObj, (type(metric),), metric_state)

    with pytest.raises(tiffin.UnsafeArtifactError, match="vec"):
        safe_loads(pickle.dumps(ForgedMetric(), protocol=2))


def _edited(model: Any, **attrs: Any) -> Any:
    for key, value in attrs.items():
        setattr(model, key, value)
    return model


@pytest.mark.parametrize(
    ("label", "attrs", "field"),
    [
        ("labels for fewer rows", {"_y": np.zeros(10, dtype=np.int64)}, "_y"),
        ("a label past the classes", {"classes_": np.array([0, 1])}, "_y"),
        ("more neighbours than rows", {"n_neighbors": 151}, "n_neighbors"),
        ("no neighbours", {"n_neighbors": 0}, "n_neighbors"),
        ("an unknown search", {"_fit_method": "x"}, "_fit_method"),
        ("brute force with a tree", {"_fit_method": "brute"}, "_tree"),
        ("a ball tree said to be a KD tree", {"_fit_method": "ball_tree"}, "_tree"),
        ("features the tree does not have", {"n_features_in_": 3}, "n_features_in_"),
        ("rows the tree does not have", {"n_samples_fit_": 151}, "n_samples_fit_"),
        ("_fit_X apart from the tree", {"_fit_X": np.zeros((150, 3))}, "_fit_X"),
        ("classes_ as a matrix", {"classes_": np.array([[0, 1, 2]])}, "classes_"),
    ],
)
def test_neighbors_owner_agrees_with_its_tree(
    label: str, attrs: dict[str, Any], field: str
) -> None:
    model, _, _ = _fitted("kd_tree")
    check_model(model)
    with pytest.raises(tiffin.UnsafeArtifactError, match=field):
        check_model(_edited(model, **attrs))


@pytest.mark.parametrize("length", [12, 14])
def test_state_tuple_of_another_length_refused_from_the_json(length: int) -> None:
    """KDTree.__setstate__ reads state[12] unchecked: a 12-entry tuple read past its end
    (a segfault inside skops's load) before this check existed."""
    model, _, _ = _fitted("kd_tree")
    data = dump_skops(model)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members["schema.json"])
    items = schema["content"]["content"]["_tree"]["content"]["content"]
    del items[length:]
    items.extend(items[-1:] * (length - len(items)))
    members["schema.json"] = json.dumps(schema).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for member, body in members.items():
            zf.writestr(member, body)
    with pytest.raises(tiffin.UnsafeArtifactError, match="tuple of 13 entries"):
        load_bytes(out.getvalue())
