"""The inference signature (schema layer): inference from examples, enforcement, export.

A signature names each input and output with a dtype and a shape (``-1`` marks a
dynamic dimension; the batch axis is always dynamic). The model's input comes in one
of four kinds, kept so that ``predict`` hands the model exactly what it was packed with:

- ``tensor``:    one array (the input is named ``input``)
- ``dict``:      a mapping of names to arrays
- ``dataframe``: a pandas DataFrame; each column is one 1-D input, with nullability
- ``strings``:   a list of Python strings (one 1-D ``str`` input named ``input``)

Enforcement applies only numpy-safe casts (``np.can_cast(..., "safe")``), plus lossless
conversion of plain Python values (a JSON ``1`` is a fine ``float32``). Anything else is
a SignatureError naming the input, what was expected and what came.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SignatureError

KINDS = ("tensor", "dict", "dataframe", "strings")
DEFAULT_INPUT = "input"
DEFAULT_OUTPUT = "output"

# Open Inference Protocol datatypes for each signature dtype.
V2_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "str": "BYTES",
    "datetime64[ns]": "BYTES",
}
_JSON_TYPES = {"b": "boolean", "u": "integer", "i": "integer", "f": "number"}


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: dtype, shape (-1 = dynamic) and nullability."""

    name: str
    dtype: str
    shape: tuple[int, ...] = (-1,)
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.nullable:
            data["nullable"] = True
        return data

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> TensorSpec:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise SignatureError("each spec needs a string 'name'", where=where)
        dtype = raw.get("dtype")
        if dtype not in V2_DATATYPES:
            raise SignatureError(
                f"unknown dtype {dtype!r} for {raw['name']!r}",
                where=where,
                fix=f"use one of {', '.join(V2_DATATYPES)}",
            )
        shape = raw.get("shape", [-1])
        if not isinstance(shape, list) or not all(type(d) is int and d >= -1 for d in shape):
            raise SignatureError(f"bad shape {shape!r} for {raw['name']!r}", where=where)
        return cls(raw["name"], dtype, tuple(shape), bool(raw.get("nullable", False)))

    @property
    def v2_datatype(self) -> str:
        return V2_DATATYPES[self.dtype]


