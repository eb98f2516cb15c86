"""MLflow's scoring formats decoded against each signature kind, and the predictions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiffin.schema.signature import Signature
from tiffin.serve.errors import BadRequest
from tiffin.serve.protocols.mlflow import decode_invocation, encode_predictions

TENSOR = Signature.infer(np.zeros((2, 3)), np.zeros(2, np.int64))
NAMED = Signature.infer({"a": np.zeros(2), "b": np.array(["x", "y"], dtype=object)}, np.zeros(2))


def decode(body: Any, sig: Signature) -> dict[str, np.ndarray]:
    return decode_invocation(json.dumps(body).encode(), sig)


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [[1, 2, 3], [4, 5, 6]]},
        {"inputs": [[1, 2, 3], [4, 5, 6]]},
        {"dataframe_split": {"columns": ["c0", "c1", "c2"], "data": [[1, 2, 3], [4, 5, 6]]}},
        {"dataframe_records": [{"c0": 1, "c1": 2, "c2": 3}, {"c0": 4, "c1": 5, "c2": 6}]},
    ],
)
def test_every_format_for_a_tensor_model(body: dict[str, Any]) -> None:
    assert decode({**body, "params": {}}, TENSOR)["input"].shape == (2, 3)  # empty params: fine
    arrays = decode(body, TENSOR)
    assert list(arrays) == ["input"]
    assert arrays["input"].dtype == np.float64  # plain JSON ints cast without loss
    assert arrays["input"].tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": {"a": [1.0, 2.0], "b": ["x", "y"]}},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, "x"], [2.0, "y"]]}},
        {"dataframe_records": [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}]},
    ],
)
def test_named_inputs(body: dict[str, Any]) -> None:
    arrays = decode(body, NAMED)
    assert arrays["a"].tolist() == [1.0, 2.0] and arrays["b"].tolist() == ["x", "y"]


def test_dataframe_model() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"city": ["paris", "lyon"], "age": [20.0, 30.0]})
    sig = Signature.infer(frame, np.zeros(2, np.int64))
    for body in (
        {"dataframe_split": {"columns": ["city", "age"], "data": [["nice", 40.0]]}},
        {"dataframe_records": [{"city": "nice", "age": 40.0}]},
        {"inputs": {"city": ["nice"], "age": [40.0]}},
        {"instances": [{"city": "nice", "age": 40.0}]},
    ):
        arrays = decode(body, sig)
        assert arrays["city"].tolist() == ["nice"] and arrays["age"].tolist() == [40.0]
    with pytest.raises(BadRequest, match="unknown input 'zip'"):
        decode({"dataframe_records": [{"city": "nice", "age": 40.0, "zip": 6000}]}, sig)


def test_json_numbers_take_the_signature_dtype() -> None:
    """A float32 column (every PyTorch model, many DataFrames) takes JSON numbers.

    Before, the decoder built a float64 DataFrame and the signature refused it: no MLflow
    client could call a float32 model unless every value was exactly representable.
    """
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"f": np.array([0.5], np.float32), "n": np.array([1], np.int8)})
    sig = Signature.infer(frame, np.zeros(1))
    for body in (
        {"dataframe_split": {"columns": ["f", "n"], "data": [[0.1, 1], [2, -3]]}},
        {"dataframe_records": [{"f": 0.1, "n": 1}, {"f": 2, "n": -3}]},
        {"inputs": {"f": [0.1, 2], "n": [1, -3]}},
        {"instances": [{"f": 0.1, "n": 1}, {"f": 2, "n": -3}]},
    ):
        arrays = decode(body, sig)
        assert arrays["f"].dtype == np.float32 and arrays["f"].tolist() == [np.float32(0.1), 2.0]
        assert arrays["n"].dtype == np.int8 and arrays["n"].tolist() == [1, -3]
        sig.from_named_arrays(arrays)  # and the signature takes them, as the server does
    mlp = Signature.infer(np.zeros((1, 3), np.float32), np.zeros((1, 2), np.float32))
    assert decode({"inputs": [[0.1, 0.2, 0.3]]}, mlp)["input"].dtype == np.float32


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": {"f": [0.5], "n": [300]}}, "does not fit INT8"),
        ({"inputs": {"f": [0.5], "n": [1.5]}}, "INT8 needs integers"),
        ({"inputs": {"f": [True], "n": [1]}}, "FP32 needs numbers"),
        ({"inputs": {"f": [1e39], "n": [1]}}, "does not fit FP32"),
        ({"inputs": {"f": [0.5], "n": [None]}}, "missing value"),
        ({"inputs": {"f": [[0.5]], "n": [1, [2]]}}, "ragged"),
        ({"dataframe_split": {"columns": ["f", "n"], "data": [[0.5]]}}, "one value per column"),
        ({"dataframe_split": {"columns": "fn", "data": [[0.5, 1]]}}, "list of names"),
        ({"inputs": {"n": [1]}}, "input 'f' is missing"),
        ({"inputs": [[0.5, 1]]}, "must be records or an object"),
    ],
)
def test_values_that_do_not_fit_are_refused(body: dict[str, Any], message: str) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"f": np.array([0.5], np.float32), "n": np.array([1], np.int8)})
    with pytest.raises(BadRequest, match=message):
        decode(body, Signature.infer(frame, np.zeros(1)))


def test_null_is_nan_in_a_float_input_and_strings_stay_strings() -> None:
    assert np.isnan(decode({"inputs": [[1, None, 3]]}, TENSOR)["input"][0, 1])
    with pytest.raises(BadRequest, match="expects strings, got 3"):
        decode({"inputs": {"a": [1.0], "b": [3]}}, NAMED)  # never str(3) silently
    words = Signature.infer(["a", "bb"], np.zeros(2, np.int64))
    assert words.input_kind == "strings"
    # a one-column table for a 1-D input is that column
    for body in (
        {"dataframe_split": {"columns": ["input"], "data": [["a"], ["bb"]]}},
        {"dataframe_records": [{"input": "a"}, {"input": "bb"}]},
        {"instances": ["a", "bb"]},
    ):
        arrays = decode(body, words)
        assert arrays["input"].tolist() == ["a", "bb"]
        assert words.from_named_arrays(arrays) == ["a", "bb"]


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"{", BadRequest, "not valid JSON"),
        (b"[1, 2]", BadRequest, "JSON object"),
        (b'{"instances": [], "inputs": []}', BadRequest, "exactly one of"),
        (b'{"data": []}', BadRequest, "exactly one of"),
        (b'{"dataframe_split": [1]}', BadRequest, "needs {'columns'"),
        (b'{"dataframe_records": [1]}', BadRequest, "list of objects"),
        (b'{"inputs": [[1, 2, 3]], "params": {"threshold": 0.9}}', BadRequest, "takes no 'params'"),
        (b'{"inputs": [[1, 2, 3]], "params": 3}', BadRequest, "takes no 'params'"),
        (b'{"inputs": [[1, 2, 3]], "extra": 1}', BadRequest, "unknown field 'extra'"),
    ],
)
def test_malformed(body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        decode_invocation(body, TENSOR)


def test_signature_errors_name_the_problem() -> None:
    from tiffin.errors import SignatureError

    with pytest.raises(SignatureError, match="expects shape"):  # checked as a V2 request is
        TENSOR.from_named_arrays(decode({"instances": [[1, 2]]}, TENSOR))
    with pytest.raises(BadRequest, match="FP64 needs numbers, got 'a'"):
        decode({"instances": [["a", "b", "c"]]}, TENSOR)
    with pytest.raises(BadRequest, match="input 'b' is missing"):
        decode({"inputs": {"a": [1.0]}}, NAMED)


def test_predictions_as_mlflow_answers_them() -> None:
    one = encode_predictions({"output": np.array([0, 1])}, TENSOR)
    assert orjson.loads(one) == {"predictions": [0, 1]}
    two = encode_predictions({"p": np.array([[0.5, np.nan]]), "s": np.array([b"x"], object)}, NAMED)
    assert orjson.loads(two) == {"predictions": {"p": [[0.5, None]], "s": ["x"]}}
    frame_sig = Signature(inputs=TENSOR.inputs, outputs=TENSOR.outputs, output_kind="dataframe")
    records = encode_predictions({"a": np.array([1, 2]), "b": np.array(["x", "y"])}, frame_sig)
    assert orjson.loads(records) == {"predictions": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=30,
)
_KEYS = st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "x"])


@settings(max_examples=300, deadline=None)
@given(key=_KEYS, value=_JSON)
def test_any_json_is_arrays_or_a_bad_request(key: str, value: Any) -> None:
    """Whatever JSON comes, the decoder answers typed arrays or a BadRequest, never a crash;
    and the arrays it gives the signature check are a SignatureError at worst."""
    from tiffin.errors import SignatureError

    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"f": np.array([0.5], np.float32), "s": ["a"]})
    for sig in (TENSOR, NAMED, Signature.infer(frame, np.zeros(1))):
        try:
            arrays = decode({key: value}, sig)
        except BadRequest:
            continue
        assert set(arrays) == set(sig.input_names())
        try:
            sig.from_named_arrays(arrays)
        except SignatureError:
            pass


def test_datetime_columns_from_text() -> None:
    from tiffin.serve.model import parse_datetimes

    pd = pytest.importorskip("pandas")
    sig = Signature.infer(
        pd.DataFrame({"t": pd.to_datetime(["2020-01-01"]), "x": [1]}), np.zeros(1)
    )
    arrays = decode({"dataframe_records": [{"t": "2021-02-03", "x": 4}, {"t": "2022-01-01T10:00", "x": 5}]}, sig)  # fmt: skip
    parsed = parse_datetimes(arrays, sig.inputs)  # as the server does for V2 and MLflow alike
    frame = sig.from_named_arrays(parsed)
    assert frame["t"].tolist() == [pd.Timestamp("2021-02-03"), pd.Timestamp("2022-01-01T10:00")]
    missing = parse_datetimes(decode({"inputs": {"t": [None], "x": [1]}}, sig), sig.inputs)
    from tiffin.errors import SignatureError

    with pytest.raises(SignatureError, match="missing values"):  # not nullable: refused
        sig.from_named_arrays(missing)
    with pytest.raises(BadRequest, match="expects strings, got 5"):
        decode({"inputs": {"t": [5], "x": [1]}}, sig)


def test_a_v2_request_sent_here_points_to_the_infer_endpoint() -> None:
    v2 = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
                     {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}  # fmt: skip
    for sig in (NAMED, TENSOR):
        with pytest.raises(BadRequest, match="/v2/models/<name>/infer"):
            decode(v2, sig)
    # records that merely hold a 'name' are MLflow records, not V2 tensors
    with pytest.raises(BadRequest, match="input 'a' is missing"):
        decode({"inputs": [{"name": "a", "b": "x"}]}, NAMED)
