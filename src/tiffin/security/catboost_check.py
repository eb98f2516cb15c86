"""A structural check of CatBoost's JSON model format, run before CatBoost reads it.

CatBoost's JSON reader (``ConvertJsonToCatboostModel``) trusts the file: it divides by
``hash_stride``, walks ``hash_map`` in steps of it past the end of the array, shifts
``1 << len(splits)`` and keeps every ``split_index`` as an index into the model's binary
features, which the prediction code then reads without a bound. A file that breaks any
of those crashes the process (or reads memory it does not own) instead of raising. This
module accepts only what CatBoost itself writes: every field with its type, every index
in range, every count consistent, every split agreeing with the feature it points at.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import FlavorError

MAX_DEPTH = 16  # CatBoost's own limit on a tree's depth
_INT32 = 2**31
_UINT64 = 2**64
_TOP = {"model_info", "oblivious_trees", "trees", "features_info", "ctr_data", "scale_and_bias"}
_FEATURES = {"float_features", "categorical_features", "ctrs", "cat_features_hash"}
_NAN_TREATMENT = ("AsIs", "AsFalse", "AsTrue")
_CTR_TYPES = {
    "Borders": None,
    "Buckets": None,
    "BinarizedTargetMeanValue": 3,
    "FloatTargetMeanValue": 3,
    "Counter": 2,
    "FeatureFreq": 2,
}  # type -> the hash_map stride CatBoost writes for it (None: 1 + the number of classes)


class _Bad(Exception):
    """One broken rule, with the JSON path where it broke."""


def check_model_json(data: bytes, where: str) -> dict[str, Any]:
    """Parse and check CatBoost model JSON; the document, or a FlavorError naming the fault."""
    try:
        doc = _obj(_parse(data), "$")
        _check(doc)
    except _Bad as exc:
        raise FlavorError(
            f"malformed CatBoost model JSON: {exc}",
            where=where,
            fix="re-export the model with CatBoost (save_model(path, format='json')); "
            "do not edit the file by hand",
        ) from None
    return doc


def _parse(data: bytes) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            # two readers could take different copies of a repeated key
            raise _Bad("an object repeats a key")
        return obj

    def constant(name: str) -> Any:
        raise _Bad(f"{name} is not JSON")

    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except UnicodeDecodeError:
        raise _Bad("the file is not UTF-8 text") from None
    except RecursionError:
        raise _Bad("nested too deep") from None
    except ValueError as exc:
        raise _Bad(f"not JSON ({exc})") from None


# -- typed access: each returns the value or raises _Bad naming the path ----------------


def _obj(v: Any, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Bad(f"{path} must be an object")
    return v


def _arr(v: Any, path: str) -> list[Any]:
    if not isinstance(v, list):
        raise _Bad(f"{path} must be an array")
    return v


def _int(v: Any, path: str, lo: int = -_INT32, hi: int = _INT32) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
        raise _Bad(f"{path} must be an integer in [{lo}, {hi})")
    return v


def _num(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Bad(f"{path} must be a finite number")
    return float(v)


def _str(v: Any, path: str) -> str:
    if not isinstance(v, str):
        raise _Bad(f"{path} must be a string")
    return v


def _key(obj: dict[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise _Bad(f"{path}.{key} is missing")
    return obj[key]


def _borders(v: Any, path: str) -> list[float]:
    values = [_num(b, f"{path}[{i}]") for i, b in enumerate(_arr(v, path))]
    if values != sorted(values):
        raise _Bad(f"{path} must be sorted")
    return values


# -- the document ---------------------------------------------------------------------


def _check(doc: Any) -> None:
    doc = _obj(doc, "$")
    unknown = set(doc) - _TOP
    if unknown:
        raise _Bad(f"unknown key(s) {sorted(unknown)} (written by a newer CatBoost?)")
    _model_info(_obj(_key(doc, "model_info", "$"), "$.model_info"))
    if ("oblivious_trees" in doc) == ("trees" in doc):
        raise _Bad("$ must hold exactly one of oblivious_trees and trees")
    floats, cats, ctrs, bins = _features(_obj(_key(doc, "features_info", "$"), "$.features_info"))
    _ctr_data(doc.get("ctr_data"), ctrs, len(floats), len(cats))
    if "oblivious_trees" in doc:
        dim = _oblivious(_arr(doc["oblivious_trees"], "$.oblivious_trees"), bins)
    else:
        dim = _non_symmetric(_arr(doc["trees"], "$.trees"), bins)
    _classes_fit(doc["model_info"], dim)
    if "scale_and_bias" in doc:
        sb = _arr(doc["scale_and_bias"], "$.scale_and_bias")
        if len(sb) != 2:
            raise _Bad("$.scale_and_bias must be [scale, [bias, ...]]")
        _num(sb[0], "$.scale_and_bias[0]")
        bias = _arr(sb[1], "$.scale_and_bias[1]")
        for i, b in enumerate(bias):
            _num(b, f"$.scale_and_bias[1][{i}]")
        if dim is not None and len(bias) not in (0, dim):
            raise _Bad(f"$.scale_and_bias has {len(bias)} bias values for {dim} output(s)")


_LABEL_TYPES = {
    "String": lambda v: isinstance(v, str),
    "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63,
    "Float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "Boolean": lambda v: isinstance(v, bool),
}


def _model_info(info: dict[str, Any]) -> None:
    for key, value in info.items():
        path = f"$.model_info.{key}"
        if key.endswith("params"):
            _obj(value, path)
        else:
            _str(value, path)
    loss = info.get("params", {}).get("loss_function")
    if loss is not None:
        _str(_key(_obj(loss, "$.model_info.params.loss_function"), "type", "loss_function"),
             "$.model_info.params.loss_function.type")  # fmt: skip
    if "class_params" not in info:
        return
    path = "$.model_info.class_params"
    cp = _obj(info["class_params"], path)
    kind = cp.get("class_label_type")
    if not isinstance(kind, str) or kind not in _LABEL_TYPES:
        raise _Bad(f"{path}.class_label_type must be one of {', '.join(_LABEL_TYPES)}")
    names = _arr(cp.get("class_names", []), f"{path}.class_names")
    for i, name in enumerate(names):
        if not _LABEL_TYPES[kind](name):
            raise _Bad(f"{path}.class_names[{i}] must be a {kind} label")
    labels = _arr(cp.get("class_to_label", []), f"{path}.class_to_label")
    # CatBoost indexes its class names with these (a wild one crashed the process)
    bound = max(len(names), len(labels))
    values = [_int(v, f"{path}.class_to_label[{i}]", 0, bound) for i, v in enumerate(labels)]
    if len(set(values)) != len(values):
        raise _Bad(f"{path}.class_to_label repeats a class")
    if names and len(names) != len(labels):
        raise _Bad(f"{path}.class_names and class_to_label differ in length")
    if "classes_count" in cp:
        _int(cp["classes_count"], f"{path}.classes_count", 0, 2**16)


def _classes_fit(info: dict[str, Any], dim: int | None) -> None:
    labels = info.get("class_params", {}).get("class_to_label", [])
    if dim is not None and labels and len(labels) != (2 if dim == 1 else dim):
        raise _Bad(f"$.model_info.class_params names {len(labels)} classes for {dim} output(s)")


def _features(
    info: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[tuple[Any, ...]]]:
    """The float, categorical and CTR features, and the binary features splits index."""
    unknown = set(info) - _FEATURES
    if unknown:
        raise _Bad(f"unknown key(s) {sorted(unknown)} in $.features_info")
    floats = _arr(info.get("float_features", []), "$.features_info.float_features")
    cats = _arr(info.get("categorical_features", []), "$.features_info.categorical_features")
    ctrs = _arr(info.get("ctrs", []), "$.features_info.ctrs")
    bins: list[tuple[Any, ...]] = []
    flat: list[int] = []
    for i, f in enumerate(floats):
        path = f"$.features_info.float_features[{i}]"
        _obj(f, path)
        if _int(_key(f, "feature_index", path), f"{path}.feature_index") != i:
            raise _Bad(f"{path}.feature_index must be {i}")
        flat.append(_int(_key(f, "flat_feature_index", path), f"{path}.flat_feature_index", 0))
        if not isinstance(_key(f, "has_nans", path), bool):
            raise _Bad(f"{path}.has_nans must be true or false")
        if _key(f, "nan_value_treatment", path) not in _NAN_TREATMENT:
            raise _Bad(f"{path}.nan_value_treatment must be one of {', '.join(_NAN_TREATMENT)}")
        _str(_key(f, "feature_id", path), f"{path}.feature_id")
        bins += [
            ("FloatFeature", i, b) for b in _borders(_key(f, "borders", path), f"{path}.borders")
        ]
    one_hot: list[tuple[Any, ...]] = []
    for i, c in enumerate(cats):
        path = f"$.features_info.categorical_features[{i}]"
        _obj(c, path)
        if _int(_key(c, "feature_index", path), f"{path}.feature_index") != i:
            raise _Bad(f"{path}.feature_index must be {i}")
        flat.append(_int(_key(c, "flat_feature_index", path), f"{path}.flat_feature_index", 0))
        _str(_key(c, "feature_id", path), f"{path}.feature_id")
        if "values" in c:
            values = [
                _int(v, f"{path}.values[{j}]")
                for j, v in enumerate(_arr(c["values"], f"{path}.values"))
            ]
            strings = _arr(c.get("string_values", []), f"{path}.string_values")
            for j, s in enumerate(strings):
                _str(s, f"{path}.string_values[{j}]")
            if strings and len(strings) != len(values):
                raise _Bad(f"{path}.string_values must match {path}.values in length")
            one_hot += [("OneHotFeature", i, v) for v in values]
        elif "string_values" in c:
            raise _Bad(f"{path}.string_values without values")
    if sorted(flat) != list(range(len(flat))):
        raise _Bad(
            "the features' flat_feature_index values must number them 0, 1, 2, ... once each"
        )
    bins += one_hot
    for i, ctr in enumerate(ctrs):
        path = f"$.features_info.ctrs[{i}]"
        _obj(ctr, path)
        ctr_type = _key(ctr, "ctr_type", path)
        if not isinstance(ctr_type, str) or ctr_type not in _CTR_TYPES:
            raise _Bad(f"{path}.ctr_type {ctr_type!r} is not a CatBoost CTR type")
        _elements(_key(ctr, "elements", path), f"{path}.elements", len(floats), len(cats))
        _int(_key(ctr, "target_border_idx", path), f"{path}.target_border_idx", 0)
        for key in ("prior_numerator", "prior_denomerator", "shift", "scale"):
            _num(_key(ctr, key, path), f"{path}.{key}")
        _str(_key(ctr, "identifier", path), f"{path}.identifier")
        bins += [
            ("OnlineCtr", i, b) for b in _borders(_key(ctr, "borders", path), f"{path}.borders")
        ]
    if "cat_features_hash" in info:
        for i, h in enumerate(_arr(info["cat_features_hash"], "$.features_info.cat_features_hash")):
            path = f"$.features_info.cat_features_hash[{i}]"
            _int(_key(_obj(h, path), "hash", path), f"{path}.hash", 0, 2**32)
            _str(_key(h, "value", path), f"{path}.value")
    return floats, cats, ctrs, bins


def _elements(v: Any, path: str, n_float: int, n_cat: int) -> list[Any]:
    """A CTR's feature combination (categorical values, float splits, exact values)."""
    elements = _arr(v, path)
    if not elements:
        raise _Bad(f"{path} must not be empty")
    for i, e in enumerate(elements):
        p = f"{path}[{i}]"
        kind = _key(_obj(e, p), "combination_element", p)
        if kind == "cat_feature_value":
            _int(_key(e, "cat_feature_index", p), f"{p}.cat_feature_index", 0, n_cat)
        elif kind == "float_feature":
            _int(_key(e, "float_feature_index", p), f"{p}.float_feature_index", 0, n_float)
            _num(_key(e, "border", p), f"{p}.border")
        elif kind == "cat_feature_exact_value":
            _int(_key(e, "cat_feature_index", p), f"{p}.cat_feature_index", 0, n_cat)
            _int(_key(e, "value", p), f"{p}.value")
        else:
            raise _Bad(f"{p}.combination_element {kind!r} is unknown")
    return elements


