"""Reading and writing model inputs and outputs as files: JSON, CSV, Parquet, NumPy.

Used by ``tiffin predict``. JSON may be a tiffin example file (typed), a list of rows,
a list of records (objects), an object of columns, or ``{"inputs": ...}``.

Text formats (CSV, JSON) carry numbers as text, not as typed arrays, so they are read
into the signature's dtypes: decimals parse to the signature's float type (``0.1``
becomes the float32 nearest 0.1 for a float32 model), integers to its int type when
every value fits, a string column stays text (``"007"`` is not 7), an int column with
gaps becomes a nullable column rather than floats, and a datetime column is parsed.
Whatever does not convert is left as read, for the signature to refuse by name.
Binary formats (.npy, Parquet) are typed already and go to the signature as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from . import typed_json as examples
from .signature import Signature, named_arrays
from .tensorspec import TensorSpec, masked_dtype

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
    from .tensorspec import _pandas as pd

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
            text_columns = {s.name: "str" for s in signature.inputs if s.dtype == "str"}
            frame = _pandas().read_csv(
                path, dtype=text_columns if signature.input_kind == "dataframe" else None
            )
            return _frame_to_kind(_typed_frame(frame, signature), signature)
        if fmt == "parquet":
            frame = _pandas().read_parquet(path)
            return _frame_to_kind(frame, signature)
        raw = json.loads(path.read_bytes())
    except UsageError:
        raise
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot read {path} as {fmt}: {exc}", where=str(path)) from None
    return _json_to_kind(raw, signature, path)


def _from_text(values: Any, spec: TensorSpec) -> Any:
    """Numbers read from text, in the spec's dtype where no value changes (see above)."""
    if spec.dtype == "str" or spec.dtype.startswith("datetime"):
        return values
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        return values  # ragged: the signature names the problem
    target = np.dtype(spec.dtype)
    if arr.size == 0:
        # No rows (a header-only CSV, a JSON []): no value to lose; [] has the row shape.
        rest = spec.shape[1:]
        if arr.ndim == 1 and rest and all(d >= 0 for d in rest):
            arr = arr.reshape((0, *rest))
        return arr.astype(target)
    if arr.dtype.kind not in "biuf" or arr.dtype == target:
        return values
    if target.kind == "f" and arr.dtype.kind in "iuf":
        return arr.astype(target)
    if target.kind in "iu" and arr.dtype.kind in "iu":
        with np.errstate(all="ignore"):
            cast = arr.astype(target)
        return cast if np.array_equal(cast.astype(arr.dtype), arr) else values
    return values


def _typed_frame(frame: Any, signature: Signature) -> Any:
    """The columns of a frame read from text, in the signature's dtypes where they convert."""
    pd = _pandas()
    by_name = {s.name: s for s in signature.inputs}
    if signature.input_kind != "dataframe":
        return frame
    frame = frame.copy()
    for name in frame.columns:
        spec = by_name.get(name)
        if spec is None:
            continue  # unknown columns are the signature's to name
        col = frame[name]
        if len(col) == 0 and spec.dtype != "str":
            frame[name] = col.astype(spec.dtype)  # a header-only file: typed, empty
        elif spec.dtype.startswith("datetime") and col.dtype.kind in "OU":
            try:
                frame[name] = pd.to_datetime(col)
            except (ValueError, TypeError):
                pass
        elif spec.dtype != "str" and bool(col.isna().any()) and spec.nullable:
            if np.dtype(spec.dtype).kind in "biu":
                try:  # 3.0 and NaN (a gap made the column float) -> 3 and <NA>
                    frame[name] = col.astype(masked_dtype(np.dtype(spec.dtype)))
                except (ValueError, TypeError):
                    pass
            else:
                frame[name] = _from_text(col.to_numpy(), spec)
        elif spec.dtype != "str":
            converted = _from_text(col.to_numpy(), spec)
            if isinstance(converted, np.ndarray):
                frame[name] = converted
    return frame


def _frame_to_kind(frame: Any, signature: Signature) -> Any:
    if signature.input_kind == "dataframe":
        return frame
    if signature.input_kind == "dict":
        specs = {s.name: s for s in signature.inputs}
        return {
            c: _from_text(frame[c].to_numpy(), specs[c]) if c in specs else frame[c].to_numpy()
            for c in frame.columns
        }
    if signature.input_kind == "strings":
        return [str(v) for v in frame.iloc[:, 0]]
    return _from_text(frame.to_numpy(), signature.inputs[0])