@dataclass(frozen=True)
class Signature:
    """Inputs, outputs, their kinds, and optional inference parameters."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    input_kind: str = "tensor"
    output_kind: str = "tensor"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in (self.input_kind, self.output_kind):
            if kind not in KINDS:
                raise SignatureError(f"unknown signature kind {kind!r}", fix=f"use one of {KINDS}")
        names = [s.name for s in self.inputs]
        if len(set(names)) != len(names):
            raise SignatureError(f"input names repeat: {names}")

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "input_kind": self.input_kind,
            "output_kind": self.output_kind,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str = "schema.json") -> Signature:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("inputs"), list):
            raise SignatureError("a signature needs an 'inputs' list", where=where)
        outputs = raw.get("outputs", [])
        if not isinstance(outputs, list):
            raise SignatureError("'outputs' must be a list", where=where)
        params = raw.get("params", {})
        if not isinstance(params, dict):
            raise SignatureError("'params' must be an object", where=where)
        return cls(
            inputs=tuple(TensorSpec.from_dict(s, f"{where}: inputs") for s in raw["inputs"]),
            outputs=tuple(TensorSpec.from_dict(s, f"{where}: outputs") for s in outputs),
            input_kind=str(raw.get("input_kind", "tensor")),
            output_kind=str(raw.get("output_kind", "tensor")),
            params=params,
        )

    @property
    def batchable(self) -> bool:
        """True when every input and output has a dynamic leading (batch) axis."""
        specs = self.inputs + self.outputs
        return bool(self.inputs) and all(s.shape and s.shape[0] == -1 for s in specs)

    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    # -- inference -----------------------------------------------------------------
    @classmethod
    def infer(cls, example: Any, output: Any = None) -> Signature:
        """Infer a signature from an example input and the model's output on it."""
        in_kind, in_specs = _infer_specs(example, DEFAULT_INPUT, "example input")
        out_kind = "tensor"
        out_specs: tuple[TensorSpec, ...] = ()
        if output is not None:
            out_kind, out_specs = _infer_specs(output, DEFAULT_OUTPUT, "model output")
        return cls(inputs=in_specs, outputs=out_specs, input_kind=in_kind, output_kind=out_kind)

    # -- enforcement ---------------------------------------------------------------
    def validate(self, inputs: Any) -> Any:
        """Check ``inputs`` against the signature and return them in the model's kind.

        Raises SignatureError naming the input, what was expected and what came.
        """
        if self.input_kind == "dataframe":
            return _validate_frame(self.inputs, inputs)
        named = _as_named(self, inputs)
        checked = {spec.name: _check_array(spec, named[spec.name]) for spec in self.inputs}
        return self._to_model_kind(checked)

    def from_named_arrays(self, arrays: Mapping[str, np.ndarray]) -> Any:
        """Build the model's input from named arrays (as the server receives them)."""
        if self.input_kind == "dataframe":
            pd = _pandas()
            _check_names(self, arrays)
            # A column may arrive as [n, 1] (V2 clients often send 2-D); it is one column.
            arrays = {
                k: np.reshape(v, (-1,)) if np.ndim(v) == 2 and np.shape(v)[1] == 1 else v
                for k, v in arrays.items()
            }
            try:
                frame = pd.DataFrame({s.name: _column_values(arrays[s.name]) for s in self.inputs})
            except ValueError as exc:
                raise SignatureError(f"columns differ in length: {exc}") from None
            return _validate_frame(self.inputs, frame)
        return self.validate(dict(arrays))

    def _to_model_kind(self, checked: dict[str, np.ndarray]) -> Any:
        if self.input_kind == "tensor":
            return checked[self.inputs[0].name]
        if self.input_kind == "strings":
            return [str(v) for v in checked[self.inputs[0].name].tolist()]
        return checked

    def to_named_arrays(self, output: Any) -> dict[str, np.ndarray]:
        """Name the model's output arrays as the signature's outputs do."""
        names = [s.name for s in self.outputs] or [DEFAULT_OUTPUT]
        return named_arrays(output, names[0] if len(names) == 1 else DEFAULT_OUTPUT)

    # -- export --------------------------------------------------------------------
    def to_v2_metadata(self, name: str, version: str, platform: str) -> dict[str, Any]:
        """Open Inference Protocol model metadata (a DataFrame: one input per column)."""

        def tensor(s: TensorSpec) -> dict[str, Any]:
            return {"name": s.name, "datatype": s.v2_datatype, "shape": list(s.shape)}

        return {
            "name": name,
            "versions": [version],
            "platform": platform,
            "inputs": [tensor(s) for s in self.inputs],
            "outputs": [tensor(s) for s in self.outputs],
        }

    def to_json_schema(self) -> dict[str, Any]:
        """A JSON Schema for the request object ``{"inputs": {name: value}}``."""

        def props(specs: Sequence[TensorSpec]) -> dict[str, Any]:
            return {s.name: _spec_schema(s) for s in specs}

        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "inputs": {
                    "type": "object",
                    "properties": props(self.inputs),
                    "required": self.input_names(),
                    "additionalProperties": False,
                },
                "outputs": {"type": "object", "properties": props(self.outputs)},
            },
            "required": ["inputs"],
        }


