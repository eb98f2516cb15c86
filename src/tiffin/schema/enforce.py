"""Enforcement: inputs checked against a signature's specs, with safe casts only.

Only numpy-safe casts are applied (``np.can_cast(..., "safe")``), plus lossless
conversion of plain Python values (a JSON ``1`` is a fine ``float32``). Booleans and
numbers never mix: a bool array for a float or int input, or numbers for a bool input,
is refused, as the server refuses a JSON ``true`` for a number. Anything else is a
SignatureError naming the input, what was expected and what came.

This module works on :class:`~tiffin.schema.tensorspec.TensorSpec` sequences alone, so
:mod:`tiffin.schema.signature` imports it and never the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import SignatureError
from .tensorspec import TensorSpec, _is_frame, _pandas, _to_array, dtype_name

__all__ = ["as_named", "check_array", "check_names", "column_values", "validate_frame"]


def _describe(arr: np.ndarray) -> str:
    return f"{dtype_name(arr.dtype) if arr.dtype.kind != 'O' else 'object'} {list(arr.shape)}"


def check_names(expected: Sequence[str], named: Mapping[str, Any]) -> None:
    """A missing input first, then an unknown one, as a SignatureError."""
    expected = list(expected)
    problems = [f"input {n!r} is missing" for n in expected if n not in named]
    problems += [f"unknown input {n!r}" for n in named if n not in expected]
    if problems:
        raise SignatureError(problems[0], where="inputs", fix=f"the model takes inputs {expected}")


def as_named(specs: Sequence[TensorSpec], kind: str, inputs: Any) -> dict[str, Any]:
    """The inputs of a ``tensor``, ``strings`` or ``dict`` signature as a name -> value map."""
    names = [s.name for s in specs]
    if kind in ("tensor", "strings"):
        name = names[0]
        if isinstance(inputs, Mapping):
            check_names(names, inputs)
            return {name: inputs[name]}
        if _is_frame(inputs):
            raise SignatureError(
                f"expected one array for input {name!r}, got a {type(inputs).__name__}",
                where=name,
                fix="pass the array itself",
            )
        return {name: inputs}
    if not isinstance(inputs, Mapping):
        raise SignatureError(
            f"expected a mapping of named inputs {names}, got {type(inputs).__name__}",
            where="inputs",
        )
    check_names(names, inputs)
    return dict(inputs)


def _lossless(arr: np.ndarray, target: np.dtype[Any]) -> np.ndarray | None:
    """Convert plain-Python-derived values to ``target`` only when no value changes."""
    if arr.dtype.kind not in "biuf" or target.kind not in "biuf":
        return None
    if arr.dtype.kind == "f" and target.kind in "biu":
        return None
    with np.errstate(all="ignore"):
        try:
            out = arr.astype(target)
        except (OverflowError, ValueError):
            return None
        back = out.astype(arr.dtype)
    same = (
        (back == arr) | (np.isnan(arr) & np.isnan(back)) if arr.dtype.kind == "f" else back == arr
    )
    return out if bool(np.all(same)) else None


def check_array(spec: TensorSpec, value: Any) -> np.ndarray:
    """One input as an array of the spec's dtype and shape, or a SignatureError naming it."""
    from_python = not isinstance(value, np.ndarray) and not hasattr(value, "__array_interface__")
    try:
        arr = _to_array(value)
    except (ValueError, TypeError) as exc:
        raise SignatureError(
            f"input {spec.name!r} is not a regular array: {exc}", where=spec.name
        ) from None
    if spec.dtype == "str":
        arr = _check_strings(spec, arr)
    else:
        target = np.dtype(spec.dtype)
        mixed = from_python and target.kind != "b" and arr.dtype.kind in "iuf" and _has_bool(value)
        if mixed or (arr.dtype != target and (arr.dtype.kind == "b") != (target.kind == "b")):
            came = "booleans" if arr.dtype.kind == "b" or mixed else _describe(arr)
            raise SignatureError(
                f"input {spec.name!r} expects dtype {spec.dtype}, got {came}",
                where=spec.name,
                fix="booleans and numbers are not interchangeable: "
                + (
                    f"convert explicitly, e.g. arr.astype({spec.dtype!r})"
                    if arr.dtype.kind == "b" or mixed
                    else "send true/false values"
                ),
            )
        if arr.dtype != target:
            if arr.dtype.kind in "biuf" and np.can_cast(arr.dtype, target, casting="safe"):
                arr = arr.astype(target)
            else:
                converted = _lossless(arr, target) if from_python else None
                if converted is None:
                    raise SignatureError(
                        f"input {spec.name!r} expects dtype {spec.dtype}, got {_describe(arr)}",
                        where=spec.name,
                        fix=f"send {spec.dtype} values; only safe casts are applied "
                        f"(e.g. int32 -> int64), never lossy ones",
                    )
                arr = converted
    _check_shape(spec, arr)
    return arr


