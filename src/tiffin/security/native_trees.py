"""Checks on model state that C code indexes without bounds checks, before that code runs.

scikit-learn's ``Tree`` copies its ``nodes`` array into C memory as given (the copy's
length is ``node_count``, not the array's), and prediction follows ``left_child`` and
``right_child`` and reads ``X[:, feature]`` without a bounds check; HistGradientBoosting's
``TreePredictor`` does the same with its record array, and SciPy's ``BSpline`` evaluates
with knots and coefficients whose lengths it trusts. A forged file could read or write
outside those arrays, or loop forever. Here every such state must be one the library
itself could have made:

- children in range and pointing forward (a child is created after its parent), so a
  walk from the root always ends at a leaf; every node but the root has one parent;
- a leaf has no child on either side (``-1`` both in ``Tree``), an inner node both;
- feature indices below the number of features the owner validates its input against;
- arrays of the exact dtype, dimension and shape the C code reads;
- counts (``node_count``, ``max_depth``, ``n_outputs``, classes) consistent with them.

Each refusal names the field.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import UnsafeArtifactError
from . import native_neighbors, numpy_guard
from .native_fields import array_field, int_field, refuse

_TREE_LEAF = -1
_TREE_UNDEFINED = -2


def _forward_children(left: Any, right: Any, inner: Any, where: str) -> None:
    """Inner nodes' children in range, after their parent, and each node but the root
    the child of exactly one node."""
    import numpy as np

    n = len(left)
    idx = np.arange(n)
    for name, child in (("left", left), ("right", right)):
        bad = inner & ((child <= idx) | (child >= n))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise refuse(
                f"{where}[{i}].{name}",
                f"child {int(child[i])} is not a later node of the {n}",
            )
    parents = np.bincount(np.concatenate([left[inner], right[inner]]).astype(np.int64), minlength=n)
    orphan = np.flatnonzero(parents[1:] != 1)
    if len(orphan):
        i = int(orphan[0]) + 1
        raise refuse(f"{where}[{i}]", f"node has {int(parents[i])} parents, expected 1")


def _depth(left: Any, right: Any, inner: Any) -> int:
    """The deepest leaf's depth (children point forward, so levels are found in order)."""
    import numpy as np

    frontier = np.array([0])
    depth = 0
    while True:
        frontier = frontier[inner[frontier]]
        if not len(frontier):
            return depth
        frontier = np.concatenate([left[frontier], right[frontier]])
        depth += 1


def check_tree_args(args: Any, where: str = "Tree") -> tuple[int, Any, int]:
    """``sklearn.tree._tree.Tree(*args)`` is safe to run."""
    import numpy as np

    if not isinstance(args, tuple) or len(args) != 3:
        raise refuse(f"{where}.args", "expected (n_features, n_classes, n_outputs)")
    n_features = int_field(args[0], f"{where}.n_features", 1)
    n_outputs = int_field(args[2], f"{where}.n_outputs", 1, 1 << 20)
    n_classes = array_field(args[1], f"{where}.n_classes", np.intp, 1)
    if len(n_classes) != n_outputs:
        raise refuse(f"{where}.n_classes", f"{len(n_classes)} entries for {n_outputs} outputs")
    if (n_classes < 1).any() or (n_classes > 2**31 - 1).any():
        raise refuse(f"{where}.n_classes", "a class count below 1 or too large")
    return n_features, n_classes, n_outputs


