"""Reading and writing model inputs and outputs as files: JSON, CSV, Parquet, NumPy.

Used by ``tiffin predict``. JSON may be a tiffin example file (typed), a list of rows,
a list of records (objects), an object of columns, or ``{"inputs": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import examples
from .errors import UsageError
from .signature import Signature, named_arrays

FORMATS = ("json", "csv", "parquet", "npy")


def format_of(path: Path, given: str | None = None) -> str:
    fmt = (given or path.suffix.lstrip(".")).lower()
    fmt = {"pq": "parquet", "jsonl": "json"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise UsageError(
            f"cannot tell the format of {path}",
            fix=f"use a file ending in .{', .'.join(FORMATS)} or pass --format",
        )
    return fmt


def _pandas() -> Any:
    from .signature import _pandas as pd

    return pd()


def read_input(path: Path, signature: Signature, fmt: str | None = None) -> Any:
    """Read ``path`` into the form the signature's model takes."""
    if not path.is_file():
        raise UsageError(f"input file {path} does not exist")
    fmt = format_of(path, fmt)
    try:
        if fmt == "npy":
            # allow_pickle=False: an object-dtype .npy is a pickle and is refused.
            return np.load(path, allow_pickle=False)
        if fmt == "csv":
            frame = _pandas().read_csv(path)
            return _frame_to_kind(frame, signature)
        if fmt == "parquet":
            frame = _pandas().read_parquet(path)
            return _frame_to_kind(frame, signature)
        raw = json.loads(path.read_bytes())
    except UsageError:
        raise
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot read {path} as {fmt}: {exc}", where=str(path)) from None
    return _json_to_kind(raw, signature, path)


def _frame_to_kind(frame: Any, signature: Signature) -> Any:
    if signature.input_kind == "dataframe":
        return frame
    if signature.input_kind == "dict":
        return {c: frame[c].to_numpy() for c in frame.columns}
    if signature.input_kind == "strings":
        return [str(v) for v in frame.iloc[:, 0]]
    return frame.to_numpy()


def _json_to_kind(raw: Any, signature: Signature, path: Path) -> Any:
    if isinstance(raw, dict) and "kind" in raw:
        return examples.decode(raw)
    if isinstance(raw, dict) and "inputs" in raw and len(raw) == 1:
        raw = raw["inputs"]
    if signature.input_kind == "dataframe":
        pd = _pandas()
        if isinstance(raw, list) and raw and isinstance(raw[0], dict):
            return pd.DataFrame.from_records(raw)
        if isinstance(raw, dict):
            return pd.DataFrame(raw)
        if isinstance(raw, list):
            return pd.DataFrame(raw, columns=signature.input_names())
        raise UsageError(f"{path}: expected records or columns for a DataFrame model")
    if signature.input_kind == "dict":
        if not isinstance(raw, dict):
            raise UsageError(
                f"{path}: expected an object of named inputs {signature.input_names()}"
            )
        return raw
    return raw


def batches(inputs: Any, size: int) -> Iterator[Any]:
    """Split an input along its first axis into chunks of ``size`` rows."""
    n = rows(inputs)
    for start in range(0, n, size):
        stop = min(start + size, n)
        if hasattr(inputs, "iloc"):
            yield inputs.iloc[start:stop]
        elif isinstance(inputs, dict):
            yield {k: np.asarray(v)[start:stop] for k, v in inputs.items()}
        else:
            yield inputs[start:stop]


def rows(inputs: Any) -> int:
    if hasattr(inputs, "iloc"):
        return len(inputs)
    if isinstance(inputs, dict):
        return len(np.asarray(next(iter(inputs.values())))) if inputs else 0
    return len(inputs)


def concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if hasattr(first, "iloc"):
        return _pandas().concat(parts, ignore_index=True)
    if isinstance(first, dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in first}
    if isinstance(first, list):
        return [item for p in parts for item in p]
    return np.concatenate([np.asarray(p) for p in parts])


def write_output(output: Any, path: Path | None, fmt: str | None = None) -> bytes | None:
    """Write ``output`` to ``path`` (or return JSON bytes for stdout when path is None)."""
    arrays = named_arrays(output)
    if path is None or format_of(path, fmt) == "json":
        data = {k: _jsonable(v) for k, v in arrays.items()}
        body = json.dumps(data if len(data) > 1 else next(iter(data.values()))).encode() + b"\n"
        if path is None:
            return body
        path.write_bytes(body)
        return None
    fmt = format_of(path, fmt)
    if fmt == "npy":
        if len(arrays) != 1:
            raise UsageError(
                "the model has several outputs; .npy holds one", fix="use .json or .parquet"
            )
        np.save(path, next(iter(arrays.values())), allow_pickle=False)
        return None
    pd = _pandas()
    cols: dict[str, Any] = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.ndim <= 1:
            cols[name] = arr
        else:
            flat = arr.reshape(arr.shape[0], -1)
            for j in range(flat.shape[1]):
                cols[f"{name}_{j}"] = flat[:, j]
    frame = pd.DataFrame(cols)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return None


def _jsonable(arr: Any) -> Any:
    arr = np.asarray(arr)
    if arr.dtype.kind in "OUS":
        return _clean(arr.tolist())
    return _clean(arr.tolist()) if arr.dtype.kind == "f" else arr.tolist()


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null; bytes become text."""
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def read_example(path: Path) -> Any:
    """Read an example input file before any signature exists.

    ``.npy`` is an array, ``.csv``/``.parquet`` a DataFrame; JSON is a tiffin example
    file, a list of rows (array), a list of records (DataFrame), a list of strings, or an
    object of named arrays.
    """
    if not path.is_file():
        raise UsageError(f"example file {path} does not exist")
    fmt = format_of(path)
    try:
        if fmt == "npy":
            return np.load(path, allow_pickle=False)
        if fmt == "csv":
            return _pandas().read_csv(path)
        if fmt == "parquet":
            return _pandas().read_parquet(path)
        raw = json.loads(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot read example {path}: {exc}", where=str(path)) from None
    if isinstance(raw, dict) and "kind" in raw:
        return examples.decode(raw)
    if isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw):
        return raw
    if isinstance(raw, list) and raw and all(isinstance(v, dict) for v in raw):
        return _pandas().DataFrame.from_records(raw)
    if isinstance(raw, dict):
        return {k: np.asarray(v) for k, v in raw.items()}
    return np.asarray(raw)
