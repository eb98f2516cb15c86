"""MLflow's scoring formats on ``POST /invocations``: dataframe_split, dataframe_records,
instances and inputs in; ``{"predictions": ...}`` out, as MLflow's scoring server answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..signature import Signature, _is_frame, named_arrays
from .codec import BadRequest

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode_invocation(body: bytes, signature: Signature) -> Any:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"the body must be a JSON object with one of {', '.join(FORMATS)}")
    keys = [k for k in FORMATS if k in payload]
    if len(keys) != 1:
        raise BadRequest(f"give exactly one of {', '.join(FORMATS)}; got {sorted(payload)}")
    key, value = keys[0], payload[keys[0]]
    kind = signature.input_kind
    names = signature.input_names()
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadRequest("dataframe_split needs {'columns': [...], 'data': [[...], ...]}")
        columns = value.get("columns") or (names if kind == "dataframe" else None)
        if kind == "dataframe":
            return _frame(value["data"], columns)
        if kind == "dict":
            if not isinstance(columns, list):
                raise BadRequest("dataframe_split needs 'columns' for a model with named inputs")
            return {c: [row[i] for row in value["data"]] for i, c in enumerate(columns)}
        return value["data"]
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise BadRequest("dataframe_records needs a list of objects")
        if kind == "dataframe":
            return _frame_records(value)
        if kind == "dict":
            return {n: [r.get(n) for r in value] for n in names}
        cols = list(value[0]) if value else []
        return [[r.get(c) for c in cols] for r in value]
    # instances / inputs: a list (tensor) or an object of named lists
    if kind == "dataframe":
        if isinstance(value, dict):
            return _frame_columns(value)
        if isinstance(value, list) and all(isinstance(r, dict) for r in value):
            return _frame_records(value)
        raise BadRequest(f"{key} for a DataFrame model must be records or an object of columns")
    if kind == "strings" and isinstance(value, list):
        return value
    return value


def _pd() -> Any:
    import pandas as pd

    return pd


def _frame(data: list[Any], columns: Any) -> Any:
    try:
        return _pd().DataFrame(data, columns=columns)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"cannot build a DataFrame: {exc}") from None


def _frame_records(records: list[dict[str, Any]]) -> Any:
    try:
        return _pd().DataFrame.from_records(records)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"cannot build a DataFrame: {exc}") from None


def _frame_columns(columns: dict[str, Any]) -> Any:
    try:
        return _pd().DataFrame(columns)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"cannot build a DataFrame: {exc}") from None


def _plain(arr: Any) -> Any:
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        arr = np.where(np.isfinite(arr), arr, None)
    if arr.dtype.kind == "S":
        return [v.decode("utf-8", "replace") for v in arr.ravel().tolist()]
    return arr.tolist()


def encode_predictions(output: Any) -> bytes:
    if _is_frame(output):
        records = output.to_dict(orient="records")
        return orjson.dumps({"predictions": records}, option=orjson.OPT_SERIALIZE_NUMPY)
    arrays = named_arrays(output)
    if len(arrays) == 1:
        return orjson.dumps({"predictions": _plain(next(iter(arrays.values())))})
    return orjson.dumps({"predictions": {k: _plain(v) for k, v in arrays.items()}})
