"""The closed list of types a scikit-learn model may name, and what each may do at load.

A type is trusted because it is *named here*, exactly (``module.Class``), never because
its module starts with ``sklearn.``. The list is generated (:func:`generate`, written to
``_trusted_data.py`` by ``python -m tiffin.security.trusted_types``) from scikit-learn's
estimator registry, plus the internal types those estimators hold once fitted (found by
fitting every default-constructible estimator and listing what its skops file names),
plus a few reviewed families a non-default parameter brings in (kernels, losses). A test
regenerates it against the installed scikit-learn and fails when they drift. The packer
extends it for one package with ``trusted_types=``; nothing else does.

What the names may do at load:

- ``TYPES``: classes rebuilt from their state (``cls.__new__`` then ``__setstate__`` or
  ``__dict__``); never called with arguments from the file.
- ``CONSTRUCTORS``: the only callables called with arguments from the file, each one
  because its arguments are plain data (see the reasons beside them).
- ``FUNCTIONS``: functions a model may *hold* (a ``FunctionTransformer``'s ``func``, a
  score function, NumPy's ufuncs); referenced at load, never called there, and each only
  computes on arrays.
- ``NATIVE``: types whose state is memory their C code indexes without checks; admitted
  only after :mod:`tiffin.security.native_trees` has validated that state.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._trusted_data import ESTIMATORS, FUNCTIONS, INTERNAL, SKLEARN_VERSION

__all__ = [
    "CONSTRUCTORS",
    "ESTIMATORS",
    "FUNCTIONS",
    "INTERNAL",
    "NATIVE",
    "PARTIAL_FUNCTIONS",
    "PICKLE_CONSTRUCTORS",
    "SKLEARN_VERSION",
    "TYPES",
    "generate",
]

# Called at load with arguments from the file; each takes plain data and builds plain data.
CONSTRUCTORS: dict[str, str] = {
    "builtins.slice": "three ints or None; a slice object runs nothing",
    "builtins.complex": "two floats",
    "builtins.range": "three ints",
    "numpy.dtype": "a dtype description, which NumPy validates (offsets, sizes, flags)",
    # a NumPy scalar type called on a number or a 0-d array gives that number
    **{
        f"numpy.{t}": "a NumPy scalar from a number"
        for t in (
            "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
            "uint64", "float16", "float32", "float64", "longdouble", "complex64",
            "complex128", "clongdouble", "str_", "bytes_", "intc", "uintc", "intp", "uintp",
        )
    },
}  # fmt: skip
# Called by the pickle path only, on a class the allow-list has already admitted.
PICKLE_CONSTRUCTORS: dict[str, str] = {
    f"{module}.newObj": "newObj(cls) is cls.__new__(cls): an empty instance of a listed class"
    for module in (
        "sklearn.neighbors._kd_tree", "sklearn.neighbors._ball_tree", "sklearn.metrics._dist_metrics",
    )
}  # fmt: skip
# functools.partial binds leading arguments, which a FunctionTransformer alone cannot
# (it calls func(X, **kw_args)): partial(numpy.savetxt, "/some/path") would write files.
# So it is trusted only around what scikit-learn itself wraps in one: HistGradientBoosting
# on a DataFrame with category columns holds partial(check_array, dtype=..., ...).
PARTIAL_FUNCTIONS = frozenset({"sklearn.utils.validation.check_array"})
NATIVE = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "scipy.interpolate._bsplines.BSpline",
})  # fmt: skip
TYPES = frozenset(ESTIMATORS) | frozenset(INTERNAL)

# The families a non-default parameter brings in, reviewed as a whole: each class holds
# numbers and arrays and computes on them; none opens files, sockets or processes.
_REVIEWED_BASES = (
    ("sklearn.gaussian_process.kernels", "Kernel"),
    ("sklearn._loss.loss", "BaseLoss"),
    ("sklearn._loss.link", "BaseLink"),
)
_REVIEWED_MODULE_TYPES = (
    "sklearn._loss._loss",  # the Cython losses behind BaseLoss (Cy*, plain floats)
    "sklearn.linear_model._sgd_fast",  # SGD's loss objects (Hinge, Log, Huber, ...)
)
# Reviewed one by one: plain Python classes of arrays and lists (Birch's CF tree, which
# its pickle holds), and Bunch: a dict with attribute access whose __setstate__ does
# nothing (the named_estimators_ of voting and stacking ensembles).
_REVIEWED_NAMES = (
    "sklearn.cluster._birch._CFNode",
    "sklearn.cluster._birch._CFSubcluster",
    "sklearn.utils._bunch.Bunch",
)
# The neighbours' trees and their compiled metrics (any ``algorithm=``, ``metric=``):
# arrays and numbers, checked by tiffin.security.native_neighbors before a query. Not
# PyFuncDistance, which calls a Python function the file would name.
_NEIGHBOR_TREES = ("sklearn.neighbors._kd_tree.KDTree", "sklearn.neighbors._ball_tree.BallTree")
_METRICS = ("sklearn.metrics._dist_metrics", "DistanceMetric64", "PyFuncDistance64")
_FEATURE_SCORES = (
    "f_classif", "f_regression", "chi2", "r_regression", "mutual_info_classif",
    "mutual_info_regression",
)  # fmt: skip
_POOLING = ("mean", "median", "max", "min", "sum", "nanmean", "nanmedian", "average", "std")


def _qualname(obj: Any) -> str:
    from skops.io._utils import get_module  # the name skops itself writes

    return f"{get_module(obj)}.{obj.__name__}"


def _standard_data() -> dict[str, Any]:
    import numpy as np
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return {"X": X, "y": y, "Y": np.c_[y, y].astype(float), "counts": np.abs(X).round()}


def fit_default(cls: type) -> Any:
    """``cls()`` fitted on the iris data (as counts, or with two targets, where it needs),
    or None when it cannot be built or fitted with default arguments."""
    import warnings

    data = _standard_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecations, convergence: the types are the same
        try:
            est = cls()
        except TypeError:
            return None  # a meta-estimator that needs its inner estimator
        for X, y in (
            (data["X"], data["y"]),
            (data["X"], data["Y"]),
            (data["counts"], data["y"]),
        ):
            try:
                return est.fit(X, y)
            except Exception:
                continue
    return None


def fitted_estimators() -> Iterator[tuple[str, Any]]:
    """Every estimator of the registry that fits with default arguments, fitted."""
    from sklearn.utils import all_estimators

    for name, cls in all_estimators():
        est = fit_default(cls)
        if est is not None:
            yield name, est


def skops_names(data: bytes) -> set[tuple[str, str]]:
    """Every (loader, ``module.Class``) a skops file names, read from its schema only."""
    import io
    import json
    import zipfile

    found: set[tuple[str, str]] = set()
    stack: list[Any] = [json.loads(zipfile.ZipFile(io.BytesIO(data)).read("schema.json"))]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                found.add((str(node["__loader__"]), f"{node['__module__']}.{node['__class__']}"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def generate(dump: Callable[[Any], bytes] | None = None) -> dict[str, Any]:
    """The lists, computed from the installed scikit-learn (slow: fits every estimator).

    ``dump`` writes an estimator as skops bytes (``skops.io.dumps`` by default; an
    estimator it cannot write only adds its own name, which the registry gives anyway).
    """
    import importlib
    import inspect

    import numpy as np
    import sklearn
    from sklearn.utils import all_estimators

    if dump is None:
        import skops.io

        dump = skops.io.dumps

    estimators = {_qualname(cls) for _, cls in all_estimators()}
    internal: set[str] = set()
    functions: set[str] = set()
    for _, est in fitted_estimators():
        try:
            data = dump(est)
        except Exception:
            continue
        for loader, name in skops_names(data):
            if loader == "FunctionNode":
                functions.add(name)
            elif loader in ("ObjectNode", "TreeNode", "LossNode", "SparseMatrixNode"):
                internal.add(name)
    internal |= set(_REVIEWED_NAMES) | set(_NEIGHBOR_TREES)
    metrics = importlib.import_module(_METRICS[0])
    internal |= {
        _qualname(c)
        for c in vars(metrics).values()
        if inspect.isclass(c)
        and issubclass(c, getattr(metrics, _METRICS[1]))
        and c.__name__ not in _METRICS[1:]
    }
    for module_name, base in _REVIEWED_BASES:
        module = importlib.import_module(module_name)
        root = getattr(module, base)
        internal |= {
            _qualname(c)
            for c in vars(module).values()
            if inspect.isclass(c) and issubclass(c, root) and c.__module__ == module_name
        }
    for module_name in _REVIEWED_MODULE_TYPES:
        module = importlib.import_module(module_name)
        internal |= {
            _qualname(c)
            for n, c in vars(module).items()
            if inspect.isclass(c) and c.__module__ == module_name and not n.startswith("__")
        }
    functions |= {_qualname(f) for f in vars(np).values() if isinstance(f, np.ufunc)}
    functions |= {f"numpy.{n}" for n in _POOLING}
    functions |= {
        f"sklearn.feature_selection._univariate_selection.{n}" for n in _FEATURE_SCORES[:4]
    }
    functions |= {f"sklearn.feature_selection._mutual_info.{n}" for n in _FEATURE_SCORES[4:]}
    return {
        "SKLEARN_VERSION": sklearn.__version__,
        "ESTIMATORS": sorted(estimators),
        "INTERNAL": sorted(internal - estimators),
        "FUNCTIONS": sorted(functions),
    }


def render(lists: dict[str, Any]) -> str:
    lines = [
        '"""Generated by ``python -m tiffin.security.trusted_types``; do not edit by hand."""',
        "",
        f"SKLEARN_VERSION = {json.dumps(lists['SKLEARN_VERSION'])}",
    ]
    for key in ("ESTIMATORS", "INTERNAL", "FUNCTIONS"):
        lines += ["", f"{key}: tuple[str, ...] = ("]
        lines += [f"    {json.dumps(name)}," for name in lists[key]]
        lines += [")"]
    return "\n".join(lines) + "\n"


def main() -> None:
    target = Path(__file__).with_name("_trusted_data.py")
    target.write_text(render(generate()))
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
