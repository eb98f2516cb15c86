"""The Open Inference Protocol's tensor codec: JSON and binary tensors to arrays and back.

Requests carry a JSON header, optionally followed by raw tensor bytes when the
``Inference-Header-Content-Length`` header says where the JSON ends; each input then
names its ``binary_data_size``. BYTES elements are length-prefixed (4-byte little-endian)
in binary form. Responses mirror this: outputs go binary when the request asks for it
(``binary_data_output`` or per-output ``binary_data``). JSON values become arrays by
``json_tensor``'s rules, which MLflow's ``/invocations`` shares.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from ..errors import BadRequest

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}


_V2_NAMES = {dtype: name for name, dtype in DTYPES.items() if name != "BYTES"}
_WANTED = {"b": "booleans", "f": "numbers", "i": "integers", "u": "integers"}
_JSON_TYPES: dict[str, frozenset[type]] = {
    "b": frozenset({bool}), "f": frozenset({int, float}), "i": frozenset({int}), "u": frozenset({int}),
}  # fmt: skip


def datatype_of(arr: np.ndarray) -> str:
    if arr.dtype.kind in "OUS":
        return "BYTES"
    # a big-endian array (a model may build one from raw bytes) is the same V2 type
    name = _V2_NAMES.get(arr.dtype) or _V2_NAMES.get(arr.dtype.newbyteorder("="))
    if name is not None:
        return name
    # the model's fault, not the client's: a 500 (TypeError), never a 400
    raise TypeError(f"the model returned dtype {arr.dtype}, which V2 cannot carry")


def _parse_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


MAX_DIMS = 64  # NumPy's limit on an array's dimensions


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(type(d) is int and d >= 0 for d in raw):
        raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers")
    if len(raw) > MAX_DIMS:
        raise BadRequest(f"input {name!r}: shape has {len(raw)} dimensions; at most {MAX_DIMS} are possible")  # fmt: skip
    # A tensor with a zero dimension holds no values whatever its other dimensions say,
    # so [0, 2**62, 2**62] passes the value count; NumPy still refuses to make it (a
    # ValueError, once a 500). 8 bytes is the widest element (INT64, FP64, BYTES objects);
    # without a zero, the value count (or the binary size) refuses a shape this large.
    if 0 in raw and math.prod(d for d in raw if d) * 8 > np.iinfo(np.intp).max:
        raise BadRequest(f"input {name!r}: shape {raw} is larger than any tensor can be")
    return tuple(raw)


def _flatten(data: Any, shape: tuple[int, ...], name: str) -> list[Any]:
    """Row-major flatten of V2 data: flat, or nested exactly as ``shape`` says.

    Nested data must follow the shape level by level (``[[1, 2], [3, 4, 5, 6]]`` is not
    a [2, 3] tensor, even with six values): a ragged or mis-nested body is the client's
    bug, and flattening it anyway would feed the model rows it never sent.
    """
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    lengths = [len(data)]
    while stack:
        depth = len(stack) - 1
        for item in stack[-1]:
            if isinstance(item, list):
                if depth + 1 >= len(shape):
                    raise BadRequest(
                        f"input {name!r}: data is nested deeper than shape {list(shape)}"
                    )
                stack.append(iter(item))
                lengths.append(len(item))
                break
            if depth != len(shape) - 1:
                raise BadRequest(f"input {name!r}: nested data does not follow shape {list(shape)}")
            flat.append(item)
        else:
            stack.pop()
            if lengths.pop() != shape[depth]:
                raise BadRequest(
                    f"input {name!r}: nested data does not follow shape {list(shape)} "
                    f"(a list at depth {depth} has the wrong length)"
                )
    return flat


def _decode_bytes_elements(raw: bytes, count: int, name: str) -> np.ndarray:
    if count * 4 > len(raw):  # checked before allocating: the shape is the client's word
        raise BadRequest(f"input {name!r}: {len(raw)} bytes cannot hold {count} BYTES elements")
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(raw):
            raise BadRequest(f"input {name!r}: BYTES data ends early")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadRequest(f"input {name!r}: BYTES element {i} runs past the data")
        out[i] = raw[offset : offset + length]
        offset += length
    if offset != len(raw):
        raise BadRequest(f"input {name!r}: {len(raw) - offset} trailing bytes after the BYTES data")
    return out


def json_tensor(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    count = math.prod(shape)
    flat = _flatten(data, shape, name)
    if len(flat) != count:
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} needs {count} values, got {len(flat)}"
        )
    if datatype == "BYTES":
        arr = np.empty(count, dtype=object)
        for i, v in enumerate(flat):
            if not isinstance(v, str):
                raise BadRequest(
                    f"input {name!r}: BYTES values must be strings, got {type(v).__name__}"
                )
            arr[i] = v
        return arr.reshape(shape)
    dtype = DTYPES[datatype]
    allowed = _JSON_TYPES[dtype.kind]
    # type() tells bool from int (isinstance does not): true is no FP32 value. One set of
    # the types present is a C-speed check; the loop below only finds the culprit.
    if not set(map(type, flat)) <= allowed:
        for v in flat:
            if type(v) in allowed:
                continue
            if dtype.kind in "iu" and type(v) is float and abs(v) >= 2**63:
                # orjson reads an integer beyond 64 bits as a float: the client did send
                # an integer, only one too large ("needs integers" would mislead)
                raise BadRequest(f"input {name!r}: a value does not fit {datatype}: {v:.6g}")
            raise BadRequest(
                f"input {name!r}: {datatype} needs {_WANTED[dtype.kind]}, got {v!r:.40}"
            )
    try:
        if dtype.kind == "f" and dtype.itemsize < 8:  # 1e300 does not fit FP32: refuse, not inf
            with np.errstate(over="raise"):
                arr = np.array(flat, dtype=dtype)
        else:  # a Python float always fits FP64; NumPy refuses an int out of range itself
            arr = np.array(flat, dtype=dtype)
    except (OverflowError, FloatingPointError, ValueError) as exc:
        raise BadRequest(f"input {name!r}: a value does not fit {datatype}: {exc}") from None
    return arr.reshape(shape)


def decode_request(
    body: bytes, header_length: int | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Parse a V2 infer request into named arrays and the request's JSON header."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise BadRequest("Inference-Header-Content-Length is larger than the body")
        header, binary = body[:header_length], body[header_length:]
    else:
        header, binary = body, b""
    request = _parse_json(header)
    if (
        not isinstance(request, dict)
        or not isinstance(request.get("inputs"), list)
        or not request["inputs"]
    ):
        raise BadRequest("the request needs a non-empty 'inputs' list")
    requested_outputs(request, _flag(request, "binary_data_output", False, "the request"))
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request["inputs"]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequest("each input needs a string 'name'")
        key = tensor["name"]
        # the messages quote the client's name, but never more of it than a reader needs
        name = key if len(key) <= 100 else key[:100] + "..."
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str) or datatype not in DTYPES:
            raise BadRequest(
                f"input {name!r}: unknown datatype {datatype!r:.40}; use one of {', '.join(DTYPES)}"
            )
        if key in arrays:
            raise BadRequest(f"input {name!r} is given twice")
        shape = _shape(tensor.get("shape"), name)
        size = None
        if "parameters" in tensor:  # the message is only built when there is one to check
            size = _parameters(tensor, f"input {name!r}").get("binary_data_size")
        if size is not None and "data" in tensor:
            # which one would the client mean? Using either would answer a question
            # that may not be the one asked
            raise BadRequest(f"input {name!r} has both 'data' and binary_data_size; send one")  # fmt: skip
        if size is not None:
            if type(size) is not int or size < 0:
                raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer (bytes), got {size!r}")  # fmt: skip
            if offset + size > len(binary):
                raise BadRequest(f"input {name!r}: binary_data_size runs past the body")
            raw = binary[offset : offset + size]
            offset += size
            count = math.prod(shape)
            if datatype == "BYTES":
                arrays[key] = _decode_bytes_elements(raw, count, name).reshape(shape)
            else:
                dtype = DTYPES[datatype]
                if len(raw) != count * dtype.itemsize:
                    raise BadRequest(
                        f"input {name!r}: {len(raw)} bytes do not make shape {list(shape)} of {datatype}"
                    )
                if datatype == "BOOL" and raw.translate(None, b"\x00\x01"):
                    # a byte other than 0 or 1 is not a boolean; numpy would keep it as is
                    raise BadRequest(f"input {name!r}: BOOL binary data holds bytes other than 0 and 1")  # fmt: skip
                arrays[key] = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)
        else:
            if "data" not in tensor:
                raise BadRequest(f"input {name!r} has neither 'data' nor binary_data_size")
            arrays[key] = json_tensor(name, datatype, shape, tensor["data"])
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )
    return arrays, request


def _bytes_elements(arr: np.ndarray) -> bytes:
    parts = []
    for v in arr.ravel().tolist():
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(b)) + b)
    return b"".join(parts)


def _json_data(arr: np.ndarray) -> list[Any]:
    if arr.dtype.kind in "OUS":
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in arr.ravel().tolist()
        ]
    # NaN and infinities need no pass of their own: orjson writes them as null
    return arr.ravel().tolist()  # type: ignore[no-any-return]


def _parameters(item: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    params = item.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"'parameters' of {where} must be an object")
    return params


def _flag(item: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = _parameters(item, where).get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} of {where} must be true or false, got {value!r:.40}")
    return value


def requested_outputs(request: Mapping[str, Any], binary_default: bool) -> list[tuple[str, bool]]:
    """The request's ``outputs`` as (name, binary) pairs, checked; [] means every output.

    Checked before the model runs, so a malformed list costs no predict call.
    """
    wanted = request.get("outputs")
    if wanted is None:
        return []
    if not isinstance(wanted, list):
        raise BadRequest("'outputs' must be a list of {'name': ...} objects")
    selected: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for item in wanted:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each requested output needs a string 'name'")
        name = item["name"]
        if name in seen:
            raise BadRequest(f"output {name!r:.80} is requested twice")
        seen.add(name)
        selected.append((name, _flag(item, "binary_data", binary_default, f"output {name!r:.80}")))
    return selected


def encode_response(
    outputs: Mapping[str, np.ndarray],
    request: Mapping[str, Any],
    model: str,
    version: str,
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when binary outputs follow."""
    binary_default = _flag(request, "binary_data_output", False, "the request")
    selected: list[tuple[str, bool]] = []
    for name, binary in requested_outputs(request, binary_default):
        if name not in outputs:
            raise BadRequest(f"unknown output {name!r:.80}; the model gives {sorted(outputs)}")
        selected.append((name, binary))
    if not selected:
        selected = [(name, binary_default) for name in outputs]
    tensors, blobs = [], []
    for name, binary in selected:
        arr = np.asarray(outputs[name])
        if arr.dtype.kind == "M":  # datetimes are BYTES in the signature: ISO 8601 text
            arr = np.datetime_as_string(arr).astype(object)
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(arr),
            "shape": list(arr.shape),
        }
        if binary:
            blob = (
                _bytes_elements(arr)
                if entry["datatype"] == "BYTES"
                else np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(arr)
        tensors.append(entry)
    body: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": tensors}
    if isinstance(request.get("id"), str):
        body["id"] = request["id"]
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
