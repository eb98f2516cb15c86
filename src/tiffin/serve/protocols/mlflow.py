"""MLflow's scoring protocol: ``POST /invocations``, so MLflow clients switch unchanged.

In: one of ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``),
``dataframe_records`` (``[{column: value}, ...]``), ``instances`` or ``inputs`` (a list,
or an object of named lists). Out: ``{"predictions": ...}`` as MLflow's scoring server
answers: a list for one output, an object of lists for several, records for a
DataFrame output. Each input's JSON values become an array of the signature's dtype by
the same rules as V2 JSON tensors (``v2_codec.json_tensor``: a number is rounded to a
float32 input, never cast from a boolean or a fraction to an integer), then the request
goes through the same signature check, admission and batching as a V2 request.
It answers only while one model is served: the path names none.

Only JSON: MLflow's scoring server also takes ``text/csv``, but CSV carries no types
(is ``1`` an integer, a float or the string "1"?), so tiffin answers 415 and asks for
``dataframe_split``, which every MLflow client can send.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from ..._load import Predictor
from ...schema.signature import Signature
from ...schema.tensorspec import V2_DATATYPES, TensorSpec
from ..errors import BadRequest
from .base import (
    INFER_ERRORS,
    JSON_HEADERS,
    Arrays,
    Headers,
    Served,
    Target,
    WireProtocol,
    operation,
)
from .v2_codec import json_tensor

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode_invocation(body: bytes, signature: Signature) -> dict[str, np.ndarray]:
    """The request as named arrays of the signature's dtypes (then checked as V2 requests are)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"the body must be a JSON object with one of {', '.join(FORMATS)}")
    keys = [k for k in FORMATS if k in payload]
    if len(keys) != 1:
        got = sorted(k[:80] for k in payload)[:10]  # the client's keys, not a megabyte of them
        raise BadRequest(f"give exactly one of {', '.join(FORMATS)}; got {got}")
    other = sorted(k for k in payload if k not in (keys[0], "params"))
    if other:
        raise BadRequest(f"unknown field {other[0]!r:.80}; the body holds {keys[0]!r} and optionally 'params'")  # fmt: skip
    if payload.get("params") not in (None, {}):
        # a tiffin model's predict takes no parameters: ignoring one (a threshold, a
        # temperature) would silently answer a different question than was asked
        raise BadRequest("this model takes no 'params'; remove them from the request")
    if _looks_like_v2(payload, signature):
        raise BadRequest(
            "this is an Open Inference Protocol (V2) request; POST it to "
            "/v2/models/<name>/infer, or send MLflow's {'inputs': ...} without name, shape "
            "and datatype"
        )
    named = _named_values(keys[0], payload[keys[0]], signature)
    expected = signature.input_names()
    for name in expected:
        if name not in named:
            raise BadRequest(f"input {name!r} is missing; the model takes {expected}")
    for name in named:
        if name not in expected:
            raise BadRequest(f"unknown input {name!r:.80}; the model takes {expected}")
    return {spec.name: _typed(spec, named[spec.name]) for spec in signature.inputs}


def _looks_like_v2(payload: dict[str, Any], signature: Signature) -> bool:
    """A V2 body ({"inputs": [{"name", "shape", "datatype", "data"}]}) sent here by mistake.

    MLflow's ``inputs`` may also be a list of records, so without this the answer was
    "input 'x' is missing" for a request that names 'x' in every tensor.
    """
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors or "datatype" in signature.input_names():
        return False
    return all(isinstance(t, dict) and {"name", "shape", "datatype"} <= t.keys() for t in tensors)


