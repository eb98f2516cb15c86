"""Typed JSON for example inputs and outputs (the ``examples/`` layer).

Plain JSON loses dtypes and cannot hold NaN; this codec keeps the kind (tensor, dict,
dataframe, strings), each array's dtype and shape, and writes non-finite floats as the
strings "NaN", "Infinity" and "-Infinity". Float64 values round-trip exactly because
Python's float repr is exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ManifestError
from ..package.manifest import pretty_json
from .tensorspec import _is_frame, _pandas, _to_array, dtype_name, masked_dtype

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# Column dtypes whose gaps (null) decode to a pandas nullable array (Int64, boolean, ...).
MASKABLE = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)


def _encode_scalar(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _encode_array(arr: np.ndarray) -> dict[str, Any]:
    dtype = dtype_name(arr.dtype) if arr.dtype.kind != "O" else "str"
    if arr.dtype.kind == "M":
        flat = [None if v is None else str(v) for v in np.datetime_as_string(arr.ravel()).tolist()]
    else:
        flat = [_encode_scalar(v) for v in arr.ravel().tolist()]
    return {"dtype": dtype, "shape": list(arr.shape), "data": flat}


def _decode_array(raw: Mapping[str, Any]) -> np.ndarray:
    dtype, shape, data = raw["dtype"], raw["shape"], raw["data"]
    if dtype == "str":
        arr = np.empty(len(data), dtype=object)
        arr[:] = data
        return arr.reshape(shape)
    if dtype.startswith("datetime64"):
        return np.array(data, dtype="datetime64[ns]").reshape(shape)
    values = [_NONFINITE.get(v, v) if isinstance(v, str) else v for v in data]
    return np.array(values, dtype=np.dtype(dtype)).reshape(shape)


def encode(value: Any) -> dict[str, Any]:
    """Encode a model input or output as typed JSON-ready data."""
    if _is_frame(value):
        pd = _pandas()
        columns: dict[str, dict[str, Any]] = {}
        for col in value.columns:
            series = value[col]
            numpy_dtype = getattr(series.dtype, "numpy_dtype", None)
            if numpy_dtype is not None and bool(series.isna().any()):
                # A pandas nullable column (Int64, boolean) with gaps: to_numpy() would
                # make floats or objects of it; keep its dtype and write the gaps as null.
                data = [None if v is None or v is pd.NA or v != v else v for v in series.tolist()]
                columns[str(col)] = {
                    "dtype": dtype_name(np.dtype(numpy_dtype)),
                    "shape": [len(data)],
                    "data": [v if v is None else _encode_scalar(v) for v in data],
                }
            elif str(series.dtype) == "category":
                # A model fitted on categoricals (XGBoost, LightGBM) checks the category
                # list itself, not just the values.
                cats = series.cat.categories
                values = [None if v is None or v != v else _encode_scalar(v) for v in series]
                columns[str(col)] = {
                    "dtype": "category",
                    "shape": [len(values)],
                    "data": values,
                    "categories": _encode_array(cats.to_numpy()),
                    "ordered": bool(series.cat.ordered),
                }
            elif series.dtype.kind in "biufM":
                columns[str(col)] = _encode_array(series.to_numpy())
            else:
                values = [None if (v is None or v != v) else _encode_scalar(v) for v in series]
                columns[str(col)] = {"dtype": "str", "shape": [len(values)], "data": values}
        # The file's keys are sorted; a model fitted on a frame refuses other column orders.
        return {"kind": "dataframe", "columns": columns, "order": [str(c) for c in value.columns]}
    if isinstance(value, Mapping):
        return {
            "kind": "dict",
            "arrays": {str(k): _encode_array(_to_array(v)) for k, v in value.items()},
        }
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return {"kind": "strings", "data": list(value)}
    if isinstance(value, tuple):
        return {"kind": "tuple", "items": [encode(v) for v in value]}
    return {"kind": "tensor", "array": _encode_array(_to_array(value))}


def decode(raw: Any) -> Any:
    """Inverse of :func:`encode`."""
    try:
        kind = raw["kind"]
        if kind == "dataframe":
            pd = _pandas()
            cols: dict[str, Any] = {}
            order = raw.get("order", sorted(raw["columns"]))
            if sorted(order) != sorted(raw["columns"]):
                raise ValueError("'order' does not list the columns")
            for name in order:
                col = raw["columns"][name]
                if col["dtype"] == "str":
                    cols[name] = list(col["data"])
                elif col["dtype"] == "category":
                    cats = _decode_array(col["categories"])
                    cols[name] = pd.Categorical(
                        col["data"], categories=cats, ordered=bool(col.get("ordered"))
                    )
                elif col["dtype"] in MASKABLE and None in col["data"]:
                    cols[name] = pd.array(col["data"], dtype=masked_dtype(np.dtype(col["dtype"])))
                else:
                    cols[name] = _decode_array(col)
            return pd.DataFrame(cols)
        if kind == "dict":
            return {k: _decode_array(v) for k, v in raw["arrays"].items()}
        if kind == "strings":
            return list(raw["data"])
        if kind == "tuple":
            return tuple(decode(v) for v in raw["items"])
        if kind == "tensor":
            return _decode_array(raw["array"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"malformed example data: {exc!r}", where="examples/") from None
    raise ManifestError(f"unknown example kind {kind!r}", where="examples/")


def dumps(value: Any) -> bytes:
    return pretty_json(encode(value))


def loads(data: bytes) -> Any:
    try:
        return decode(json.loads(data))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"example file is not valid JSON: {exc}", where="examples/") from None


def compare(expected: Any, actual: Any, *, rtol: float = 1e-6, atol: float = 1e-6) -> str | None:
    """None when outputs match (exact for ints and strings, rtol/atol for floats).

    Otherwise a sentence naming the first output that differs and the largest difference.
    """
    from .signature import named_arrays

    exp, act = named_arrays(expected), named_arrays(actual)
    if set(exp) != set(act):
        return f"output names differ: expected {sorted(exp)}, got {sorted(act)}"
    for name in sorted(exp):
        a, b = np.asarray(exp[name]), np.asarray(act[name])
        if a.shape != b.shape:
            return f"output {name!r}: expected shape {list(a.shape)}, got {list(b.shape)}"
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            try:
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
            except (TypeError, ValueError):
                return f"output {name!r}: cannot compare {a.dtype} with {b.dtype}"
            close = np.isclose(a64, b64, rtol=rtol, atol=atol, equal_nan=True)
            if not bool(np.all(close)):
                with np.errstate(invalid="ignore"):
                    diff = float(np.nanmax(np.abs(a64 - b64)))
                count = int(np.size(close) - np.count_nonzero(close))
                return (
                    f"output {name!r}: {count} value(s) differ beyond rtol={rtol}, atol={atol}; "
                    f"largest difference {diff:.6g}"
                )
        else:
            if a.dtype.kind in "OUS" or b.dtype.kind in "OUS":
                same = [str(x) for x in a.ravel().tolist()] == [str(x) for x in b.ravel().tolist()]
            else:
                same = bool(np.array_equal(a, b))
            if not same:
                return f"output {name!r}: values differ (exact comparison for {a.dtype})"
    return None