def _ctr_data(v: Any, ctrs: list[dict[str, Any]], n_float: int, n_cat: int) -> None:
    tables = _obj(v if v is not None else {}, "$.ctr_data")
    strides: dict[str, int] = {}
    for key, table in tables.items():
        path = f"$.ctr_data[{key[:60]!r}]"
        try:
            base = _obj(_parse(key.encode("utf-8")), path + " (key)")
        except _Bad as exc:
            raise _Bad(f"{path}: the key is not a CTR description ({exc})") from None
        ctr_type = _key(base, "type", path)
        if not isinstance(ctr_type, str) or ctr_type not in _CTR_TYPES:
            raise _Bad(f"{path}: CTR type {ctr_type!r} is unknown")
        _elements(_key(base, "identifier", path), path + " identifier", n_float, n_cat)
        _obj(table, path)
        stride = _int(_key(table, "hash_stride", path), f"{path}.hash_stride", 1, 1024)
        expected = _CTR_TYPES[ctr_type]
        if (expected is not None and stride != expected) or (expected is None and stride < 2):
            raise _Bad(f"{path}.hash_stride {stride} does not fit CTR type {ctr_type}")
        _int(_key(table, "counter_denominator", path), f"{path}.counter_denominator")
        values = _arr(_key(table, "hash_map", path), f"{path}.hash_map")
        if len(values) % stride:
            raise _Bad(f"{path}.hash_map length {len(values)} is not a multiple of {stride}")
        seen: set[str] = set()
        for i in range(0, len(values), stride):
            h = values[i]
            if not isinstance(h, str) or not h.isdigit() or not h.isascii() or int(h) >= _UINT64:
                raise _Bad(f"{path}.hash_map[{i}] must be a 64-bit hash written as a string")
            if h in seen:
                raise _Bad(f"{path}.hash_map repeats the hash {h}")
            seen.add(h)
            for j in range(i + 1, i + stride):
                # mean-value CTRs keep a sum (a float) and a count; the others count
                (_num if expected == 3 else _int)(values[j], f"{path}.hash_map[{j}]")
        strides[_canonical(base["identifier"], ctr_type)] = stride
    for i, ctr in enumerate(ctrs):
        found = strides.get(_canonical(ctr["elements"], ctr["ctr_type"]))
        if found is None:
            raise _Bad(f"$.features_info.ctrs[{i}] has no table in $.ctr_data")
        classes = 1 if _CTR_TYPES[ctr["ctr_type"]] is not None else found - 1
        if ctr["target_border_idx"] >= classes:
            raise _Bad(f"$.features_info.ctrs[{i}].target_border_idx is out of range")


