"""The inference signature (schema layer): inference from examples, enforcement, export.

A signature names each input and output with a dtype and a shape (``-1`` marks a
dynamic dimension; the batch axis is always dynamic). The model's input comes in one
of four kinds, kept so that ``predict`` hands the model exactly what it was packed with:

- ``tensor``:    one array (the input is named ``input``)
- ``dict``:      a mapping of names to arrays
- ``dataframe``: a pandas DataFrame; each column is one 1-D input, with nullability
- ``strings``:   a list of Python strings (one 1-D ``str`` input named ``input``)

Each input and output is a :class:`~tiffin.schema.tensorspec.TensorSpec`; ``validate`` checks
inputs through :mod:`tiffin.schema.enforce` (numpy-safe casts only, lossless conversion of plain
Python values, a SignatureError naming the input otherwise).

Missing values: a float input always accepts NaN. A column of another dtype is nullable
when the example has a gap in it; each DataFrame column records why in
``nullable_reason``. Every axis but the batch axis is fixed to the example's size unless
named in ``dynamic_axes``. docs/signature.md has the format and examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SignatureError
from .enforce import as_named, check_array, check_names, column_values, validate_frame
from .tensorspec import TensorSpec, _is_frame, _pandas, _to_array, dtype_name

KINDS = ("tensor", "dict", "dataframe", "strings")
DEFAULT_INPUT = "input"
DEFAULT_OUTPUT = "output"
_JSON_TYPES = {"b": "boolean", "u": "integer", "i": "integer", "f": "number"}
# How inference decided a column's nullability (the ``nullable_reason`` it records).
REASON_FLOAT = "float: NaN is a missing value and always accepted"
REASON_SEEN = "the example has missing values in this column"
REASON_UNSEEN = "the example has no missing values in this column"


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
    def infer(
        cls,
        example: Any,
        output: Any = None,
        *,
        dynamic_axes: Mapping[str, Sequence[int]] | None = None,
    ) -> Signature:
        """Infer a signature from an example input and the model's output on it.

        The batch axis is dynamic; every other axis takes the example's size unless
        ``dynamic_axes`` names it (``{"tokens": [1]}``: any sequence length).

        Example::

            Signature.infer(np.zeros((2, 16), np.int64), dynamic_axes={"input": [1]})
        """
        in_kind, in_specs = _infer_specs(example, DEFAULT_INPUT, "example input")
        out_kind = "tensor"
        out_specs: tuple[TensorSpec, ...] = ()
        if output is not None:
            out_kind, out_specs = _infer_specs(output, DEFAULT_OUTPUT, "model output", False)
        sig = cls(inputs=in_specs, outputs=out_specs, input_kind=in_kind, output_kind=out_kind)
        return sig.with_dynamic_axes(dynamic_axes) if dynamic_axes else sig

    def with_dynamic_axes(self, dynamic_axes: Mapping[str, Sequence[int]]) -> Signature:
        """This signature with the named axes of the named inputs or outputs set to -1."""
        if not isinstance(dynamic_axes, Mapping):
            raise SignatureError(
                f"dynamic_axes must map input names to lists of axes, got {type(dynamic_axes).__name__}",
                where="dynamic_axes",
                fix='e.g. dynamic_axes={"input": [1]}',
            )
        specs = {s.name: s for s in self.inputs + self.outputs}
        for name, axes in dynamic_axes.items():
            spec = specs.get(name)
            if spec is None:
                raise SignatureError(
                    f"dynamic_axes names {name!r}, which is no input or output",
                    where="dynamic_axes",
                    fix=f"name one of {sorted(specs)}",
                )
            if isinstance(axes, (str, bytes)) or not isinstance(axes, Sequence):
                raise SignatureError(
                    f"the axes of {name!r} must be a list of integers, got {axes!r}",
                    where="dynamic_axes",
                )
            shape = list(spec.shape)
            for axis in axes:
                if type(axis) is not int or not 0 <= axis < len(shape):
                    raise SignatureError(
                        f"{name!r} has no axis {axis!r} (its shape is {shape})",
                        where="dynamic_axes",
                        fix=f"give axes from 0 to {len(shape) - 1}" if shape else "it is a scalar",
                    )
                shape[axis] = -1
            specs[name] = TensorSpec(
                spec.name, spec.dtype, tuple(shape), spec.nullable, spec.nullable_reason
            )
        return Signature(
            inputs=tuple(specs[s.name] for s in self.inputs),
            outputs=tuple(specs[s.name] for s in self.outputs),
            input_kind=self.input_kind,
            output_kind=self.output_kind,
            params=self.params,
        )

    def with_nullable(self, names: Sequence[str], reason: str) -> Signature:
        """This signature with the named inputs nullable, and ``reason`` recorded.

        For what a flavor can tell from the fitted model itself (an encoder whose learned
        categories hold a missing value saw gaps in the training data, whatever the
        example held), from its ``refine_signature`` hook.
        """
        known = set(self.input_names())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SignatureError(
                f"{unknown[0]!r} is no input", where="signature", fix=f"inputs: {sorted(known)}"
            )
        chosen = set(names)
        inputs = tuple(
            TensorSpec(s.name, s.dtype, s.shape, True, reason) if s.name in chosen else s
            for s in self.inputs
        )
        return Signature(inputs, self.outputs, self.input_kind, self.output_kind, self.params)

    # -- enforcement ---------------------------------------------------------------
    def validate(self, inputs: Any) -> Any:
        """Check ``inputs`` against the signature and return them in the model's kind.

        Raises SignatureError naming the input, what was expected and what came.
        """
        if self.input_kind == "dataframe":
            return validate_frame(self.inputs, inputs)
        named = as_named(self.inputs, self.input_kind, inputs)
        checked = {spec.name: check_array(spec, named[spec.name]) for spec in self.inputs}
        return self._to_model_kind(checked)

    def rows(self, checked: Any) -> int | None:
        """The batch size of validated inputs, or None when the signature has no batch axis."""
        if not self.batchable:
            return None
        if self.input_kind in ("dataframe", "strings"):
            return len(checked)
        first = checked if self.input_kind == "tensor" else checked[self.inputs[0].name]
        return int(np.shape(first)[0])

    def no_rows(self) -> Any:
        """The model's answer to zero rows, built from the outputs without running the model.

        A batch of zero rows has one consistent answer, zero rows of each output, while
        many models refuse it (scikit-learn needs one sample). Returned in the output's
        kind: an array, a dict of arrays, a DataFrame or an empty list. Raises
        SignatureError when the signature records no outputs to shape it from.
        """
        if not self.outputs or not self.batchable:
            raise SignatureError(
                "an empty batch has no answer here: the signature records no outputs"
                if not self.outputs
                else "an empty batch has no answer here: the signature has no batch axis",
                where="inputs",
                fix="give at least one row",
            )

        named = self.no_rows_named()
        if self.output_kind == "dataframe":
            return _pandas().DataFrame(named)
        if self.output_kind == "strings":
            return []
        if self.output_kind == "dict" or len(self.outputs) > 1:
            return named
        return named[self.outputs[0].name]

    def no_rows_named(self) -> dict[str, np.ndarray]:
        """Zero rows of each output, by name (as the server answers); see :meth:`no_rows`."""

        def empty(spec: TensorSpec) -> np.ndarray:
            dtype = object if spec.dtype == "str" else np.dtype(spec.dtype)
            return np.empty((0, *(max(d, 0) for d in spec.shape[1:])), dtype=dtype)

        return {s.name: empty(s) for s in self.outputs}

    def from_named_arrays(self, arrays: Mapping[str, np.ndarray]) -> Any:
        """Build the model's input from named arrays (as the server receives them)."""
        if self.input_kind == "dataframe":
            pd = _pandas()
            check_names(self.input_names(), arrays)
            # A column may arrive as [n, 1] (V2 clients often send 2-D); it is one column.
            arrays = {
                k: np.reshape(v, (-1,)) if np.ndim(v) == 2 and np.shape(v)[1] == 1 else v
                for k, v in arrays.items()
            }
            try:
                frame = pd.DataFrame({s.name: column_values(arrays[s.name]) for s in self.inputs})
            except ValueError as exc:
                raise SignatureError(f"columns differ in length: {exc}") from None
            return validate_frame(self.inputs, frame)
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


def _infer_specs(
    value: Any, default: str, what: str, reasons: bool = True
) -> tuple[str, tuple[TensorSpec, ...]]:
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
            if name in ("float16", "float32", "float64"):
                nullable, reason = False, REASON_FLOAT
            else:
                nullable = bool(series.isna().any())
                reason = REASON_SEEN if nullable else REASON_UNSEEN
            specs.append(TensorSpec(col, name, (-1,), nullable, reason if reasons else ""))
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