def _has_bool(value: Any) -> bool:
    """Whether nested Python lists hold a bool (numpy would turn ``[True, 2.5]`` into floats)."""
    if isinstance(value, (list, tuple)):
        return any(_has_bool(v) for v in value)
    return isinstance(value, (bool, np.bool_))


def _check_strings(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "U":
        return arr
    if arr.size == 0 and arr.dtype.kind in "f":  # np.asarray([]) is float64: no rows at all
        return arr.astype(object)
    if arr.dtype.kind in "OS":
        flat = arr.ravel()
        out = np.empty(flat.shape, dtype=object)
        for i, item in enumerate(flat):
            if isinstance(item, str):
                out[i] = item
            elif isinstance(item, bytes):
                try:
                    out[i] = item.decode("utf-8")
                except UnicodeDecodeError:
                    raise SignatureError(
                        f"input {spec.name!r} holds bytes that are not UTF-8 at position {i}",
                        where=spec.name,
                    ) from None
            elif item is None and spec.nullable:
                out[i] = None
            else:
                raise SignatureError(
                    f"input {spec.name!r} expects strings, got {type(item).__name__} at position {i}",
                    where=spec.name,
                )
        return out.reshape(arr.shape)
    raise SignatureError(
        f"input {spec.name!r} expects strings, got {_describe(arr)}", where=spec.name
    )


def _check_shape(spec: TensorSpec, arr: np.ndarray) -> None:
    if arr.ndim == len(spec.shape):
        fixed = [
            i for i, (want, got) in enumerate(zip(spec.shape, arr.shape)) if want not in (-1, got)
        ]
        if not fixed:
            return
        axis = fixed[0]
        fix = (
            f"axis {axis} is fixed at {spec.shape[axis]} by the packed example; to accept any "
            f"size there, pack with dynamic_axes={{{spec.name!r}: [{axis}]}}"
            if axis > 0
            else "send the size the signature declares"
        )
    else:
        fix = "reshape the input; a single row still needs its batch axis, e.g. [[...]]"
    raise SignatureError(
        f"input {spec.name!r} expects shape {list(spec.shape)} (-1 = any), got {list(arr.shape)}",
        where=spec.name,
        fix=fix,
    )


def column_values(arr: np.ndarray) -> Any:
    """A received column as pandas should take it: bytes decoded to strings."""
    if arr.dtype.kind == "S" or (arr.dtype.kind == "O" and any(isinstance(v, bytes) for v in arr)):
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.tolist()]
    return arr


