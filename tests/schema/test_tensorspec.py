"""TensorSpec: dtype rules, shapes, nullability, and the dict round trip."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiffin.errors import SignatureError
from tiffin.schema.tensorspec import (
    V2_DATATYPES,
    TensorSpec,
    _to_array,
    dtype_name,
    masked_dtype,
)

specs = st.builds(
    TensorSpec,
    name=st.text(min_size=1, max_size=20),
    dtype=st.sampled_from(sorted(V2_DATATYPES)),
    shape=st.lists(st.integers(min_value=-1, max_value=2**31), max_size=5).map(tuple),
    nullable=st.booleans(),
    nullable_reason=st.text(max_size=30),
)


@given(specs)
def test_dict_round_trip(spec: TensorSpec) -> None:
    data = spec.to_dict()
    back = TensorSpec.from_dict(data, where="inputs[0]")
    assert back == spec and back.nullable_reason == spec.nullable_reason
    assert back.to_dict() == data
    # the defaults stay out of the written form
    assert ("nullable" in data) == spec.nullable
    assert ("nullable_reason" in data) == bool(spec.nullable_reason)


def test_defaults_and_comparison() -> None:
    spec = TensorSpec.from_dict({"name": "x", "dtype": "float32"}, where="inputs[0]")
    assert spec == TensorSpec("x", "float32", (-1,), False)
    assert spec.v2_datatype == "FP32"
    # the reason documents inference; it does not make two specs differ
    assert TensorSpec("x", "int64", nullable=True, nullable_reason="a") == TensorSpec(
        "x", "int64", nullable=True, nullable_reason="b"
    )
    assert TensorSpec("x", "int64") != TensorSpec("x", "int64", nullable=True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "each spec needs a string 'name'"),
        ({"dtype": "float32"}, "each spec needs a string 'name'"),
        ({"name": 1, "dtype": "float32"}, "each spec needs a string 'name'"),
        ({"name": "x"}, "unknown dtype None for 'x'"),
        ({"name": "x", "dtype": "complex128"}, "unknown dtype 'complex128'"),
        ({"name": "x", "dtype": "FP32"}, "unknown dtype 'FP32'"),
        ({"name": "x", "dtype": "float32", "shape": [-2]}, "bad shape [-2]"),
        ({"name": "x", "dtype": "float32", "shape": [True]}, "bad shape [True]"),
        ({"name": "x", "dtype": "float32", "shape": [1.0]}, "bad shape [1.0]"),
        ({"name": "x", "dtype": "float32", "shape": "-1"}, "bad shape '-1'"),
        ({"name": "x", "dtype": "float32", "shape": (1,)}, "bad shape (1,)"),
        ({"name": "x", "dtype": "float32", "nullable": 1}, "'nullable' of 'x' must be true"),
        ({"name": "x", "dtype": "float32", "nullable_reason": 3}, "must be a string"),
    ],
)
def test_from_dict_refuses(raw: Any, message: str) -> None:
    with pytest.raises(SignatureError) as info:
        TensorSpec.from_dict(raw, where="outputs[2]")
    assert message in info.value.message and info.value.where == "outputs[2]"


def test_an_unknown_dtype_says_which_are_known() -> None:
    with pytest.raises(SignatureError) as info:
        TensorSpec.from_dict({"name": "x", "dtype": "half"}, where="inputs[0]")
    assert info.value.fix is not None and all(d in info.value.fix for d in V2_DATATYPES)


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        (np.dtype("float32"), "float32"),
        (np.dtype(">f8"), "float64"),
        (np.dtype("int8"), "int8"),
        (np.dtype("uint64"), "uint64"),
        (np.dtype("bool"), "bool"),
        (np.dtype("float16"), "float16"),
        (np.dtype("O"), "str"),
        (np.dtype("U5"), "str"),
        (np.dtype("S3"), "str"),
        (np.dtype("datetime64[s]"), "datetime64[ns]"),
        (np.dtype("datetime64[ns]"), "datetime64[ns]"),
    ],
)
def test_dtype_name(dtype: np.dtype[Any], name: str) -> None:
    assert dtype_name(dtype) == name and name in V2_DATATYPES


@pytest.mark.parametrize("dtype", ["complex64", "timedelta64[ns]", "V8", "float128"])
def test_dtype_name_refuses_what_no_signature_holds(dtype: str) -> None:
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        pytest.skip(f"this NumPy has no {dtype}")
    with pytest.raises(SignatureError, match="is not supported in a signature"):
        dtype_name(np_dtype)


def test_every_v2_datatype_is_an_open_inference_protocol_type() -> None:
    v2 = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
          "FP16", "FP32", "FP64", "BYTES"}  # fmt: skip
    assert set(V2_DATATYPES.values()) <= v2
    for name, v2_name in V2_DATATYPES.items():
        if name not in ("str", "datetime64[ns]"):
            assert dtype_name(np.dtype(name)) == name  # each numeric name is NumPy's own
            assert v2_name.startswith(("BOOL", "UINT", "INT", "FP"))


@pytest.mark.parametrize(
    ("dtype", "masked"),
    [
        ("int64", "Int64"),
        ("uint8", "UInt8"),
        ("int16", "Int16"),
        ("bool", "boolean"),
        ("float32", "Float32"),
    ],
)
def test_masked_dtype(dtype: str, masked: str) -> None:
    import pandas as pd

    assert masked_dtype(np.dtype(dtype)) == masked
    assert pd.array([1, None], dtype=masked).dtype.name == masked  # a dtype pandas knows


def test_to_array() -> None:
    import pandas as pd
    import torch

    arr = np.arange(3.0)
    assert _to_array(arr) is arr
    assert _to_array([1, 2]).tolist() == [1, 2]
    assert _to_array(pd.Series([1.5, 2.5])).tolist() == [1.5, 2.5]
    assert _to_array(pd.DataFrame({"a": [1, 2]})).shape == (2, 1)
    tensor = torch.ones(2, 2, requires_grad=True)
    assert _to_array(tensor * 2).tolist() == [[2.0, 2.0], [2.0, 2.0]]
