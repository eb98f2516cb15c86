"""MLflow's scoring formats on ``POST /invocations``.

In: one of ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``),
``dataframe_records`` (``[{column: value}, ...]``), ``instances`` or ``inputs`` (a list,
or an object of named lists). Out: ``{"predictions": ...}`` as MLflow's scoring server
answers: a list for one output, an object of lists for several, records for a
DataFrame output. The request is checked against the signature with the same rules as
in-process ``predict`` (plain JSON numbers may be cast when no value changes), then
goes through the same admission and batching as V2 requests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..signature import Signature
from .codec import BadRequest

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode_invocation(body: bytes, signature: Signature) -> dict[str, np.ndarray]:
    """The request as named arrays, already checked against ``signature``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"the body must be a JSON object with one of {', '.join(FORMATS)}")
    keys = [k for k in FORMATS if k in payload]
    if len(keys) != 1:
        raise BadRequest(f"give exactly one of {', '.join(FORMATS)}; got {sorted(payload)}")
    value = _model_input(keys[0], payload[keys[0]], signature)
    return _named(signature.validate(value), signature)


def _model_input(key: str, value: Any, signature: Signature) -> Any:
    kind = signature.input_kind
    names = signature.input_names()
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadRequest("dataframe_split needs {'columns': [...], 'data': [[...], ...]}")
        columns = value.get("columns")
        rows = value["data"]
        if kind == "dataframe":
            return _frame(lambda pd: pd.DataFrame(rows, columns=columns or names))
        if kind == "dict":
            if not isinstance(columns, list) or not all(isinstance(r, list) for r in rows):
                raise BadRequest("dataframe_split needs 'columns' and list rows for named inputs")
            if any(len(r) != len(columns) for r in rows):
                raise BadRequest("every dataframe_split row needs one value per column")
            return {c: [r[i] for r in rows] for i, c in enumerate(columns)}
        return rows
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise BadRequest("dataframe_records needs a list of objects")
        if kind == "dataframe":
            return _frame(lambda pd: pd.DataFrame.from_records(value))
        columns = list(dict.fromkeys(k for r in value for k in r))
        if kind == "dict":
            return {c: [r.get(c) for r in value] for c in columns}
        return [[r.get(c) for c in columns] for r in value]
    # instances / inputs: a list (one tensor, or records), or an object of named lists
    if kind == "dataframe":
        if isinstance(value, dict):
            return _frame(lambda pd: pd.DataFrame(value))
        if isinstance(value, list) and all(isinstance(r, dict) for r in value):
            return _frame(lambda pd: pd.DataFrame.from_records(value))
        raise BadRequest(f"{key} for a DataFrame model must be records or an object of columns")
    return value


def _frame(build: Any) -> Any:
    import pandas as pd

    try:
        return build(pd)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"cannot build a DataFrame: {exc}") from None


def _named(checked: Any, signature: Signature) -> dict[str, np.ndarray]:
    """The checked model input as the named arrays the server queues."""
    if signature.input_kind == "dataframe":
        return {str(c): checked[c].to_numpy() for c in checked.columns}
    if signature.input_kind == "dict":
        return {str(k): np.asarray(v) for k, v in checked.items()}
    if signature.input_kind == "strings":
        return {signature.inputs[0].name: np.array(checked, dtype=object)}
    return {signature.inputs[0].name: np.asarray(checked)}


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


def encode_predictions(outputs: dict[str, np.ndarray], signature: Signature) -> bytes:
    """``{"predictions": ...}`` shaped as MLflow's scoring server shapes it."""
    plain = {k: _plain(np.asarray(v)) for k, v in outputs.items()}
    if signature.output_kind == "dataframe":
        rows = len(next(iter(plain.values()))) if plain else 0
        records = [{k: v[i] for k, v in plain.items()} for i in range(rows)]
        return orjson.dumps({"predictions": records})
    if len(plain) == 1:
        return orjson.dumps({"predictions": next(iter(plain.values()))})
    return orjson.dumps({"predictions": plain})
