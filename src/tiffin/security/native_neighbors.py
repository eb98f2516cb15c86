"""Checks on scikit-learn's ``KDTree``, ``BallTree`` and ``DistanceMetric`` state.

A binary tree's C code walks ``node_data`` by position (the children of node ``i`` are
``2i + 1`` and ``2i + 2``, a leaf's points are ``idx_array[idx_start:idx_end]``), reads
``data[idx_array[k]]`` and ``node_bounds[:, i]`` row by row, and hands each pair of rows
to the distance metric, which reads ``n_features`` entries of its ``vec`` or a
``mat`` of ``n_features`` rows; none of it is bounds-checked. ``__setstate__`` reads
its tuple by position, unchecked too (a short tuple is refused before it runs: by
:mod:`tiffin.security.skops_audit` from the file's JSON, by the unpickler before BUILD),
then only assigns typed memoryviews (Cython checks their dtype and dimensions). So every
such state must be one ``KDTree(X)`` or ``BallTree(X)`` could have built, checked before
BUILD on the pickle path and on the built model before any query on the skops path:

- ``data`` a C-contiguous float64 matrix; ``idx_array`` a permutation of its rows;
- ``node_data`` of ``n_nodes = 2 ** n_levels - 1`` records, each point range inside
  ``idx_array``, every inner node's children inside ``node_data`` and splitting its
  range, the root's range all of it;
- ``node_bounds`` of shape ``(2 or 1, n_nodes, n_features)``;
- a metric of a listed class the tree accepts, whose ``vec`` and ``mat`` cover
  ``n_features`` (the Haversine metric reads exactly two);
- ``sample_weight`` absent or one per row; ``leaf_size`` at least 1.

A ``KNeighbors*`` estimator is checked against its tree: the rows it labels (``_y``), the
features it validates, the neighbours it asks for. Each refusal names the field.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsafeArtifactError
from .native_fields import array_field, int_field, refuse

# the first dimension of node_bounds: (lower, upper) corners, or one centroid
TREES = {
    "sklearn.neighbors._kd_tree.KDTree": 2,
    "sklearn.neighbors._kd_tree.KDTree64": 2,
    "sklearn.neighbors._ball_tree.BallTree": 1,
    "sklearn.neighbors._ball_tree.BallTree64": 1,
}
_METRIC_MODULE = "sklearn.metrics._dist_metrics"
STATE_LENGTH = 13  # data, idx_array, node_data, node_bounds, 7 ints, metric, sample_weight
METRIC_STATE_LENGTH = 3  # p, vec, mat
_COUNTERS = ("leaf_size", "n_levels", "n_nodes", "n_trims", "n_leaves", "n_splits", "n_calls")


def _name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def is_metric(obj: Any) -> bool:
    """``obj`` is one of scikit-learn's compiled distance metrics."""
    return type(obj).__module__ == _METRIC_MODULE and type(obj).__name__.endswith("Distance64")


def check_metric_state(kind: str, state: Any, where: str) -> tuple[Any, Any]:
    """``<metric class>.__setstate__(state)`` gets a float ``p`` and float64 ``vec`` and
    ``mat``; returns ``(vec, mat)``. ``PyFuncDistance`` (a Python callable) is refused."""
    import numpy as np

    if not (kind.startswith(f"{_METRIC_MODULE}.") and kind.endswith("Distance64")):
        raise refuse(where, f"{kind} is not a distance metric")
    if kind.endswith(".PyFuncDistance64"):
        raise refuse(where, "a metric that calls a Python function is not loaded")
    if not isinstance(state, tuple) or len(state) != METRIC_STATE_LENGTH:
        raise refuse(f"{where}.state", "expected (p, vec, mat)")
    p, vec, mat = state
    if isinstance(p, bool) or not isinstance(p, (float, int, np.floating, np.integer)):
        raise refuse(f"{where}.p", f"expected a number, got {type(p).__name__}")
    if not float(p) > 0:
        raise refuse(f"{where}.p", f"{p} is not above 0")
    vec = array_field(vec, f"{where}.vec", np.float64, 1, contiguous=True)
    mat = array_field(mat, f"{where}.mat", np.float64, 2, contiguous=True)
    return vec, mat