def _named_values(key: str, value: Any, signature: Signature) -> dict[str, Any]:
    """The JSON values of each input, by name, from any of MLflow's four formats."""
    names = signature.input_names()
    by_column = signature.input_kind in ("dict", "dataframe")
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadRequest("dataframe_split needs {'columns': [...], 'data': [[...], ...]}")
        rows = value["data"]
        if not by_column:
            return {names[0]: _one_column(rows, signature)}
        columns = value.get("columns", names)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise BadRequest("dataframe_split 'columns' must be a list of names")
        if not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
            raise BadRequest(f"every dataframe_split row needs one value per column {columns}")
        return {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    records = key == "dataframe_records" or (
        isinstance(value, list) and by_column and all(isinstance(r, dict) for r in value)
    )
    if records:
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise BadRequest("dataframe_records needs a list of objects")
        columns = list(dict.fromkeys(k for r in value for k in r))
        if not by_column:  # records of one tensor: each record is a row of its columns
            rows = [[r.get(c) for c in columns] for r in value]
            return {names[0]: _one_column(rows, signature)}
        # a key missing from a record is a missing value, as in a DataFrame
        return {c: [r.get(c) for r in value] for c in columns}
    if isinstance(value, dict):  # instances / inputs: an object of named inputs
        return value
    if by_column:
        raise BadRequest(f"{key} for a model of named inputs {names} must be records or an object")  # fmt: skip
    return {names[0]: value}


def _one_column(rows: list[Any], signature: Signature) -> Any:
    """Table rows for a one-tensor model; a one-column table of a 1-D input is that column."""
    if len(signature.inputs[0].shape) == 1 and all(isinstance(r, list) and len(r) == 1 for r in rows):  # fmt: skip
        return [r[0] for r in rows]
    return rows


def _typed(spec: TensorSpec, values: Any) -> np.ndarray:
    """JSON values as an array of the spec's dtype, by the V2 codec's rules for JSON data.

    A JSON number has no width: 0.1 for a float32 input is the nearest float32, as in a
    V2 request, while a value out of range, a fraction for an integer, a boolean for a
    number or a number for a string is refused. ``null`` is NaN in a float input and a
    missing value elsewhere (refused unless the input is nullable).
    """
    grid = np.array(values, dtype=object)
    flat = grid.ravel().tolist()
    if any(isinstance(v, (list, dict)) for v in flat):
        raise BadRequest(f"input {spec.name!r} is ragged or nested deeper than its values")
    shape = tuple(grid.shape)
    if spec.dtype == "str" or spec.dtype.startswith("datetime"):
        bad = next((v for v in flat if not isinstance(v, str) and v is not None), None)
        if bad is not None:
            raise BadRequest(f"input {spec.name!r} expects strings, got {bad!r:.40}")
        return grid  # datetimes are parsed as for V2, by the model (``model.parse_datetimes``)
    datatype = V2_DATATYPES[spec.dtype]
    if None in flat:
        if spec.dtype.startswith("float"):
            flat = [math.nan if v is None else v for v in flat]
        elif spec.nullable:
            return grid  # the signature decides what a missing value becomes
        else:
            raise BadRequest(f"input {spec.name!r} has a missing value (null) but is not nullable")
    return json_tensor(spec.name, datatype, shape, flat)


def _plain(arr: np.ndarray) -> Any:
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        out = arr.astype(object)
        out[~np.isfinite(arr)] = None  # JSON has no NaN or Infinity; MLflow sends null
        return out.tolist()
    if arr.dtype.kind in "SO":
        return np.vectorize(_text, otypes=[object])(arr).tolist() if arr.size else arr.tolist()
    if arr.dtype.kind == "M":
        return np.datetime_as_string(arr).tolist()
    return arr.tolist()


def _text(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def encode_predictions(outputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
    """``{"predictions": ...}`` shaped as MLflow's scoring server shapes it."""
    plain = {k: _plain(np.asarray(v)) for k, v in outputs.items()}
    if signature.output_kind == "dataframe":
        rows = len(next(iter(plain.values()))) if plain else 0
        records = [{k: v[i] for k, v in plain.items()} for i in range(rows)]
        return orjson.dumps({"predictions": records})
    if len(plain) == 1:
        return orjson.dumps({"predictions": next(iter(plain.values()))})
    return orjson.dumps({"predictions": plain})


class MLflow(WireProtocol):
    """``POST /invocations``: MLflow's four JSON formats in, ``{"predictions": ...}`` out."""

    endpoint = "invocations"
    inference_paths = ("/invocations",)

    def match(self, path: str) -> Target | None:
        return (None, None) if path == "/invocations" else None

    def decode(self, body: bytes, headers: Mapping[bytes, bytes], model: Served) -> tuple[Arrays, Any]:  # fmt: skip
        return decode_invocation(body, model.signature), None

    def encode(self, outputs: Mapping[str, np.ndarray], request: Any, model: Served) -> tuple[bytes, Headers]:  # fmt: skip
        return encode_predictions(outputs, model.signature), JSON_HEADERS

    def openapi_paths(self, models: Sequence[Predictor], latest: Mapping[str, Predictor]) -> dict[str, Any]:  # fmt: skip
        if len(latest) != 1:
            return {}
        schema = {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "dataframe_split": {"type": "object"},
                "dataframe_records": {"type": "array"},
                "instances": {},
                "inputs": {},
            },
        }
        return {
            "/invocations": {
                "post": {
                    **operation("MLflow scoring protocol", *INFER_ERRORS, secured=True),
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": schema}},
                    },
                }
            }
        }
