"""XGBoost model files (JSON and UBJSON), checked before XGBoost parses them.

XGBoost's readers trust their own format. Its UBJSON reader copies as many bytes as a
length field says and sizes arrays by a count it never compares with the bytes left;
its tree loader indexes the node arrays with the children, parents and categorical
segments it was given; its predictor walks those children and reads the feature a
node names. A package whose manifest was re-sealed around one edited field would crash
(SIGSEGV, heap corruption, a bad_alloc on a forged count) or hang every process that
loads it, a server included. This module reads the document itself, with bounds (UBJSON
through :mod:`.ubjson`), and refuses what XGBoost's own writer would never produce:

- the bytes are UBJSON (``{`` then a key's ``L`` length marker) or UTF-8 JSON, decided
  as XGBoost decides it; every length and count fits in the bytes left, nesting stays
  shallow, no key is given twice (XGBoost keeps the first, JSON readers the last), and
  nothing follows the document;
- ``learner_model_param``: ``num_feature`` (at most 2**20, as the predictor's memory
  grows with it), ``num_class`` and ``num_target`` are decimal integers in range,
  ``base_score`` holds one value or one per output group;
  feature names and types, when given, are one per feature;
- a multiclass objective's ``num_class`` is the learner's;
- ``gbtree`` (and ``dart``'s inner one): ``num_trees`` trees, ``tree_info`` one output
  group per tree, each below the group count, ``iteration_indptr`` rising from 0 to
  ``num_trees``; ``dart``'s ``weight_drop`` one weight per tree; ``gblinear``'s weights
  ``(num_feature + 1) * groups``;
- every tree: its ``id`` is its position; each node array has ``num_nodes`` entries of
  the right kind; a leaf has ``-1`` for both children and an inner node two children
  after itself (so no walk can loop), each node but the root is the child of exactly one
  node and names that node as its parent, nodes nothing points at are the deleted ones
  ``num_deleted`` counts; inner nodes split on a feature below ``num_feature``;
  categorical splits are exactly the nodes ``categories_nodes`` lists, with contiguous,
  non-empty ``categories_segments``/``categories_sizes`` over ``categories``, each
  category a non-negative integer below 2**24 and the bitsets XGBoost builds from them
  at most 256 MB in all;
- the categorical re-coder (``cats``): one encoding and segment per feature, segments
  rising from 0, ``sorted_idx`` a permutation within each segment, string categories
  as offsets into their bytes.

Vector-leaf trees (``multi_strategy="multi_output_tree"``) have another layout and are
refused. The reader takes a typed UBJSON array in one NumPy call and the check takes
each tree in a few vectorised comparisons.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import FlavorError
from . import ubjson
from .ubjson import Malformed

# XGBoost's predictor holds a dense block of rows num_feature wide per thread: measured
# with two threads, about 0.5 GB at 2**20 features and 8.4 GB at 2**24 (a forged
# num_feature is a memory bomb).
_MAX_FEATURES = 1 << 20
_MAX_GROUPS = 1 << 16
_MAX_TREES = 1 << 22
_MAX_CATEGORY = 1 << 24  # a split's bitset is sized by its largest category
_MAX_BITSET_BYTES = 1 << 28  # all splits' bitsets together
_ROOT_PARENTS = (-1, 2147483647)  # kInvalidNodeId, as written with and without its mask
_FEATURE_TYPES = frozenset({"float", "int", "i", "q", "c"})


def check_model_bytes(data: bytes, where: str) -> None:
    """Raise FlavorError naming the first thing wrong with an XGBoost model file."""
    try:
        _check_document(parse_model(data))
    except Malformed as exc:
        raise FlavorError(
            f"malformed XGBoost model: {exc}",
            where=where,
            fix="save the model again with XGBoost (Booster.save_model or the wrapper's save_model)",
        ) from None


def parse_model(data: bytes) -> Any:
    """The document of a model file, read with bounds; typed arrays come back as NumPy arrays."""
    if data[:1] != b"{" or len(data) < 2:
        raise Malformed("it does not start with '{'")
    if chr(data[1]).isalpha():  # how XGBoost tells UBJSON from JSON
        return ubjson.read(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"it is neither UBJSON nor UTF-8 JSON (byte {exc.start})") from None
    if text[1:].lstrip(" \t\r\n")[:1] != '"':
        raise Malformed("it is neither UBJSON nor a JSON object")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"it is not valid JSON ({str(exc)[:80]})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise Malformed("an object gives the same key twice")
    return out


# -- the model -----------------------------------------------------------------------


def _check_document(doc: Any) -> None:
    learner = _obj(_need(_obj(doc, "the document"), "learner", "the document"), "learner")
    param = _obj(_need(learner, "learner_model_param", "learner"), "learner_model_param")
    where = "learner_model_param"
    num_feature = _int_text(param, "num_feature", where, 0, _MAX_FEATURES)
    num_class = _int_text(param, "num_class", where, 0, _MAX_GROUPS)
    num_target = _int_text(param, "num_target", where, 1, _MAX_GROUPS, default=1)
    if num_class > 0 and num_target > 1:
        raise Malformed(f"{where}: num_class {num_class} and num_target {num_target} are both set")  # fmt: skip
    groups = max(num_class, num_target, 1)
    _check_base_score(param, groups)
    for key in ("feature_names", "feature_types"):
        names = learner.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise Malformed(f"learner.{key} is not a list of strings")
        if names and len(names) != num_feature:
            raise Malformed(f"learner.{key} lists {len(names)} features; num_feature is {num_feature}")  # fmt: skip
    if not set(learner.get("feature_types", [])) <= _FEATURE_TYPES:
        raise Malformed(f"learner.feature_types holds a type other than {sorted(_FEATURE_TYPES)}")  # fmt: skip
    _check_objective(learner.get("objective"), num_class)
    _check_attributes(learner.get("attributes", {}))
    booster = _obj(_need(learner, "gradient_booster", "learner"), "gradient_booster")
    name = booster.get("name")
    if name == "gbtree":
        _check_gbtree(_need(booster, "model", "gradient_booster"), num_feature, groups, "gbtree")
    elif name == "dart":
        inner = _obj(_need(booster, "gbtree", "dart"), "dart.gbtree")
        if inner.get("name") != "gbtree":
            raise Malformed("dart.gbtree is not named 'gbtree'")
        trees = _check_gbtree(_need(inner, "model", "dart.gbtree"), num_feature, groups, "dart")
        weights = _floats(_need(booster, "weight_drop", "dart"), "dart.weight_drop")
        if len(weights) != trees:
            raise Malformed(f"dart.weight_drop has {len(weights)} weights for {trees} trees")
    elif name == "gblinear":
        model = _obj(_need(booster, "model", "gblinear"), "gblinear.model")
        weights = _floats(_need(model, "weights", "gblinear.model"), "gblinear.model.weights")
        if len(weights) != (num_feature + 1) * groups:
            raise Malformed(
                f"gblinear.model.weights has {len(weights)} values, not "
                f"(num_feature + 1) * {groups} = {(num_feature + 1) * groups}"
            )
    else:
        raise Malformed(f"gradient_booster {str(name)[:40]!r} is not gbtree, dart or gblinear")


def _check_attributes(attributes: Any) -> None:
    """The attributes the scikit-learn wrappers read back at load (a JSON object, an
    iteration number), which they parse without catching what they raise."""
    attributes = _obj(attributes, "learner.attributes")
    if not all(isinstance(v, str) for v in attributes.values()):
        raise Malformed("learner.attributes holds a value that is not a string")
    if "scikit_learn" in attributes:
        try:
            config = json.loads(attributes["scikit_learn"])
        except (ValueError, RecursionError):
            config = None
        if not isinstance(config, dict):
            raise Malformed("learner.attributes.scikit_learn is not a JSON object")
    for key in ("best_iteration", "best_ntree_limit"):
        if key in attributes:
            _int_text(attributes, key, "learner.attributes", 0, _MAX_TREES)


def _check_base_score(param: dict[str, Any], groups: int) -> None:
    raw = _need(param, "base_score", "learner_model_param")
    if not isinstance(raw, str) or len(raw) > 64 * groups + 64:
        raise Malformed("learner_model_param.base_score is not a short string")
    try:
        value = json.loads(raw) if raw.startswith("[") else float(raw)
    except ValueError:
        raise Malformed(f"learner_model_param.base_score {raw[:40]!r} is not numbers") from None
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise Malformed(f"learner_model_param.base_score {raw[:40]!r} is not numbers")
    if len(values) not in (1, groups):
        raise Malformed(f"learner_model_param.base_score has {len(values)} values for {groups} output groups")  # fmt: skip


def _check_objective(objective: Any, num_class: int) -> None:
    if objective is None:
        return
    objective = _obj(objective, "learner.objective")
    name = objective.get("name")
    if not isinstance(name, str):
        raise Malformed("learner.objective has no name")
    if name.startswith("multi:"):
        param = _obj(_need(objective, "softmax_multiclass_param", "learner.objective"), "softmax_multiclass_param")  # fmt: skip
        declared = _int_text(param, "num_class", "softmax_multiclass_param", 1, _MAX_GROUPS)
        if declared != num_class:
            raise Malformed(f"the objective's num_class {declared} is not the learner's {num_class}")  # fmt: skip


def _check_gbtree(model: Any, num_feature: int, groups: int, where: str) -> int:
    model = _obj(model, f"{where}.model")
    param = _obj(_need(model, "gbtree_model_param", where), "gbtree_model_param")
    num_trees = _int_text(param, "num_trees", "gbtree_model_param", 0, _MAX_TREES)
    _int_text(param, "num_parallel_tree", "gbtree_model_param", 1, _MAX_GROUPS, default=1)
    trees = _need(model, "trees", where)
    if not isinstance(trees, list) or len(trees) != num_trees:
        raise Malformed(f"{where}: trees is not a list of num_trees = {num_trees} trees")
    info = _ints(_need(model, "tree_info", where), "tree_info")
    if len(info) != num_trees:
        raise Malformed(f"tree_info has {len(info)} entries for {num_trees} trees")
    if num_trees and (info.min() < 0 or info.max() >= groups):
        raise Malformed(f"tree_info names output group {_outside(info, 0, groups)}; the model has {groups}")  # fmt: skip
    if "iteration_indptr" in model:
        indptr = _ints(model["iteration_indptr"], "iteration_indptr")
        if (
            len(indptr) == 0
            or indptr[0] != 0
            or indptr[-1] != num_trees
            or bool(np.any(np.diff(indptr) <= 0))
        ):
            raise Malformed(f"iteration_indptr does not rise from 0 to num_trees = {num_trees}")
    if "cats" in model:
        _check_cats(model["cats"], num_feature)
    bitsets = 0
    for index, tree in enumerate(trees):
        bitsets += _check_tree(tree, index, num_feature)
        if bitsets > _MAX_BITSET_BYTES:
            raise Malformed(f"tree {index}: the categorical splits' category sets take over {_MAX_BITSET_BYTES >> 20} MB")  # fmt: skip
    return num_trees


def _check_tree(tree: Any, index: int, num_feature: int) -> int:
    """Check one tree; return the bytes its categorical splits' bitsets will take."""
    where = f"tree {index}"
    tree = _obj(tree, where)
    tree_id = tree.get("id")
    if type(tree_id) is not int or tree_id != index:
        raise Malformed(f"{where}: its id is {str(tree_id)[:20]}, not {index}")
    param = _obj(_need(tree, "tree_param", where), f"{where} tree_param")
    p_where = f"{where} tree_param"
    leaf_size = _int_text(param, "size_leaf_vector", p_where, 0, _MAX_GROUPS, default=1)
    if leaf_size > 1:
        raise Malformed(f"{where} has vector leaves (size_leaf_vector {leaf_size}), which tiffin does not check")  # fmt: skip
    n = _int_text(param, "num_nodes", p_where, 1, 1 << 31)
    tree_features = _int_text(param, "num_feature", p_where, 0, _MAX_FEATURES)
    if tree_features != num_feature:
        raise Malformed(f"{where}: num_feature {tree_features} is not the learner's {num_feature}")  # fmt: skip
    deleted = _int_text(param, "num_deleted", p_where, 0, n)

    def ints(key: str) -> np.ndarray:
        values = _ints(_need(tree, key, where), f"{where} {key}")
        if len(values) != n:
            raise Malformed(f"{where} {key} has {len(values)} entries, not num_nodes = {n}")
        return values

    for key in ("loss_changes", "sum_hessian", "base_weights", "split_conditions"):
        values = _floats(_need(tree, key, where), f"{where} {key}")
        if len(values) != n:
            raise Malformed(f"{where} {key} has {len(values)} entries, not num_nodes = {n}")
    left, right, parents = ints("left_children"), ints("right_children"), ints("parents")
    raw_left = _need(tree, "default_left", where)
    if isinstance(raw_left, list) and all(type(v) is bool for v in raw_left):
        tree["default_left"] = [int(v) for v in raw_left]  # as older versions wrote it
    features, default_left = ints("split_indices"), ints("default_left")
    if bool(np.any((default_left != 0) & (default_left != 1))):
        raise Malformed(f"{where} default_left holds a value other than 0 and 1")
    leaf = left == -1
    if bool(np.any(leaf != (right == -1))):
        node = int(np.flatnonzero(leaf != (right == -1))[0])
        raise Malformed(f"{where}: node {node} has one child (-1 marks a leaf in both)")
    inner = np.flatnonzero(~leaf)
    nodes = np.arange(n)
    for name, side in (("left_children", left), ("right_children", right)):
        bad = inner[(side[inner] <= inner) | (side[inner] >= n)]
        if len(bad):
            node = int(bad[0])
            raise Malformed(f"{where} {name}: node {node} points at {int(side[node])}, not a later node below {n}")  # fmt: skip
    children = np.concatenate([left[inner], right[inner]])
    parent_of = np.full(n, -1, dtype=np.int64)
    parent_of[children] = np.concatenate([inner, inner])
    if len(np.unique(children)) != len(children):
        raise Malformed(f"{where}: a node is the child of two nodes")
    if int(parents[0]) not in _ROOT_PARENTS:
        raise Malformed(f"{where} parents: the root names parent {int(parents[0])}")
    orphans = nodes[1:][parent_of[1:] < 0]
    if len(orphans) != deleted or bool(np.any(~leaf[orphans])):
        raise Malformed(f"{where}: {len(orphans)} nodes have no parent; num_deleted is {deleted} (and they must be leaves)")  # fmt: skip
    linked = children
    if bool(np.any(parents[linked] != parent_of[linked])):
        node = int(linked[parents[linked] != parent_of[linked]][0])
        raise Malformed(f"{where} parents: node {node} names {int(parents[node])}, not {int(parent_of[node])}")  # fmt: skip
    if len(orphans) and bool(np.any((parents[orphans] < 0) | (parents[orphans] >= n))):
        raise Malformed(f"{where} parents: a deleted node names a parent outside the tree")
    split = features[inner]
    if len(split) and (split.min() < 0 or split.max() >= num_feature):
        raise Malformed(f"{where} split_indices: feature {_outside(split, 0, num_feature)}; num_feature is {num_feature}")  # fmt: skip
    if "split_type" in tree:
        return _check_categorical(tree, ints("split_type"), leaf, where)
    return 0