def check_metric(metric: Any, n_features: int, tree_kind: str, where: str) -> None:
    """The metric a tree holds is one that tree accepts and covers its features."""
    kind = _name(metric)
    if not is_metric(metric):
        raise refuse(where, f"{kind} is not a distance metric")
    vec, mat = check_metric_state(kind, metric.__getstate__(), where)
    cls = type(metric).__name__
    allowed = _valid_metrics(tree_kind)
    if cls not in allowed:
        raise refuse(where, f"{cls} is not a metric {tree_kind.rpartition('.')[2]} accepts")
    if cls == "SEuclideanDistance64" and len(vec) != n_features:
        raise refuse(f"{where}.vec", f"{len(vec)} weights for {n_features} features")
    if cls == "MinkowskiDistance64" and len(vec) not in (0, n_features):
        raise refuse(f"{where}.vec", f"{len(vec)} weights for {n_features} features")
    if cls == "MahalanobisDistance64" and mat.shape != (n_features, n_features):
        raise refuse(f"{where}.mat", f"shape {mat.shape} for {n_features} features")
    if cls == "HaversineDistance64" and n_features != 2:
        raise refuse(where, f"the haversine metric reads 2 features, the tree has {n_features}")


def _valid_metrics(tree_kind: str) -> frozenset[str]:
    import importlib

    module = importlib.import_module(tree_kind.rpartition(".")[0])
    return frozenset(str(n) for n in module.VALID_METRICS64)


def check_tree_state(kind: str, state: Any, where: str = "tree") -> None:
    """``<KDTree or BallTree>.__setstate__(state)`` leaves a tree safe to query."""
    import numpy as np

    bounds_rows = TREES.get(kind)
    if bounds_rows is None:
        raise refuse(where, f"{kind} is not a KDTree or BallTree")
    if not isinstance(state, tuple) or len(state) != STATE_LENGTH:
        raise refuse(f"{where}.state", f"expected a tuple of {STATE_LENGTH} entries")
    data = array_field(state[0], f"{where}.data", np.float64, 2, contiguous=True)
    n_samples, n_features = data.shape
    if n_samples < 1 or n_features < 1:
        raise refuse(f"{where}.data", f"shape {data.shape}, expected at least one row and column")
    counts = {
        k: int_field(v, f"{where}.{k}", 0) for k, v in zip(_COUNTERS, state[4:11], strict=True)
    }
    if counts["leaf_size"] < 1:
        raise refuse(f"{where}.leaf_size", "below 1")
    n_nodes = counts["n_nodes"]
    if counts["n_levels"] > 62 or n_nodes != 2 ** counts["n_levels"] - 1 or n_nodes < 1:
        raise refuse(f"{where}.n_nodes", f"{n_nodes} for {counts['n_levels']} levels")
    idx = array_field(state[1], f"{where}.idx_array", np.intp, 1, contiguous=True)
    if len(idx) != n_samples or not np.array_equal(np.sort(idx), np.arange(n_samples)):
        raise refuse(f"{where}.idx_array", f"not a permutation of the {n_samples} rows of data")
    from sklearn.neighbors._kd_tree import NodeData

    nodes = array_field(state[2], f"{where}.node_data", NodeData, 1, contiguous=True)
    if len(nodes) != n_nodes:
        raise refuse(f"{where}.node_data", f"{len(nodes)} records, n_nodes is {n_nodes}")
    start, end, leaf = nodes["idx_start"], nodes["idx_end"], nodes["is_leaf"]
    bad = (start < 0) | (start > end) | (end > n_samples)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise refuse(
            f"{where}.node_data[{i}]",
            f"points [{int(start[i])}, {int(end[i])}) outside the {n_samples} of idx_array",
        )
    bad = ((leaf != 0) & (leaf != 1)) | ((leaf == 0) & (2 * np.arange(n_nodes) + 2 >= n_nodes))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise refuse(f"{where}.node_data[{i}].is_leaf", "an inner node without both children")
    # the root holds every point and each inner node splits its range between its children
    inner = np.flatnonzero(leaf == 0)
    left, right = 2 * inner + 1, 2 * inner + 2
    split = (start[left] != start[inner]) | (end[left] != start[right]) | (end[right] != end[inner])
    if start[0] != 0 or end[0] != n_samples or split.any():
        i = int(inner[np.flatnonzero(split)[0]]) if split.any() and start[0] == 0 else 0
        raise refuse(f"{where}.node_data[{i}]", "point ranges that do not split the parent's")
    bounds = array_field(state[3], f"{where}.node_bounds", np.float64, 3, contiguous=True)
    if bounds.shape != (bounds_rows, n_nodes, n_features):
        raise refuse(
            f"{where}.node_bounds",
            f"shape {bounds.shape}, expected {(bounds_rows, n_nodes, n_features)}",
        )
    check_metric(state[11], n_features, kind, f"{where}.dist_metric")
    weight = state[12]
    if weight is not None:
        weight = array_field(weight, f"{where}.sample_weight", np.float64, 1, contiguous=True)
        if len(weight) != n_samples:
            raise refuse(f"{where}.sample_weight", f"{len(weight)} weights for {n_samples} rows")


