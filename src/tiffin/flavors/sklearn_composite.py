"""Gradient-boosting steps inside scikit-learn models, each saved in its own format.

A Pipeline (or a ColumnTransformer, a nested Pipeline, an ensemble) may hold XGBoost,
LightGBM or CatBoost estimators. skops would have to be told those types, and would then
write them through their own pickle-shaped state. Instead each such estimator is cut out
of the model before skops sees it: the skops file holds a placeholder string at its place
(``"tiffin-step-0"``, ...), and the estimator is saved by its own flavor (UBJ, model text,
CatBoost JSON) under ``artifacts/steps/<n>/``, checked by that flavor's file checker at
pack and at every load. At load the placeholders are replaced by :class:`FrameworkStep`
objects: scikit-learn estimators whose ``predict`` (and ``predict_proba`` where the
original had it) are the framework flavor's own loaded models, and whose ``classes_``
are the original's labels.

The runtime options record each step as ``{"flavor", "estimator", "paths", "methods",
"options", "classes"}``; a path is a list of ``["attr", name]`` or ``["item", index]``
hops from the model, and must lead to the placeholder it names, or loading stops.

This module imports scikit-learn at the top: it is imported only from the sklearn
flavor's ``save``, ``load`` and ``refine_signature``.
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator

from ..errors import FlavorError, ManifestError
from . import LoadContext, SaveContext, get

# The flavors whose estimators are saved apart, in the registry's detection order.
FRAMEWORK_FLAVORS = ("xgboost", "lightgbm", "catboost")
# The methods a step keeps, among those the original estimator had.
STEP_METHODS = ("predict", "predict_proba")
PLACEHOLDER = "tiffin-step-{}"
STEPS_DIR = "artifacts/steps"
_WHERE = "tiffin.json: runtime.options.steps"

Hop = tuple[str, Any]  # ("attr", name) on an estimator, ("item", index or key) in a container


def framework_of(obj: Any) -> str | None:
    """The framework flavor an estimator belongs to, or None for everything else."""
    for name in FRAMEWORK_FLAVORS:
        if get(name).detect(obj):
            return name
    return None


def find_steps(model: Any) -> list[tuple[Any, list[tuple[Hop, ...]]]]:
    """Every framework estimator reachable from ``model``, with every path that reaches it.

    The walk follows scikit-learn estimators' attributes, lists, tuples and dicts (a
    ``Bunch`` such as ``named_estimators_`` reaches the same object as ``estimators_``:
    one estimator, two paths), and nothing else.
    """
    found: dict[int, tuple[Any, list[tuple[Hop, ...]]]] = {}
    on_path: set[int] = set()

    def walk(obj: Any, path: tuple[Hop, ...]) -> None:
        if framework_of(obj) is not None:
            found.setdefault(id(obj), (obj, []))[1].append(path)
            return
        if id(obj) in on_path:
            return
        children: list[tuple[Hop, Any]]
        if type(obj) in (list, tuple):
            children = [(("item", i), v) for i, v in enumerate(obj)]
        elif isinstance(obj, dict):
            children = [(("item", k), v) for k, v in obj.items() if isinstance(k, str)]
        elif isinstance(obj, BaseEstimator):
            children = [(("attr", k), v) for k, v in vars(obj).items()]
        else:
            return
        on_path.add(id(obj))
        for hop, child in children:
            walk(child, (*path, hop))
        on_path.discard(id(obj))

    walk(model, ())
    return list(found.values())


def _replaced(obj: Any, path: tuple[Hop, ...], value: Any, *, in_place: bool) -> Any:
    """``obj`` with the thing at ``path`` set to ``value``.

    Copy-on-write (``in_place=False``) copies only the containers and estimators along
    the path, so the user's model is never changed and nothing large is duplicated;
    tuples are always rebuilt.
    """
    if not path:
        return value
    (kind, key), rest = path[0], path[1:]
    if kind == "attr":
        child = _replaced(vars(obj)[key], rest, value, in_place=in_place)
        target = obj if in_place else copy.copy(obj)
        vars(target)[key] = child
        return target
    if type(obj) is tuple:
        items = list(obj)
        items[key] = _replaced(items[key], rest, value, in_place=in_place)
        return tuple(items)
    child = _replaced(obj[key], rest, value, in_place=in_place)
    target = obj if in_place else copy.copy(obj)
    target[key] = child
    return target


def _labels(classes: Any) -> list[Any] | None:
    if classes is None:
        return None
    import numpy as np

    labels: list[Any] = np.asarray(classes).tolist()
    if not all(isinstance(v, (str, int, float, bool)) for v in labels):
        raise FlavorError(
            "a gradient-boosting step's class labels are not plain strings or numbers",
            fix="fit it with string or numeric labels",
        )
    return labels


def _is_fitted(est: Any) -> bool:
    if callable(getattr(est, "is_fitted", None)):  # CatBoost
        return bool(est.is_fitted())
    return bool(est.__sklearn_is_fitted__())  # the XGBoost and LightGBM wrappers


def _fitted_classes(est: Any) -> Any:
    try:
        return getattr(est, "classes_", None)
    except Exception:  # some wrappers raise their own error from the property when unfit
        return None


def split(model: Any, ctx: SaveContext) -> tuple[Any, list[dict[str, Any]]]:
    """The model with its framework steps replaced by placeholders, and the steps' records.

    Each step is saved by its own flavor into ``artifacts/steps/<n>/``.
    """
    steps = find_steps(model)
    if not steps:
        return model, []
    stripped, records = model, []
    for n, (est, paths) in enumerate(steps):
        flavor_name = framework_of(est)
        assert flavor_name is not None
        where = "/".join(str(k) for _, k in paths[0]) or "the model"
        record: dict[str, Any] = {
            "flavor": flavor_name,
            "estimator": type(est).__name__,
            "paths": [[list(hop) for hop in path] for path in paths],
        }
        if _is_fitted(est):
            methods = [m for m in STEP_METHODS if callable(getattr(est, m, None))]
            record["methods"] = methods
            record["options"] = _save_step(get(flavor_name), est, ctx.root, n, where)
            if "predict_proba" in methods:
                record["classes"] = _labels(_fitted_classes(est))
        else:
            # An ensemble's unfitted template (``estimators`` beside the fitted
            # ``estimators_``): only its class is kept; nothing predicts with it.
            record["methods"] = []
        records.append(record)
        for path in paths:
            stripped = _replaced(stripped, path, PLACEHOLDER.format(n), in_place=False)
    return stripped, records


def _save_step(flavor: Any, est: Any, root: Path, n: int, where: str) -> dict[str, Any]:
    """Save one framework estimator with its flavor; its files move under ``steps/<n>/``."""
    with tempfile.TemporaryDirectory(prefix="tiffin-step-") as tmp:
        sub = SaveContext(root=Path(tmp), method="predict")
        try:
            options: dict[str, Any] = flavor.save(est, sub)
        except FlavorError as exc:
            raise FlavorError(
                f"the {type(est).__name__} at {where} cannot be saved: {exc.message}",
                where=where,
                fix=exc.fix,
            ) from None
        written = sorted(p for p in Path(tmp).rglob("*") if p.is_file())
        rel = options.get("file")
        if [p.relative_to(tmp).as_posix() for p in written] != [rel]:
            raise FlavorError(
                f"the {flavor.NAME} flavor wrote {len(written)} files for the step at {where}",
                fix="report this as a tiffin bug",
            )
        dest = root / STEPS_DIR / str(n) / Path(str(rel)).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(written[0]), dest)
    options["file"] = dest.relative_to(root).as_posix()
    return options


class FrameworkStep(BaseEstimator):  # type: ignore[misc]
    """A gradient-boosting estimator of a packed scikit-learn model, rebuilt by its flavor.

    It predicts exactly as the original did (``predict``, and ``predict_proba`` where the
    original had it), reports the original's ``classes_``, and cannot be refitted: refit
    the original and pack again.
    """

    def __init__(self, flavor: str = "", estimator: str = "") -> None:
        self.flavor = flavor
        self.estimator = estimator

    def _bind(self, models: dict[str, Any], classes: list[Any] | None) -> FrameworkStep:
        for method, model in models.items():
            setattr(self, method, model.predict)
        if classes is not None:
            import numpy as np

            self.classes_ = np.asarray(classes)
        return self

    def fit(self, *args: Any, **kwargs: Any) -> FrameworkStep:
        raise FlavorError(
            f"the packed {self.estimator} step cannot be refitted",
            fix="refit the original model and pack it again",
        )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "predict")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if hasattr(self, "classes_") else "regressor"
        return tags


def join(model: Any, records: Any, ctx: LoadContext) -> Any:
    """The loaded skops model with each placeholder replaced by its rebuilt step."""
    if records is None:
        return model
    if not isinstance(records, list):
        raise ManifestError("runtime option 'steps' must be a list", where=_WHERE)
    for n, record in enumerate(records):
        step = _load_step(record, n, ctx)
        for path in _paths(record, n):
            at = _follow(model, path, n)
            if at != PLACEHOLDER.format(n):
                raise ManifestError(
                    f"step {n}'s path does not lead to its placeholder in the skops file",
                    where=f"{_WHERE}[{n}].paths",
                    fix="do not load it; a packed model's steps name their own places",
                )
            model = _replaced(model, path, step, in_place=True)
    return model


def _load_step(record: Any, n: int, ctx: LoadContext) -> FrameworkStep:
    where = f"{_WHERE}[{n}]"
    if not isinstance(record, dict):
        raise ManifestError("each step must be an object", where=where)
    name, options = record.get("flavor"), record.get("options")
    methods, classes = record.get("methods"), record.get("classes")
    if name not in FRAMEWORK_FLAVORS:
        raise ManifestError(
            f"step flavor {name!r} is not one of {', '.join(FRAMEWORK_FLAVORS)}",
            where=f"{where}.flavor",
        )
    step = FrameworkStep(name, str(record.get("estimator", "")))
    if methods == []:
        return step  # an unfitted template
    if not isinstance(options, dict) or not isinstance(options.get("file"), str):
        raise ManifestError("step options must be an object naming its file", where=where)
    if not options["file"].startswith(STEPS_DIR + "/"):
        raise ManifestError(f"step file {options['file']!r} is outside {STEPS_DIR}/", where=where)
    if not isinstance(methods, list) or not set(methods) <= set(STEP_METHODS):
        raise ManifestError(f"step methods must be some of {STEP_METHODS}", where=where)
    if classes is not None and not isinstance(classes, list):
        raise ManifestError("step classes must be a list of labels", where=where)
    flavor = get(name)
    models = {}
    for method in methods:
        sub = LoadContext(
            ctx.path,
            {**options, "method": method},
            allow_pickle=False,
            artifacts=ctx.artifacts,
            digests=ctx.digests,
        )
        models[method] = flavor.load(sub)
    return step._bind(models, classes)


def _paths(record: dict[str, Any], n: int) -> list[tuple[Hop, ...]]:
    raw = record.get("paths")
    paths: list[tuple[Hop, ...]] = []
    for path in raw if isinstance(raw, list) else []:
        hops = path if isinstance(path, list) else []
        if hops and all(
            isinstance(h, list) and len(h) == 2 and h[0] in ("attr", "item") for h in hops
        ):
            paths.append(tuple((h[0], h[1]) for h in hops))
    if not isinstance(raw, list) or not paths or len(paths) != len(raw):
        raise ManifestError(
            "step paths must be non-empty lists of ['attr', name] or ['item', key] hops",
            where=f"{_WHERE}[{n}].paths",
        )
    return paths


def _follow(model: Any, path: tuple[Hop, ...], n: int) -> Any:
    """The object at ``path``; only estimators' own attributes and container items."""
    obj = model
    for kind, key in path:
        try:
            if kind == "attr":
                if not isinstance(obj, BaseEstimator):
                    raise KeyError(key)
                obj = vars(obj)[key]
            else:
                listed = type(obj) in (list, tuple) and isinstance(key, int)
                if not (listed or (isinstance(obj, dict) and isinstance(key, str))):
                    raise KeyError(key)
                obj = obj[key]
        except (KeyError, IndexError, TypeError):
            raise ManifestError(
                f"step {n}'s path has no {kind} {key!r} in the model",
                where=f"{_WHERE}[{n}].paths",
                fix="do not load it; a packed model's steps name their own places",
            ) from None
    return obj