# ---------------------------------------------------------------------------------
# inference helpers


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The signature dtype name of a numpy dtype."""
    if dtype.kind in "OUSTt":
        return "str"
    if dtype.kind == "M":
        return "datetime64[ns]"
    name = dtype.name
    if name not in V2_DATATYPES:
        raise SignatureError(f"dtype {dtype} is not supported in a signature")
    return name


def _is_frame(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


def _is_series(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.Series)


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise SignatureError(
            "this model takes a DataFrame but pandas is not installed",
            fix="pip install pandas",
        ) from None
    return pd


def _to_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return np.asarray(value.detach().cpu().numpy())
    if _is_series(value) or _is_frame(value):
        return np.asarray(value.to_numpy())
    return np.asarray(value)


def _array_spec(name: str, arr: np.ndarray) -> TensorSpec:
    if arr.ndim == 0:
        return TensorSpec(name, dtype_name(arr.dtype), ())
    if arr.dtype.kind == "O":
        bad = next((v for v in arr.ravel() if not isinstance(v, str)), None)
        if bad is not None:
            raise SignatureError(
                f"{name!r} holds Python objects of type {type(bad).__name__}, not numbers or strings",
                fix="convert it to a numeric or string array before packing",
            )
    shape = (-1, *arr.shape[1:])
    return TensorSpec(name, dtype_name(arr.dtype), shape)


def _infer_specs(value: Any, default: str, what: str) -> tuple[str, tuple[TensorSpec, ...]]:
    if _is_frame(value):
        specs = []
        for col in value.columns:
            if not isinstance(col, str):
                raise SignatureError(f"{what} has a non-string column name {col!r}")
            series = value[col]
            dtype = series.dtype
            kind = getattr(dtype, "kind", "O")
            if kind in "OUS" or str(dtype) in ("string", "str", "category"):
                name = "str"
            elif str(dtype).startswith("datetime64"):
                name = "datetime64[ns]"
            else:
                name = dtype_name(
                    np.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype)
                )
            nullable = bool(series.isna().any()) and name not in ("float32", "float64")
            specs.append(TensorSpec(col, name, (-1,), nullable))
        return "dataframe", tuple(specs)
    if isinstance(value, Mapping):
        if not value:
            raise SignatureError(f"{what} is an empty mapping")
        specs = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise SignatureError(f"{what} has a non-string key {key!r}")
            specs.append(_array_spec(key, _to_array(item)))
        return "dict", tuple(specs)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "strings", (TensorSpec(default, "str", (-1,)),)
    arr = _to_array(value)
    if (
        arr.dtype.kind == "O"
        and arr.ndim == 1
        and all(isinstance(v, (list, np.ndarray)) for v in arr)
    ):
        raise SignatureError(f"{what} is ragged (rows of different lengths)")
    return "tensor", (_array_spec(default, arr),)


def named_arrays(value: Any, default: str = DEFAULT_OUTPUT) -> dict[str, np.ndarray]:
    """Any model output as named arrays: a DataFrame by column, a dict by key."""
    if _is_frame(value):
        return {str(c): np.asarray(value[c].to_numpy()) for c in value.columns}
    if isinstance(value, Mapping):
        return {str(k): _to_array(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {f"{default}_{i}": _to_array(v) for i, v in enumerate(value)}
    return {default: _to_array(value)}


# ---------------------------------------------------------------------------------
# enforcement helpers


def _describe(arr: np.ndarray) -> str:
    return f"{dtype_name(arr.dtype) if arr.dtype.kind != 'O' else 'object'} {list(arr.shape)}"


def _check_names(sig: Signature, named: Mapping[str, Any]) -> None:
    expected = sig.input_names()
    missing = [n for n in expected if n not in named]
    if missing:
        raise SignatureError(
            f"input {missing[0]!r} is missing",
            where="inputs",
            fix=f"the model takes inputs {expected}",
        )
    unknown = [n for n in named if n not in expected]
    if unknown:
        raise SignatureError(
            f"unknown input {unknown[0]!r}",
            where="inputs",
            fix=f"the model takes inputs {expected}",
        )


def _as_named(sig: Signature, inputs: Any) -> dict[str, Any]:
    if sig.input_kind in ("tensor", "strings"):
        name = sig.inputs[0].name
        if isinstance(inputs, Mapping):
            _check_names(sig, inputs)
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
            f"expected a mapping of named inputs {sig.input_names()}, got {type(inputs).__name__}",
            where="inputs",
        )
    _check_names(sig, inputs)
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


def _check_array(spec: TensorSpec, value: Any) -> np.ndarray:
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
    ok = arr.ndim == len(spec.shape) and all(
        want in (-1, got) for want, got in zip(spec.shape, arr.shape)
    )
    if not ok:
        raise SignatureError(
            f"input {spec.name!r} expects shape {list(spec.shape)} (-1 = any), got {list(arr.shape)}",
            where=spec.name,
            fix="reshape the input; a single row still needs its batch axis, e.g. [[...]]",
        )


def _column_values(arr: np.ndarray) -> Any:
    if arr.dtype.kind == "S" or (arr.dtype.kind == "O" and any(isinstance(v, bytes) for v in arr)):
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.tolist()]
    return arr


def _validate_frame(specs: Sequence[TensorSpec], value: Any) -> Any:
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
        if (
            not spec.nullable
            and spec.dtype not in ("float32", "float64")
            and bool(series.isna().any())
        ):
            raise SignatureError(
                f"input column {spec.name!r} has missing values but is not nullable",
                where=spec.name,
                fix="fill the missing values, or pack with an example that has them",
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


def masked_dtype(dtype: np.dtype[Any]) -> str:
    """The pandas nullable dtype for a NumPy one: int64 -> Int64, uint8 -> UInt8, bool -> boolean."""
    if dtype.kind == "b":
        return "boolean"
    bits = dtype.itemsize * 8
    return {"i": f"Int{bits}", "u": f"UInt{bits}", "f": f"Float{bits}"}[dtype.kind]


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
    checked = _check_array(spec1, raw)
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


def _spec_schema(spec: TensorSpec) -> dict[str, Any]:
    if spec.dtype == "str" or spec.dtype.startswith("datetime"):
        item: dict[str, Any] = {"type": "string"}
    else:
        item = {"type": _JSON_TYPES[np.dtype(spec.dtype).kind]}
    if spec.nullable:
        item = {"type": [item["type"], "null"]}
    schema = item
    for dim in reversed(spec.shape):
        schema = {"type": "array", "items": schema}
        if dim >= 0:
            schema["minItems"] = dim
            schema["maxItems"] = dim
    return schema
