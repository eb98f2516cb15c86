"""The V2 tensor codec: JSON (nested and flat), every datatype, the binary extension."""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiffin.serve.errors import BadRequest
from tiffin.serve.protocols import v2_codec


def _request(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


@pytest.mark.parametrize(
    ("datatype", "values", "dtype"),
    [
        ("BOOL", [True, False], np.bool_),
        ("UINT8", [0, 255], np.uint8),
        ("UINT16", [0, 65535], np.uint16),
        ("UINT32", [0, 2**32 - 1], np.uint32),
        ("UINT64", [0, 2**64 - 1], np.uint64),
        ("INT8", [-128, 127], np.int8),
        ("INT16", [-(2**15), 2**15 - 1], np.int16),
        ("INT32", [-(2**31), 2**31 - 1], np.int32),
        ("INT64", [-(2**63), 2**63 - 1], np.int64),
        ("FP16", [0.5, -2.0], np.float16),
        ("FP32", [1.5, 3], np.float32),
        ("FP64", [1e300, -0.25], np.float64),
    ],
)
def test_every_numeric_datatype_in_json_and_binary(datatype: str, values: list[Any], dtype: Any) -> None:  # fmt: skip
    arrays, _ = v2_codec.decode_request(
        _request({"name": "x", "datatype": datatype, "shape": [2], "data": values}), None
    )
    assert arrays["x"].dtype == dtype and arrays["x"].tolist() == values
    raw = np.array(values, dtype=dtype).astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    head = _request(
        {"name": "x", "datatype": datatype, "shape": [2], "parameters": {"binary_data_size": len(raw)}}
    )  # fmt: skip
    arrays, _ = v2_codec.decode_request(head + raw, len(head))
    assert arrays["x"].dtype == dtype and arrays["x"].tolist() == values
    for binary in (False, True):
        params = {"binary_data_output": binary}
        body, json_len = v2_codec.encode_response(
            {"y": arrays["x"]}, {"parameters": params}, "m", "1"
        )
        head = orjson.loads(body[:json_len] if json_len else body)
        out = head["outputs"][0]
        assert out["datatype"] == datatype and out["shape"] == [2]
        if binary:
            assert json_len is not None and out["parameters"]["binary_data_size"] == len(raw)
            assert body[json_len:] == raw
        else:
            assert json_len is None and out["data"] == values


def test_nested_and_flat_data_are_the_same_tensor() -> None:
    flat = {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}
    nested = {**flat, "data": [[1, 2, 3], [4, 5, 6]]}
    a, _ = v2_codec.decode_request(_request(flat), None)
    b, _ = v2_codec.decode_request(_request(nested), None)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert a["x"].shape == (2, 3)
    scalar, _ = v2_codec.decode_request(
        _request({"name": "x", "datatype": "INT64", "shape": [], "data": 7}), None
    )
    assert scalar["x"].shape == () and scalar["x"].item() == 7
    empty, _ = v2_codec.decode_request(
        _request({"name": "x", "datatype": "FP64", "shape": [0, 3], "data": []}), None
    )
    assert empty["x"].shape == (0, 3)


def test_bytes_tensors_both_ways() -> None:
    arrays, _ = v2_codec.decode_request(
        _request({"name": "s", "datatype": "BYTES", "shape": [2], "data": ["a", "wörld"]}), None
    )
    assert arrays["s"].dtype == object and arrays["s"].tolist() == ["a", "wörld"]
    items = [b"", b"\x00\xff", "é".encode()]
    raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    head = _request(
        {"name": "s", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": len(raw)}}
    )  # fmt: skip
    arrays, _ = v2_codec.decode_request(head + raw, len(head))
    assert arrays["s"].tolist() == items
    out = np.array(["A", b"B", 3], dtype=object)
    body, json_len = v2_codec.encode_response(
        {"o": out}, {"outputs": [{"name": "o", "parameters": {"binary_data": True}}]}, "m", "1"
    )
    assert json_len is not None
    assert body[json_len:] == b"".join(struct.pack("<I", 1) + c for c in (b"A", b"B", b"3"))
    body, _ = v2_codec.encode_response({"o": out}, {}, "m", "1")
    assert orjson.loads(body)["outputs"][0]["data"] == ["A", "B", "3"]


def test_requested_outputs_and_mixed_binary() -> None:
    outputs = {"a": np.arange(3, dtype=np.int64), "b": np.ones(2, np.float32)}
    request = {
        "id": "r1",
        "outputs": [{"name": "b", "parameters": {"binary_data": True}}, {"name": "a"}],
    }
    body, json_len = v2_codec.encode_response(outputs, request, "m", "2")
    assert json_len is not None
    head = orjson.loads(body[:json_len])
    assert head["id"] == "r1" and head["model_name"] == "m" and head["model_version"] == "2"
    assert [o["name"] for o in head["outputs"]] == ["b", "a"]
    assert head["outputs"][1]["data"] == [0, 1, 2]
    assert body[json_len:] == np.ones(2, np.float32).tobytes()
    with pytest.raises(BadRequest, match="unknown output 'c'"):
        v2_codec.encode_response(outputs, {"outputs": [{"name": "c"}]}, "m", "2")


def test_non_finite_outputs_are_null_in_json() -> None:
    body, _ = v2_codec.encode_response({"y": np.array([1.0, np.nan, np.inf])}, {}, "m", "1")
    assert orjson.loads(body)["outputs"][0]["data"] == [1.0, None, None]


def test_a_big_endian_output_is_its_v2_type_in_json_and_little_endian_in_binary() -> None:
    out = {"y": np.array([1.5, -2.0], dtype=">f4")}
    body, _ = v2_codec.encode_response(out, {}, "m", "1")
    assert orjson.loads(body)["outputs"][0] == {
        "name": "y", "datatype": "FP32", "shape": [2], "data": [1.5, -2.0]
    }  # fmt: skip
    body, json_len = v2_codec.encode_response(out, {"parameters": {"binary_data_output": True}}, "m", "1")  # fmt: skip
    assert json_len is not None
    assert np.frombuffer(body[json_len:], "<f4").tolist() == [1.5, -2.0]


@pytest.mark.parametrize("bad", [True, None, "1", [1.0]])
def test_a_float_tensor_names_the_one_value_that_is_not_a_number(bad: object) -> None:
    data = [0.5, 1, 2.5, bad, 3.0]
    tensor = {"name": "x", "datatype": "FP32", "shape": [5], "data": data}
    with pytest.raises(BadRequest, match=re.escape(f"FP32 needs numbers, got {bad!r}")):
        v2_codec.decode_request(orjson.dumps({"inputs": [tensor]}), None)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "x", "datatype": "FP16", "shape": [1], "data": [1e6]}, "does not fit FP16"),
        ({"name": "x", "datatype": "UINT8", "shape": [1], "data": [-1]}, "does not fit UINT8"),
        ({"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}, "needs integers"),
        ({"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}, "needs booleans"),
        ({"name": "x", "datatype": "FP32", "shape": [1], "data": ["1"]}, "needs numbers"),
        ({"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}, "must be strings"),
        ({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}, "needs 4 values"),
        ({"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}, "non-negative"),
        ({"name": "x", "datatype": "FP32", "shape": [10**12, 10**12], "data": [1]}, "needs 1"),
        ({"name": "x", "datatype": "FP8", "shape": [1], "data": [1]}, "unknown datatype"),
        ({"name": "x", "datatype": {}, "shape": [1], "data": [1]}, "unknown datatype"),  # was a 500
        ({"name": "x", "datatype": ["FP32"], "shape": [1], "data": [1]}, "unknown datatype"),
        ({"name": "x", "datatype": "FP32", "shape": [1]}, "neither 'data' nor"),
        ({"datatype": "FP32", "shape": [1], "data": [1]}, "string 'name'"),
    ],
)
def test_bad_tensors(tensor: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        v2_codec.decode_request(_request(tensor), None)


def test_bad_binary_framing() -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
    head = _request(tensor)
    with pytest.raises(BadRequest, match="runs past the body"):
        v2_codec.decode_request(head + b"\x00" * 4, len(head))
    with pytest.raises(BadRequest, match="not claimed"):
        v2_codec.decode_request(head + b"\x00" * 12, len(head))
    with pytest.raises(BadRequest, match="larger than the body"):
        v2_codec.decode_request(head, len(head) + 1)
    wrong = _request({**tensor, "parameters": {"binary_data_size": 4}})
    with pytest.raises(BadRequest, match="do not make shape"):
        v2_codec.decode_request(wrong + b"\x00" * 4, len(wrong))
    for size in (-8, 8.0, "8", True):
        odd = _request({**tensor, "parameters": {"binary_data_size": size}})
        with pytest.raises(BadRequest, match="must be a non-negative integer"):
            v2_codec.decode_request(odd + b"\x00" * 8, len(odd))
    # A BYTES shape far larger than its data is refused before anything is allocated.
    huge = _request({"name": "s", "datatype": "BYTES", "shape": [10**12], "parameters": {"binary_data_size": 4}})  # fmt: skip
    with pytest.raises(BadRequest, match="cannot hold"):
        v2_codec.decode_request(huge + b"\x00" * 4, len(huge))
    short = _request({"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}})  # fmt: skip
    with pytest.raises(BadRequest, match="runs past the data"):
        v2_codec.decode_request(short + struct.pack("<I", 9) + b"ab", len(short))


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"inputs": []}', b'{"inputs": {}}', b"[" * 150_000 + b"]" * 150_000],
)
def test_malformed_documents(body: bytes) -> None:
    with pytest.raises(BadRequest):
        v2_codec.decode_request(body, None)


def test_repeated_input_names() -> None:
    x = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}
    with pytest.raises(BadRequest, match="given twice"):
        v2_codec.decode_request(_request(x, x), None)


@pytest.mark.parametrize(
    "data",
    [
        [[1, 2], [3, 4, 5, 6]],  # six values, but not two rows of three
        [[1, 2, 3], [4, 5, [6]]],  # mixed depth
        [[[1, 2, 3, 4, 5, 6]]],  # deeper than the shape
        [[1, 2, 3], 4, 5, 6],  # a row, then loose values
    ],
)
def test_nested_data_must_follow_the_shape(data: list[Any]) -> None:
    """Flattening a mis-nested body would feed the model rows the client never sent."""
    body = _request({"name": "x", "datatype": "FP64", "shape": [2, 3], "data": data})
    with pytest.raises(BadRequest, match="shape"):
        v2_codec.decode_request(body, None)


def test_nested_data_with_empty_dimensions() -> None:
    body = _request({"name": "x", "datatype": "FP64", "shape": [2, 0], "data": [[], []]})
    assert v2_codec.decode_request(body, None)[0]["x"].shape == (2, 0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"outputs": [{"name": "y", "parameters": "binary"}]}, "must be an object"),
        ({"outputs": [{"name": "y"}, {"name": "y"}]}, "requested twice"),
        ({"outputs": {"name": "y"}}, "must be a list"),
        ({"outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]}, "true or false"),
        ({"parameters": {"binary_data_output": 1}}, "true or false"),
        ({"parameters": "binary"}, "must be an object"),
    ],
)
def test_malformed_outputs_and_parameters_are_400_before_predict(
    extra: dict[str, Any], message: str
) -> None:
    """Once a 500 (AttributeError on a string 'parameters'), or silently ignored."""
    body = _request({"name": "x", "datatype": "FP64", "shape": [1], "data": [1]}, **extra)
    with pytest.raises(BadRequest, match=message):
        v2_codec.decode_request(body, None)


def test_input_parameters_must_be_an_object() -> None:
    tensor = {"name": "x", "datatype": "FP64", "shape": [1], "data": [1], "parameters": [8]}
    with pytest.raises(BadRequest, match="'parameters' of input 'x' must be an object"):
        v2_codec.decode_request(_request(tensor), None)


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(0, 3), min_size=1, max_size=4), regroup=st.integers(1, 4))
def test_nested_data_is_the_shape_or_refused(shape: list[int], regroup: int) -> None:
    """Data nested as the shape decodes to the flat tensor; regrouped otherwise, 400."""
    flat = list(range(math.prod(shape)))
    nested = np.arange(len(flat)).reshape(shape).tolist()
    tensor = {"name": "x", "datatype": "INT64", "shape": shape}
    got = v2_codec.decode_request(_request({**tensor, "data": nested}), None)[0]["x"]
    assert got.shape == tuple(shape) and got.ravel().tolist() == flat
    other = [flat[i : i + regroup] for i in range(0, len(flat), regroup)]
    if other == nested or not flat:
        return  # the regrouping happens to be the shape, or there is nothing to group
    with pytest.raises(BadRequest, match="shape"):
        v2_codec.decode_request(_request({**tensor, "data": other}), None)


def test_binary_bool_holds_only_zero_and_one() -> None:
    header = _request({"name": "b", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}})  # fmt: skip
    ok, _ = v2_codec.decode_request(header + b"\x01\x00\x01", len(header))
    assert ok["b"].tolist() == [True, False, True]
    with pytest.raises(BadRequest, match="other than 0 and 1"):
        v2_codec.decode_request(header + b"\x01\x02\x00", len(header))


def test_datetime_outputs_are_iso_text_and_unservable_ones_a_server_error() -> None:
    """A datetime output (BYTES in the signature) was a 400, blaming the client."""
    when = np.array(["2026-12-01T19:00:00"], dtype="datetime64[ns]")
    body, _ = v2_codec.encode_response({"t": when}, {}, "m", "1")
    out = orjson.loads(body)["outputs"][0]
    assert out["datatype"] == "BYTES" and out["data"] == ["2026-12-01T19:00:00.000000000"]
    binary, length = v2_codec.encode_response({"t": when}, {"parameters": {"binary_data_output": True}}, "m", "1")  # fmt: skip
    assert length is not None and binary[length + 4 :] == b"2026-12-01T19:00:00.000000000"
    with pytest.raises(TypeError, match="cannot carry"):  # answered 500 by the app
        v2_codec.encode_response({"c": np.array([1j])}, {}, "m", "1")


@pytest.mark.parametrize("count", [1, 300])
@pytest.mark.parametrize(
    ("datatype", "largest", "too_large", "too_large_int"),
    [("FP32", 3.4028235e38, 3.4028236e38, 10**39), ("FP16", 65519.0, 65520.0, 65520)],
)
def test_float_overflow_is_refused_from_the_first_value_that_rounds_to_infinity(
    count: int, datatype: str, largest: float, too_large: float, too_large_int: int
) -> None:
    def decode(value: float) -> np.ndarray:
        data = [0.5] * (count - 1) + [value]
        tensor = {"name": "x", "datatype": datatype, "shape": [count], "data": data}
        return v2_codec.decode_request(json.dumps({"inputs": [tensor]}).encode(), None)[0]["x"]

    finite = np.finfo(v2_codec.DTYPES[datatype]).max
    assert decode(largest)[-1] == finite and decode(-largest)[-1] == -finite
    for bad in (too_large, -too_large, too_large_int):
        with pytest.raises(BadRequest, match=f"does not fit {datatype}"):
            decode(bad)