# -- nullability --------------------------------------------------------------------


def _is_missing_marker(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ == "NAType"


def _gap_reason(leaf: Any, index: int) -> str | None:
    """Why ``leaf`` takes a missing value in its input column ``index``, or None."""
    kind = type(leaf).__name__
    module = type(leaf).__module__ or ""
    if not module.startswith("sklearn."):
        return None
    if kind == "SimpleImputer" and _is_missing_marker(leaf.missing_values):
        return "a SimpleImputer fills missing values in this column"
    categories = getattr(leaf, "categories_", None)
    if kind in ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder") and categories is not None:
        if index < len(categories) and any(_is_missing_marker(c) for c in categories[index]):
            return f"the {kind} learned a missing value as a category of this column in training"
        unknown = getattr(leaf, "handle_unknown", None)
        if kind == "OneHotEncoder" and unknown in ("ignore", "infrequent_if_exist"):
            return (
                f"the OneHotEncoder (handle_unknown={unknown!r}) encodes a missing value as unknown"
            )
        if kind == "OrdinalEncoder" and unknown == "use_encoded_value":
            return "the OrdinalEncoder (handle_unknown='use_encoded_value') encodes a missing value as unknown"
    return None


def _first_consumers(est: Any, columns: list[str]) -> list[tuple[Any, list[str]]]:
    """The estimators that first see each input column, with the columns each sees."""
    kind = type(est).__name__
    if kind == "Pipeline":
        for _, step in est.steps:
            if step is not None and step != "passthrough":
                return _first_consumers(step, columns)
        return [("passthrough", columns)]
    if kind == "ColumnTransformer" and hasattr(est, "transformers_"):
        names = [str(c) for c in getattr(est, "feature_names_in_", columns)]
        indices = getattr(est, "_transformer_to_input_indices", {})
        out: list[tuple[Any, list[str]]] = []
        for name, trans, _ in est.transformers_:
            if isinstance(trans, str) and trans == "drop":
                continue
            picked = [names[i] for i in indices.get(name, ()) if i < len(names)]
            out.extend(_first_consumers(trans, picked))
        return out
    if kind == "FeatureUnion":
        return [c for _, t in est.transformer_list for c in _first_consumers(t, columns)]
    seen = getattr(est, "feature_names_in_", None)
    return [(est, [str(c) for c in seen] if seen is not None else columns)]


def nullable_columns(model: Any, inputs: list[tuple[str, str]]) -> dict[str, str]:
    """Input string columns that every first consumer in ``model`` takes with gaps, and why.

    ``inputs`` are the signature's (name, dtype) pairs. A column counts only when every
    estimator that first sees it handles a missing value there; one that does not (a
    passthrough, an encoder that refuses unknown values) keeps the column strict.
    """
    names = [n for n, _ in inputs]
    reasons: dict[str, list[str | None]] = {}
    for leaf, cols in _first_consumers(model, names):
        for j, col in enumerate(cols):
            reason = None if isinstance(leaf, str) else _gap_reason(leaf, j)
            reasons.setdefault(col, []).append(reason)
    strings = {n for n, dtype in inputs if dtype == "str"}
    return {
        col: "; ".join(sorted({r for r in found if r}))
        for col, found in reasons.items()
        if col in strings and found and all(found)
    }
