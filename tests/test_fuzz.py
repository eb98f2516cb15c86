"""Property and fuzz tests over the readers: no crash other than a TiffinError (or a 4xx).

Counts of inputs run go into SECURITY.md; each test runs Hypothesis's examples.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tiffin
from tiffin import examples
from tiffin.manifest import Manifest
from tiffin.serve import codec
from tiffin.signature import Signature

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2048))
def test_manifest_reader_on_bytes(data: bytes) -> None:
    try:
        Manifest.from_bytes(data)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(json_values)
def test_manifest_reader_on_json(value: Any) -> None:
    try:
        Manifest.from_dict(value)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "version",
                "format_version",
                "runtime",
                "files",
                "metadata",
                "environment",
                "provenance",
                "digest",
                "created",
            ]
        ),
        json_values,
    )
)
def test_manifest_reader_on_near_manifests(value: dict[str, Any]) -> None:
    base = {"format_version": 1, "name": "m", "version": "1", "created": None, "metadata": {}, "runtime": {"flavor": "x"},
            "environment": {}, "provenance": {}, "files": [], "digest": None}  # fmt: skip
    base.update(value)
    try:
        Manifest.from_bytes(json.dumps(base).encode())
    except tiffin.TiffinError:
        pass


@FUZZ
@given(json_values)
def test_signature_documents(value: Any) -> None:
    try:
        Signature.from_dict(value)
    except tiffin.TiffinError:
        pass


SIG = Signature.from_dict(
    {
        "inputs": [
            {"name": "x", "dtype": "float32", "shape": [-1, 3]},
            {"name": "s", "dtype": "str", "shape": [-1]},
        ],
        "input_kind": "dict",
    }
)


@FUZZ
@given(st.dictionaries(st.sampled_from(["x", "s", "y"]), json_values, max_size=3))
def test_signature_enforcement(value: dict[str, Any]) -> None:
    try:
        SIG.validate(value)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(json_values)
def test_examples_codec(value: Any) -> None:
    try:
        examples.decode(value)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(st.binary(max_size=1024), st.one_of(st.none(), st.integers(min_value=-5, max_value=2000)))
def test_v2_codec_on_bytes(body: bytes, header: int | None) -> None:
    try:
        codec.decode_request(body, header)
    except codec.BadRequest:
        pass


tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["x", "s", "input"]), "datatype": st.sampled_from([*codec.DTYPES, "BAD"]),
     "shape": st.lists(st.integers(min_value=-1, max_value=4), max_size=3)},
    optional={"data": json_values, "parameters": st.dictionaries(st.just("binary_data_size"), st.integers(-2, 64))},
)  # fmt: skip


@FUZZ
@given(st.lists(tensor, max_size=3), st.binary(max_size=64))
def test_v2_codec_on_requests(inputs: list[dict[str, Any]], tail: bytes) -> None:
    header = json.dumps({"inputs": inputs}).encode()
    try:
        arrays, _request = codec.decode_request(header + tail, len(header) if tail else None)
    except codec.BadRequest:
        return
    try:
        SIG.from_named_arrays(arrays)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(st.lists(st.binary(max_size=8), max_size=6))
def test_bytes_tensor_round_trip(items: list[bytes]) -> None:
    raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    request = {
        "inputs": [
            {
                "name": "s",
                "datatype": "BYTES",
                "shape": [len(items)],
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    header = json.dumps(request).encode()
    arrays, _ = codec.decode_request(header + raw, len(header))
    assert list(arrays["s"]) == items
    body, json_len = codec.encode_response(
        {"s": arrays["s"]}, {"parameters": {"binary_data_output": True}}, "m", "1"
    )
    assert json_len is not None and body[json_len:] == raw


@FUZZ
@given(
    st.sampled_from(["FP32", "FP64", "INT64", "INT8", "UINT16", "BOOL", "FP16"]),
    st.integers(1, 5),
    st.integers(0, 2**31),
)
def test_numeric_binary_round_trip(datatype: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = (rng.normal(size=(n, 2)) * 10).astype(codec.DTYPES[datatype])
    out = {"y": arr}
    body, json_len = codec.encode_response(
        out, {"parameters": {"binary_data_output": True}}, "m", "1"
    )
    assert json_len is not None
    head = json.loads(body[:json_len])
    request = {"inputs": [{"name": "y", "datatype": head["outputs"][0]["datatype"], "shape": head["outputs"][0]["shape"],
                           "parameters": {"binary_data_size": len(body) - json_len}}]}  # fmt: skip
    req_head = json.dumps(request).encode()
    arrays, _ = codec.decode_request(req_head + body[json_len:], len(req_head))
    np.testing.assert_array_equal(arrays["y"], arr)