def validate_frame(specs: Sequence[TensorSpec], value: Any) -> Any:
    """A DataFrame (or a mapping of columns) checked column by column against ``specs``."""
    pd = _pandas()
    if isinstance(value, Mapping):
        try:
            # Python lists keep their values as objects, so they are checked one by one
            # (a JSON [1, null] is a nullable int column, not the floats pandas would make).
            value = pd.DataFrame(
                {
                    k: pd.Series(v, dtype=object) if isinstance(v, list) else v
                    for k, v in value.items()
                }
            )
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"cannot build a DataFrame from the inputs: {exc}") from None
    if not _is_frame(value):
        raise SignatureError(
            f"expected a DataFrame with columns {[s.name for s in specs]}, got {type(value).__name__}",
            where="inputs",
            fix="pass a pandas DataFrame (or a dict of column name to values)",
        )
    expected = [s.name for s in specs]
    repeated = sorted({str(c) for c in value.columns[value.columns.duplicated()]})
    if repeated:
        raise SignatureError(
            f"input column {repeated[0]!r} appears more than once",
            where="inputs",
            fix="give each column once",
        )
    missing = [n for n in expected if n not in value.columns]
    if missing:
        raise SignatureError(
            f"input column {missing[0]!r} is missing", where="inputs", fix=f"columns: {expected}"
        )
    unknown = [str(c) for c in value.columns if c not in expected]
    if unknown:
        raise SignatureError(
            f"unknown input column {unknown[0]!r}", where="inputs", fix=f"columns: {expected}"
        )
    columns = {}
    for spec in specs:
        series = value[spec.name]
        if not spec.nullable and not spec.dtype.startswith("float") and bool(series.isna().any()):
            raise SignatureError(
                f"input column {spec.name!r} has missing values but is not nullable",
                where=spec.name,
                fix="fill the missing values, or pack with an example that has them "
                '(or signature= with "nullable": true for this column)',
            )
        if spec.dtype == "str":
            bad = next(
                (v for v in series if not (isinstance(v, str) or (v is None or v != v))), None
            )
            if bad is not None:
                raise SignatureError(
                    f"input column {spec.name!r} expects strings, got {type(bad).__name__} ({bad!r})",
                    where=spec.name,
                )
            columns[spec.name] = series
        elif spec.dtype.startswith("datetime64"):
            if not str(series.dtype).startswith("datetime64"):
                raise SignatureError(
                    f"input column {spec.name!r} expects datetimes, got {series.dtype}",
                    where=spec.name,
                )
            columns[spec.name] = series
        else:
            columns[spec.name] = _numeric_column(pd, spec, series)
    return pd.DataFrame(columns, index=value.index)


def _numeric_column(pd: Any, spec: TensorSpec, series: Any) -> Any:
    """One numeric column, checked as an array; missing values of a nullable column kept.

    The present values are checked like any input (safe casts, lossless conversion of
    Python objects). Missing values come back as NaN in a float column and as a pandas
    nullable array (``Int64``, ``boolean``) in an int or bool column, which is what such
    a column was packed with: ``to_numpy`` would turn ``Int64`` with a gap into floats.
    """
    target = np.dtype(spec.dtype)
    spec1 = TensorSpec(spec.name, spec.dtype, (-1,), spec.nullable)
    missing = np.asarray(series.isna().to_numpy(), dtype=bool)
    present = series[~missing] if missing.any() else series
    numpy_dtype = getattr(series.dtype, "numpy_dtype", None)
    if numpy_dtype is not None and np.dtype(numpy_dtype).kind in "biuf":
        raw: Any = present.to_numpy(dtype=numpy_dtype)  # a pandas nullable column, gaps removed
    else:
        raw = present.to_numpy()
    if raw.dtype.kind == "O":
        raw = raw.tolist()  # Python objects: checked (and converted only when lossless) as such
    checked = check_array(spec1, raw)
    if not missing.any():
        return checked
    if target.kind == "f":
        out = np.full(len(series), np.nan, dtype=target)
        out[~missing] = checked
        return out
    data = np.zeros(len(series), dtype=target)
    data[~missing] = checked
    cls = pd.arrays.BooleanArray if target.kind == "b" else pd.arrays.IntegerArray
    return cls(data, missing)