def _inconsistent(where: str, why: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"{where}: {why}; the model could not predict",
        where=where,
        fix="do not load this file; pack the model again from its training code",
    )


def check_owner(obj: Any, where: str) -> None:
    """A fitted ``KNeighbors*``/``NearestNeighbors``/``RadiusNeighbors*`` agrees with its
    tree (or its rows, for brute force): features, rows, labels and neighbour count."""
    import numpy as np

    state = vars(obj)
    method = state.get("_fit_method")
    if method is None:
        return
    tree = state.get("_tree")
    expected = {"kd_tree": "KDTree", "ball_tree": "BallTree", "brute": None}
    if not isinstance(method, str) or method not in expected:
        raise _inconsistent(
            f"{where}._fit_method", f"{method!r} is not kd_tree, ball_tree or brute"
        )
    want = expected[method]
    if want is None:
        if tree is not None:
            raise _inconsistent(f"{where}._tree", "a tree for a brute-force search")
        rows = state.get("_fit_X")
        shape: Any = getattr(rows, "shape", None)
        if not (type(rows) is np.ndarray or _is_sparse(rows)) or len(shape or ()) != 2:
            raise _inconsistent(f"{where}._fit_X", "not a matrix")
    else:
        if _name(tree) not in TREES or not type(tree).__name__.startswith(want):
            raise _inconsistent(f"{where}._tree", f"{type(tree).__name__}, expected a {want}")
        shape = tree.data.shape
        fit_x = state.get("_fit_X")
        if type(fit_x) is not np.ndarray or fit_x.shape != shape:
            raise _inconsistent(f"{where}._fit_X", f"not the tree's {shape} rows")
    n_samples, n_features = shape
    if state.get("n_features_in_") != n_features:
        raise _inconsistent(
            f"{where}.n_features_in_", f"{state.get('n_features_in_')}, the rows have {n_features}"
        )
    if state.get("n_samples_fit_") != n_samples:
        raise _inconsistent(
            f"{where}.n_samples_fit_", f"{state.get('n_samples_fit_')}, the tree has {n_samples}"
        )
    # KNeighbors*.predict asks for n_neighbors rows (NearestNeighbors only holds the
    # number, RadiusNeighbors* None)
    k = state.get("n_neighbors")
    if type(obj).__name__.startswith("KNeighbors") and (
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_samples
    ):
        raise _inconsistent(f"{where}.n_neighbors", f"{k!r} for {n_samples} rows")
    if "_y" in state:
        _check_labels(state, n_samples, where)


def _is_sparse(obj: Any) -> bool:
    import sys

    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(obj))


def _check_labels(state: dict[str, Any], n_samples: int, where: str) -> None:
    import numpy as np

    y = state["_y"]
    if type(y) is not np.ndarray or len(y) != n_samples:
        raise _inconsistent(f"{where}._y", f"not {n_samples} labels")
    if "classes_" not in state:  # a regressor averages _y
        if y.dtype.kind not in "fiub" or y.ndim not in (1, 2):
            raise _inconsistent(f"{where}._y", f"dtype {y.dtype}, {y.ndim} dimensions")
        return
    two_d = state.get("outputs_2d_")
    if not isinstance(two_d, (bool, np.bool_)):
        raise _inconsistent(f"{where}.outputs_2d_", f"{two_d!r}, not a bool")
    classes = state["classes_"] if two_d else [state["classes_"]]
    labels = y if two_d else y.reshape(-1, 1)
    if (
        y.dtype.kind not in "iu"
        or labels.ndim != 2
        or (not isinstance(classes, list) or labels.shape[1] != len(classes))
    ):
        raise _inconsistent(f"{where}._y", "not class indices, one column per output")
    for j, cls in enumerate(classes):
        if type(cls) is not np.ndarray or cls.ndim != 1 or not len(cls):
            raise _inconsistent(f"{where}.classes_", "not a list of labels per output")
        column = labels[:, j]
        if column.min() < 0 or column.max() >= len(cls):
            raise _inconsistent(f"{where}._y", f"a class index outside the {len(cls)} classes")