def _canonical(elements: Any, ctr_type: str) -> str:
    return json.dumps([ctr_type, elements], sort_keys=True)


def _split(s: Any, path: str, bins: list[tuple[Any, ...]]) -> None:
    _obj(s, path)
    index = _int(_key(s, "split_index", path), f"{path}.split_index", 0, max(len(bins), 1))
    if not bins:
        raise _Bad(f"{path}: the model has no binary features to split on")
    kind, feature, value = bins[index]
    if s.get("split_type") != kind:
        raise _Bad(f"{path}.split_type must be {kind} (split_index {index})")
    if kind == "FloatFeature":
        same = s.get("float_feature_index") == feature and _num(s.get("border"), path) == value
    elif kind == "OneHotFeature":
        same = s.get("cat_feature_index") == feature and s.get("value") == value
    else:
        same = _num(s.get("border"), path) == value and isinstance(
            s.get("ctr_target_border_idx"), int
        )
    if not same:
        raise _Bad(f"{path} does not match the binary feature its split_index {index} names")


def _oblivious(trees: list[Any], bins: list[tuple[Any, ...]]) -> int | None:
    dim: int | None = None
    weighted: bool | None = None
    for t, tree in enumerate(trees):
        path = f"$.oblivious_trees[{t}]"
        _obj(tree, path)
        splits = _arr(_key(tree, "splits", path), f"{path}.splits")
        if len(splits) > MAX_DEPTH:
            raise _Bad(f"{path} is deeper than {MAX_DEPTH}")
        for i, s in enumerate(splits):
            _split(s, f"{path}.splits[{i}]", bins)
        leaves = 1 << len(splits)
        values = _arr(_key(tree, "leaf_values", path), f"{path}.leaf_values")
        for i, v in enumerate(values):
            _num(v, f"{path}.leaf_values[{i}]")
        if not values or len(values) % leaves:
            raise _Bad(f"{path} has {len(values)} leaf values for {leaves} leaves")
        dim = _same_dim(dim, len(values) // leaves, path)
        has_weights = "leaf_weights" in tree
        if weighted is not None and has_weights != weighted:
            raise _Bad(f"{path}: leaf_weights must be in every tree or in none")
        weighted = has_weights
        if has_weights:
            weights = _arr(tree["leaf_weights"], f"{path}.leaf_weights")
            if len(weights) != leaves:
                raise _Bad(f"{path} has {len(weights)} leaf weights for {leaves} leaves")
            for i, w in enumerate(weights):
                _num(w, f"{path}.leaf_weights[{i}]")
    return dim


def _non_symmetric(trees: list[Any], bins: list[tuple[Any, ...]]) -> int | None:
    state: dict[str, Any] = {"dim": None, "weighted": None}

    def node(n: Any, path: str, depth: int) -> None:
        _obj(n, path)
        if "value" in n:
            if set(n) - {"value", "weight"}:
                raise _Bad(f"{path}: a leaf holds only value and weight")
            value = n["value"]
            if isinstance(value, list):
                for i, v in enumerate(value):
                    _num(v, f"{path}.value[{i}]")
                size = len(value)
                if not size:
                    raise _Bad(f"{path}.value must not be empty")
            else:
                _num(value, f"{path}.value")
                size = 1
            state["dim"] = _same_dim(state["dim"], size, path)
            if state["weighted"] is not None and ("weight" in n) != state["weighted"]:
                raise _Bad(f"{path}: weight must be on every leaf or on none")
            state["weighted"] = "weight" in n
            if "weight" in n:
                _num(n["weight"], f"{path}.weight")
            return
        if depth >= MAX_DEPTH:
            raise _Bad(f"{path} is deeper than {MAX_DEPTH}")
        if set(n) != {"split", "left", "right"}:
            raise _Bad(f"{path} must be a leaf (value) or a split with left and right")
        _split(n["split"], f"{path}.split", bins)
        node(n["left"], f"{path}.left", depth + 1)
        node(n["right"], f"{path}.right", depth + 1)

    for t, tree in enumerate(trees):
        node(tree, f"$.trees[{t}]", 0)
    dim: int | None = state["dim"]
    return dim


def _same_dim(dim: int | None, found: int, path: str) -> int:
    if dim is not None and found != dim:
        raise _Bad(f"{path} has {found} output(s) per leaf where the other trees have {dim}")
    return found