def _check_categorical(tree: dict[str, Any], split_type: np.ndarray, leaf: np.ndarray, where: str) -> int:  # fmt: skip
    if bool(np.any((split_type != 0) & (split_type != 1))):
        raise Malformed(f"{where} split_type holds a value other than 0 and 1")
    cat_nodes = np.flatnonzero(split_type == 1)
    if bool(np.any(leaf[cat_nodes])):
        raise Malformed(f"{where}: leaf {int(cat_nodes[leaf[cat_nodes]][0])} is a categorical split")  # fmt: skip
    listed = _ints(_need(tree, "categories_nodes", where), f"{where} categories_nodes")
    if len(listed) != len(cat_nodes) or bool(np.any(listed != cat_nodes)):
        raise Malformed(f"{where} categories_nodes does not list the categorical splits {_short(cat_nodes)}")  # fmt: skip
    segments = _ints(_need(tree, "categories_segments", where), f"{where} categories_segments")
    sizes = _ints(_need(tree, "categories_sizes", where), f"{where} categories_sizes")
    categories = _ints(_need(tree, "categories", where), f"{where} categories")
    if len(segments) != len(cat_nodes) or len(sizes) != len(cat_nodes):
        raise Malformed(f"{where}: categories_segments and categories_sizes need one entry per categorical split ({len(cat_nodes)})")  # fmt: skip
    if bool(np.any(sizes < 1)):
        raise Malformed(f"{where} categories_sizes holds a size below 1")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else sizes
    if bool(np.any(segments != starts)) or int(sizes.sum()) != len(categories):
        raise Malformed(f"{where}: categories_segments do not cut categories ({len(categories)}) into consecutive pieces of categories_sizes")  # fmt: skip
    if len(categories) and (categories.min() < 0 or categories.max() >= _MAX_CATEGORY):
        raise Malformed(f"{where} categories: category {_outside(categories, 0, _MAX_CATEGORY)} is out of range")  # fmt: skip
    if not len(sizes):
        return 0
    largest = np.maximum.reduceat(categories, segments)  # one bit per category up to it
    return int(((largest // 32 + 1) * 4).sum())


def _check_cats(cats: Any, num_feature: int) -> None:
    cats = _obj(cats, "cats")
    enc = _need(cats, "enc", "cats")
    segments = _ints(_need(cats, "feature_segments", "cats"), "cats.feature_segments")
    order = _ints(_need(cats, "sorted_idx", "cats"), "cats.sorted_idx")
    if not isinstance(enc, list):
        raise Malformed("cats.enc is not a list")
    if not len(enc) and not len(segments) and not len(order):
        return
    if len(enc) != num_feature or len(segments) != num_feature + 1:
        raise Malformed(f"cats: enc and feature_segments need num_feature = {num_feature} (+1) entries")  # fmt: skip
    if segments[0] != 0 or bool(np.any(np.diff(segments) < 0)) or segments[-1] != len(order):
        raise Malformed(f"cats.feature_segments do not rise from 0 to len(sorted_idx) = {len(order)}")  # fmt: skip
    for feature, (start, stop) in enumerate(zip(segments[:-1].tolist(), segments[1:].tolist())):
        size = stop - start
        piece = order[start:stop]
        if not np.array_equal(np.sort(piece), np.arange(size)):
            raise Malformed(f"cats.sorted_idx of feature {feature} is not a permutation of its {size} categories")  # fmt: skip
        _check_encoding(_obj(enc[feature], f"cats.enc[{feature}]"), feature, size)


def _check_encoding(enc: dict[str, Any], feature: int, size: int) -> None:
    where = f"cats.enc[{feature}]"
    values = _need(enc, "values", where)
    if "offsets" in enc:
        offsets = _ints(enc["offsets"], f"{where}.offsets")
        raw = _ints(values, f"{where}.values")
        if len(raw) and (raw.min() < 0 or raw.max() > 255):
            raise Malformed(f"{where}.values holds a value that is not a byte")
        if not len(offsets):
            if len(raw) or size:
                raise Malformed(f"{where}: {size} categories without offsets")
            return
        if (
            len(offsets) != size + 1
            or offsets[0] != 0
            or bool(np.any(np.diff(offsets) < 0))
            or offsets[-1] != len(raw)
        ):
            raise Malformed(f"{where}.offsets do not cut its {len(raw)} bytes into {size} strings")  # fmt: skip
        return
    _int_value(enc, "type", where)
    if len(_floats(values, f"{where}.values")) != size:
        raise Malformed(f"{where}.values does not hold its {size} categories")


# -- values --------------------------------------------------------------------------


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{where} is not an object")
    return value


def _need(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise Malformed(f"{where} has no {key!r}")
    return obj[key]


def _int_text(obj: dict[str, Any], key: str, where: str, low: int, high: int, default: int | None = None) -> int:  # fmt: skip
    """A parameter XGBoost stores as a decimal string, in ``[low, high]``."""
    if key not in obj and default is not None:
        return default
    raw = _need(obj, key, where)
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise Malformed(f"{where}.{key} is not a decimal integer: {str(raw)[:20]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise Malformed(f"{where}.{key} is {value}, outside {low}..{high}")
    return value


def _int_value(obj: dict[str, Any], key: str, where: str) -> int:
    value = _need(obj, key, where)
    if type(value) is not int or abs(value) >= 1 << 31:
        raise Malformed(f"{where}.{key} is not an integer")
    return value


def _ints(values: Any, where: str) -> np.ndarray:
    """An integer array: a typed UBJSON array of integers or a JSON list of integers."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu":
            raise Malformed(f"{where} is an array of {values.dtype}, not of integers")
        out = values.astype(np.int64)
    elif isinstance(values, list):
        if not all(type(v) is int for v in values):
            raise Malformed(f"{where} holds something other than integers")
        if any(abs(v) >= 1 << 40 for v in values):
            raise Malformed(f"{where} holds an integer out of range")
        out = np.asarray(values, dtype=np.int64)
    else:
        raise Malformed(f"{where} is not an array")
    return out


def _floats(values: Any, where: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    if not isinstance(values, list) or not all(type(v) in (int, float) for v in values):
        raise Malformed(f"{where} is not an array of numbers")
    return np.asarray(values, dtype=np.float64)


def _outside(values: np.ndarray, low: int, high: int) -> int:
    return int(values[(values < low) | (values >= high)][0])


def _short(values: np.ndarray) -> str:
    listed = values[:8].tolist()
    return str(listed)[:-1] + (", ...]" if len(values) > 8 else "]")
