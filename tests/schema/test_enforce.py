from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import tiffin
from tiffin.schema import enforce
from tiffin.schema.signature import Signature
from tiffin.schema.tensorspec import TensorSpec

# That enforce never imports signature is held by tests/test_import_graph.py.


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.uint8])
def test_bool_array_refused_for_numbers(dtype: Any) -> None:
    """The server refuses JSON booleans as numbers; the Python API refuses bool arrays."""
    sig = Signature.infer(np.zeros((2, 3), dtype))
    with pytest.raises(tiffin.SignatureError, match="got booleans") as info:
        sig.validate(np.ones((2, 3), dtype=bool))
    assert info.value.where == "input" and "astype" in (info.value.fix or "")
    with pytest.raises(tiffin.SignatureError, match="got booleans"):
        sig.validate([[True, False, True]])
    with pytest.raises(tiffin.SignatureError, match="got booleans"):
        sig.validate([[True, 2, 3]])  # numpy would make [1, 2, 3] of it


def test_numbers_refused_for_bool() -> None:
    sig = Signature.infer(np.zeros((2, 3), bool))
    with pytest.raises(tiffin.SignatureError, match="expects dtype bool, got int64"):
        sig.validate([[1, 0, 1]])  # lossless as values, but not booleans
    with pytest.raises(tiffin.SignatureError, match="expects dtype bool"):
        sig.validate(np.zeros((1, 3), np.uint8))
    assert sig.validate([[True, False, True]]).dtype == np.bool_


def test_bool_column_refused_for_a_float_column() -> None:
    sig = Signature.infer(pd.DataFrame({"x": [1.5, 2.5], "flag": [True, False]}))
    with pytest.raises(tiffin.SignatureError, match="'x' expects dtype float64, got booleans"):
        sig.validate(pd.DataFrame({"x": [True, False], "flag": [True, True]}))
    with pytest.raises(tiffin.SignatureError, match="'x' expects dtype float64, got booleans"):
        sig.validate({"x": [True, None], "flag": [True, True]})
    with pytest.raises(tiffin.SignatureError, match="'flag' expects dtype bool"):
        sig.validate({"x": [1.0, 2.0], "flag": [1, 0]})
    assert sig.validate({"x": [1, None], "flag": [True, False]})["x"].isna().tolist() == [
        False,
        True,
    ]


def test_safe_numeric_casts_still_apply() -> None:
    spec = TensorSpec("x", "float64", (-1, 2))
    assert enforce.check_array(spec, np.array([[1, 2]], np.int32)).dtype == np.float64
    assert enforce.check_array(spec, [[1, 2.5]]).dtype == np.float64


def test_float_tensors_and_columns_take_nan() -> None:
    sig = Signature.infer(np.zeros((2, 3), np.float32))
    out = sig.validate(np.array([[np.nan, 1, 2]], np.float32))
    assert np.isnan(out[0, 0])
    assert np.isnan(sig.validate([[float("nan"), 1, 2]])[0, 0])
    frame = pd.DataFrame({"a": [1.0, 2.0]})  # no gaps in the example
    sig = Signature.infer(frame)
    assert sig.validate(pd.DataFrame({"a": [np.nan, 1.0]}))["a"].isna().tolist() == [True, False]
    assert sig.validate({"a": [None, 1.0]})["a"].isna().tolist() == [True, False]


def test_fixed_axis_names_dynamic_axes_in_the_fix() -> None:
    sig = Signature.infer(np.zeros((2, 16), np.int64))
    with pytest.raises(tiffin.SignatureError, match=r"expects shape \[-1, 16\]") as info:
        sig.validate(np.zeros((2, 20), np.int64))
    assert "dynamic_axes={'input': [1]}" in (info.value.fix or "")
    with pytest.raises(tiffin.SignatureError) as info:
        sig.validate(np.zeros(16, np.int64))
    assert "batch axis" in (info.value.fix or "")


def test_names_checked_without_a_signature() -> None:
    with pytest.raises(tiffin.SignatureError, match="input 'b' is missing"):
        enforce.check_names(["a", "b"], {"a": 1})
    specs = (TensorSpec("a", "int64"), TensorSpec("b", "int64"))
    with pytest.raises(tiffin.SignatureError, match="expected a mapping"):
        enforce.as_named(specs, "dict", [1, 2])