def check_tree_state(args: Any, state: Any, where: str = "Tree") -> None:
    """``sklearn.tree._tree.Tree(*args).__setstate__(state)`` is safe to run."""
    import numpy as np
    from sklearn.tree._tree import NODE_DTYPE

    n_features, n_classes, n_outputs = check_tree_args(args, where)
    if not isinstance(state, dict):
        raise refuse(f"{where}.state", f"expected a dict, got {type(state).__name__}")
    for key in ("max_depth", "node_count", "nodes", "values"):
        if key not in state:
            raise refuse(f"{where}.{key}", "missing")
    nodes = array_field(state["nodes"], f"{where}.nodes", NODE_DTYPE, 1)
    n = len(nodes)
    node_count = int_field(state["node_count"], f"{where}.node_count", 1)
    if node_count != n:
        raise refuse(f"{where}.node_count", f"{node_count}, but nodes holds {n}")
    values = array_field(state["values"], f"{where}.values", np.float64, 3)
    expected = (n, n_outputs, int(n_classes.max()))
    if values.shape != expected:
        raise refuse(f"{where}.values", f"shape {values.shape}, expected {expected}")
    left, right = nodes["left_child"], nodes["right_child"]
    leaf = left == _TREE_LEAF
    if (leaf != (right == _TREE_LEAF)).any():
        i = int(np.flatnonzero(leaf != (right == _TREE_LEAF))[0])
        raise refuse(f"{where}.nodes[{i}]", "one child is a leaf marker (-1), not both")
    inner = ~leaf
    _forward_children(left, right, inner, f"{where}.nodes")
    feature = nodes["feature"]
    bad = (inner & ((feature < 0) | (feature >= n_features))) | (
        leaf & (feature != _TREE_UNDEFINED)
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise refuse(
            f"{where}.nodes[{i}].feature",
            f"{int(feature[i])} for a tree over {n_features} features",
        )
    max_depth = int_field(state["max_depth"], f"{where}.max_depth", 0)
    if max_depth != _depth(left, right, inner):
        raise refuse(f"{where}.max_depth", f"{max_depth}, not the depth of its nodes")


def check_predictor(pred: Any, n_features: int | None, where: str) -> None:
    """A HistGradientBoosting ``TreePredictor`` is safe to predict with."""
    import numpy as np
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    state = getattr(pred, "__dict__", {})
    nodes = array_field(state.get("nodes"), f"{where}.nodes", PREDICTOR_RECORD_DTYPE, 1)
    if not len(nodes):
        raise refuse(f"{where}.nodes", "empty")
    bitsets = {}
    for key in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
        arr = array_field(state.get(key), f"{where}.{key}", np.uint32, 2)
        if arr.shape[1] != 8 or not arr.flags.c_contiguous:
            raise refuse(f"{where}.{key}", f"shape {arr.shape}, expected (n, 8), contiguous")
        bitsets[key] = arr
    is_leaf = nodes["is_leaf"]
    if (is_leaf > 1).any():
        raise refuse(f"{where}.nodes.is_leaf", "not 0 or 1")
    inner = is_leaf == 0
    left = nodes["left"].astype(np.int64)
    right = nodes["right"].astype(np.int64)
    _forward_children(left, right, inner, f"{where}.nodes")
    feature = nodes["feature_idx"]
    high = n_features if n_features is not None else 2**31 - 1
    bad = inner & ((feature < 0) | (feature >= high))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise refuse(f"{where}.nodes[{i}].feature_idx", f"{int(feature[i])} for {high} features")
    cat = inner & (nodes["is_categorical"] != 0)
    n_sets = min(len(b) for b in bitsets.values())
    bad = cat & (nodes["bitset_idx"] >= n_sets)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise refuse(f"{where}.nodes[{i}].bitset_idx", f"beyond the {n_sets} bitsets")


def check_bspline(spline: Any, where: str) -> None:
    """A SciPy ``BSpline`` is one its own constructor accepts (knots sorted, enough of
    them for the degree, coefficients for every basis function)."""
    import numpy as np
    from scipy.interpolate import BSpline

    state = getattr(spline, "__dict__", {})
    try:
        # knots and coefficients live in _t and _c (the properties t and c read them)
        fresh = BSpline(
            state["_t"], state["_c"], state["k"],
            extrapolate=state["extrapolate"], axis=state["axis"],
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise refuse(where, f"not a valid spline ({exc})") from None
    for key in ("_t", "_c"):
        mine, made = state[key], getattr(fresh, key)
        if type(mine) is not np.ndarray or mine.dtype != made.dtype or mine.shape != made.shape:
            raise refuse(f"{where}.{key}", "not the array the constructor makes")
    if type(state["k"]) is not int:
        raise refuse(f"{where}.k", "not an int")


def _tree_holders(obj: Any) -> list[Any]:
    """The fitted scikit-learn trees an ensemble's ``estimators_`` holds (flattened, in
    order: ``estimators_features_[i]`` belongs to the i-th)."""
    import numpy as np

    found: list[Any] = []
    stack = [getattr(obj, "estimators_", None)]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, np.ndarray) and item.dtype == object:
            stack.extend(reversed(item.ravel().tolist()))
        elif hasattr(item, "tree_"):
            found.append(item)
    return found


def _inconsistent(where: str, why: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"{where}: {why}; the model could not predict",
        where=where,
        fix="do not load this file; pack the model again from its training code",
    )


def _class_counts(obj: Any, n_outputs: int, where: str) -> list[int]:
    """The number of classes per output that ``classes_`` and ``n_classes_`` agree on
    (scikit-learn keeps one array and an int for one output, lists for several)."""
    import numpy as np

    classes = getattr(obj, "classes_", None)
    per_output = [classes] if n_outputs == 1 else classes
    if not isinstance(per_output, list) or len(per_output) != n_outputs:
        raise _inconsistent(
            f"{where}.classes_", f"not one array of labels per output ({n_outputs})"
        )
    counts = []
    for labels in per_output:
        if type(labels) is not np.ndarray or labels.ndim != 1 or not len(labels):
            raise _inconsistent(f"{where}.classes_", "not a 1-D array of labels per output")
        counts.append(len(labels))
    n_classes = getattr(obj, "n_classes_", None)
    if n_classes is not None:
        given = [n_classes] if n_outputs == 1 else n_classes
        try:
            same = [int(c) for c in given] == counts  # type: ignore[union-attr]
        except (TypeError, ValueError, OverflowError):
            same = False
        if not same:
            raise _inconsistent(f"{where}.n_classes_", f"{n_classes!r}, classes_ holds {counts}")
    return counts


def _check_tree_outputs(obj: Any, tree: Any, where: str) -> None:
    """A fitted decision tree: its ``n_outputs_``, ``classes_`` and ``n_classes_`` are
    what its ``tree_`` computes (predict takes ``classes_`` at the tree's argmax)."""
    n_outputs = getattr(obj, "n_outputs_", None)
    if n_outputs != tree.n_outputs:
        raise _inconsistent(f"{where}.n_outputs_", f"{n_outputs!r}, its tree has {tree.n_outputs}")
    built = [int(c) for c in tree.n_classes]
    if hasattr(obj, "classes_"):
        counts = _class_counts(obj, tree.n_outputs, where)
        if counts != built:
            raise _inconsistent(f"{where}.classes_", f"{counts} classes, its tree has {built}")
    elif any(c != 1 for c in built):
        raise _inconsistent(f"{where}.tree_.n_classes", f"{built} for a regressor")


def _check_members(obj: Any, holders: list[Any], where: str) -> None:
    """An ensemble's trees predict the same outputs and classes as the ensemble (its
    predict adds their probabilities column by column)."""
    import numpy as np

    if "classes_" not in vars(obj) or not hasattr(holders[0], "classes_"):
        return
    n_outputs = getattr(obj, "n_outputs_", 1)
    if isinstance(n_outputs, bool) or not isinstance(n_outputs, (int, np.integer)) or n_outputs < 1:
        raise _inconsistent(f"{where}.n_outputs_", f"{n_outputs!r}")
    counts = _class_counts(obj, int(n_outputs), where)
    for i, holder in enumerate(holders):
        if getattr(holder, "n_outputs_", None) != n_outputs:
            raise _inconsistent(f"{where}.estimators_[{i}].n_outputs_", f"not {n_outputs}")
        if _class_counts(holder, int(n_outputs), f"{where}.estimators_[{i}]") != counts:
            raise _inconsistent(
                f"{where}.estimators_[{i}].classes_", f"not the ensemble's {counts} classes"
            )


def _check_predictor_grid(obj: Any, predictors: Any, where: str) -> None:
    """HistGradientBoosting: rows of ``n_trees_per_iteration_`` predictors, a
    baseline per tree, and (for a classifier) one tree per class beyond two."""
    import numpy as np

    per_iter = getattr(obj, "n_trees_per_iteration_", None)
    if isinstance(per_iter, bool) or not isinstance(per_iter, (int, np.integer)) or per_iter < 1:
        raise _inconsistent(f"{where}.n_trees_per_iteration_", f"{per_iter!r}")
    for i, row in enumerate(predictors):
        if not isinstance(row, list) or len(row) != per_iter:
            raise _inconsistent(f"{where}._predictors[{i}]", f"not {per_iter} predictors")
    baseline = getattr(obj, "_baseline_prediction", None)
    if type(baseline) is not np.ndarray or baseline.shape != (1, per_iter):
        shape = getattr(baseline, "shape", type(baseline).__name__)
        raise _inconsistent(f"{where}._baseline_prediction", f"{shape}, expected (1, {per_iter})")
    if baseline.dtype.kind != "f":
        raise _inconsistent(f"{where}._baseline_prediction", f"dtype {baseline.dtype}")
    if "classes_" in vars(obj):
        (n_classes,) = _class_counts(obj, 1, where)
        if per_iter != (1 if n_classes <= 2 else n_classes):
            raise _inconsistent(
                f"{where}.n_trees_per_iteration_", f"{per_iter} trees for {n_classes} classes"
            )


def _check_params(obj: Any, where: str) -> None:
    """A scikit-learn estimator has each of its parameters, of a type and value its
    ``fit`` accepts (predict reads them: ``weights``, ``metric``, ``n_neighbors``...)."""
    base = sys.modules.get("sklearn.base")
    if base is None or not isinstance(obj, base.BaseEstimator):
        return
    for name in type(obj)._get_param_names():
        if name not in vars(obj):
            raise _inconsistent(f"{where}.{name}", "missing, a parameter of the estimator")
    from sklearn.utils._param_validation import InvalidParameterError

    if not hasattr(type(obj), "_parameter_constraints"):
        return  # an internal helper (a bin mapper): its owner validates it
    try:
        obj._validate_params()
    except (InvalidParameterError, TypeError, ValueError) as exc:
        raise _inconsistent(where, f"a parameter scikit-learn refuses ({exc})") from None


def _check_owner(obj: Any, where: str) -> None:
    """Feature counts agree down an estimator: what its trees index is what it validates."""
    import numpy as np

    _check_params(obj, where)
    native_neighbors.check_owner(obj, where)
    n_in = getattr(obj, "n_features_in_", None)
    tree: Any = getattr(obj, "tree_", None)
    if type(tree).__name__ == "Tree" and n_in is not None and tree.n_features != n_in:
        raise refuse(f"{where}.tree_.n_features", f"{tree.n_features}, estimator has {n_in}")
    if type(tree).__name__ == "Tree":
        _check_tree_outputs(obj, tree, where)
    holders = _tree_holders(obj)
    if holders:
        _check_members(obj, holders, where)
    if holders and n_in is not None:
        subsets = getattr(obj, "estimators_features_", None)
        for i, holder in enumerate(holders):
            expected = n_in
            if subsets is not None:
                if i >= len(subsets):
                    raise refuse(f"{where}.estimators_features_", "fewer than estimators_")
                expected = len(subsets[i])
                cols = np.asarray(subsets[i])
                if cols.dtype.kind not in "iu" or ((cols < 0) | (cols >= n_in)).any():
                    raise refuse(f"{where}.estimators_features_[{i}]", "outside the features")
            if getattr(holder, "n_features_in_", None) != expected:
                raise refuse(
                    f"{where}.estimators_[{i}].n_features_in_",
                    f"{getattr(holder, 'n_features_in_', None)}, the ensemble passes {expected}",
                )
    predictors = getattr(obj, "_predictors", None)
    if predictors is not None:
        mapper = getattr(obj, "_bin_mapper", None)
        widths = [n_in] if isinstance(n_in, (int, np.integer)) else []
        binned = getattr(mapper, "n_bins_non_missing_", None)
        if binned is not None:
            widths.append(len(binned))
        categorical = getattr(mapper, "is_categorical_", None)
        if categorical is not None:
            widths.append(len(categorical))
        if not widths:
            raise refuse(f"{where}.n_features_in_", "missing, so its trees cannot be checked")
        if len(set(int(w) for w in widths)) != 1:
            raise refuse(f"{where}._bin_mapper", f"feature counts disagree: {widths}")
        if not isinstance(predictors, list):
            raise refuse(f"{where}._predictors", "not a list")
        _check_predictor_grid(obj, predictors, where)
        for i, row in enumerate(predictors):
            for j, pred in enumerate(row if isinstance(row, list) else [row]):
                check_predictor(pred, int(widths[0]), f"{where}._predictors[{i}][{j}]")


def check_model(model: Any) -> None:
    """Walk a loaded model; refuse any native-memory state that is not self-consistent."""
    import numpy as np

    sparse = sys.modules.get("scipy.sparse")
    stack: list[tuple[Any, str]] = [(model, "model")]
    seen: set[int] = set()
    while stack:
        obj, where = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
            continue
        seen.add(id(obj))
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        if kind == "sklearn.tree._tree.Tree":
            check_tree_state(
                (obj.n_features, np.asarray(obj.n_classes, dtype=np.intp), obj.n_outputs),
                obj.__getstate__(),
                where,
            )
            continue
        if kind in native_neighbors.TREES:
            native_neighbors.check_tree_state(kind, obj.__getstate__(), where)
            continue
        if native_neighbors.is_metric(obj):
            native_neighbors.check_metric_state(kind, obj.__getstate__(), where)
            continue
        if kind == "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor":
            check_predictor(obj, None, where)
        elif kind == "scipy.interpolate._bsplines.BSpline":
            check_bspline(obj, where)
        elif sparse is not None and sparse.issparse(obj):
            try:
                obj.check_format(full_check=True)
            except (ValueError, TypeError) as exc:
                raise refuse(where, f"sparse matrix with bad indices ({exc})") from None
            continue
        numpy_guard.check_rng_state(obj)
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend((v, f"{where}[]") for v in obj.ravel().tolist())
            continue
        if isinstance(obj, dict):
            stack.extend((v, f"{where}[{k!r}]") for k, v in obj.items())
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(obj))
            continue
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):
            _check_owner(obj, where)
            stack.extend((v, f"{where}.{k}") for k, v in attrs.items())