def _json_to_kind(raw: Any, signature: Signature, path: Path) -> Any:
    if isinstance(raw, dict) and "kind" in raw:
        return examples.decode(raw)  # typed already
    if isinstance(raw, dict) and "inputs" in raw and len(raw) == 1:
        raw = raw["inputs"]
    if signature.input_kind == "dataframe":
        pd = _pandas()
        if isinstance(raw, list) and raw and isinstance(raw[0], dict):
            return _typed_frame(pd.DataFrame.from_records(raw), signature)
        if isinstance(raw, dict):
            return _typed_frame(pd.DataFrame(raw), signature)
        if isinstance(raw, list):
            return _typed_frame(pd.DataFrame(raw, columns=signature.input_names()), signature)
        raise UsageError(f"{path}: expected records or columns for a DataFrame model")
    if signature.input_kind == "dict":
        if not isinstance(raw, dict):
            raise UsageError(
                f"{path}: expected an object of named inputs {signature.input_names()}"
            )
        specs = {s.name: s for s in signature.inputs}
        return {k: _from_text(v, specs[k]) if k in specs else v for k, v in raw.items()}
    if signature.input_kind == "tensor":
        return _from_text(raw, signature.inputs[0])
    return raw


def empty_output(signature: Signature) -> Any:
    """The output for an input with no rows: the Python API's answer, ``Signature.no_rows()``.

    Many models refuse an empty batch (scikit-learn needs one sample); an empty input
    file still has a well-defined answer, zero rows of each declared output, in the
    output's kind (an array, a dict of arrays, a DataFrame). A ``strings`` output is an
    empty text array rather than ``[]``: a list carries no dtype, and a file written from
    it would hold a float column where the model answers text.
    """
    if not signature.outputs or not signature.batchable:
        raise UsageError(
            "the input has no rows, and the signature has "
            + ("no outputs" if not signature.outputs else "no batch axis")
            + " to shape an empty answer from",
            where="--input",
            fix="give at least one row, or check the input file",
        )
    if signature.output_kind == "strings":
        return np.empty((0,), dtype=object)
    return signature.no_rows()


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


def check_output_path(path: Path, fmt: str | None = None) -> None:
    """Refuse an output path that cannot be written, before any prediction runs."""
    format_of(path, fmt)
    if not path.parent.is_dir():
        raise UsageError(f"the folder of output {path} does not exist", fix="create it first")
    if path.is_dir():
        raise UsageError(f"output {path} is a folder", fix="give a file name")


def write_output(output: Any, path: Path | None, fmt: str | None = None) -> bytes | None:
    """Write ``output`` to ``path`` (or return JSON bytes for stdout when path is None).

    The file is written beside ``path`` and renamed into place, so a failed or
    interrupted write never leaves half an output file.
    """
    arrays = named_arrays(output)
    if path is None or format_of(path, fmt) == "json":
        data = {k: _jsonable(v) for k, v in arrays.items()}
        body = json.dumps(data if len(data) > 1 else next(iter(data.values()))).encode() + b"\n"
        if path is None:
            return body
        _atomic(path, lambda tmp: tmp.write_bytes(body))
        return None
    fmt = format_of(path, fmt)
    if fmt == "npy":
        if len(arrays) != 1:
            raise UsageError(
                "the model has several outputs; .npy holds one", fix="use .json or .parquet"
            )
        only = np.asarray(next(iter(arrays.values())))
        if only.dtype.kind == "O":
            # An object .npy is a pickle; text labels become a plain string array.
            if not all(isinstance(v, str) for v in only.ravel().tolist()):
                raise UsageError(
                    "the output holds Python objects, which .npy can only store as pickle",
                    fix="use .json, .csv or .parquet",
                )
            only = only.astype(str)
        _atomic(path, lambda tmp: np.save(tmp, only, allow_pickle=False))
        return None
    pd = _pandas()
    cols: dict[str, Any] = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.ndim <= 1:
            cols[name] = _column(arr)
        else:
            flat = arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))
            for j in range(flat.shape[1]):
                cols[f"{name}_{j}"] = _column(flat[:, j])
    frame = pd.DataFrame(cols)
    if fmt == "csv":
        _atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return None


def _column(values: np.ndarray) -> Any:
    # An empty object column has no values to tell its type by, and Parquet would store it
    # as null; text is what an object or str output holds, so it is written as text.
    if len(values) == 0 and values.dtype.kind in "OU":
        return _pandas().array(values, dtype="string")
    return values


def _atomic(path: Path, write: Any) -> None:
    # The suffix stays last: np.save appends ".npy" to a name that does not end in it.
    tmp = path.with_name(f".{path.stem}.tiffin-tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}", where=str(path)) from None
    finally:
        # A folder that cannot be written (or is a file) refuses the unlink too; the
        # error that counts is the one above.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


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
