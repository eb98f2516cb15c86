"""MLflow's scoring formats decoded against each signature kind, and the predictions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from tiffin.serve.codec import BadRequest
from tiffin.serve.mlflow_format import decode_invocation, encode_predictions
from tiffin.signature import Signature

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
    from tiffin.errors import SignatureError

    with pytest.raises(SignatureError, match="unknown input column 'zip'"):
        decode({"dataframe_records": [{"city": "nice", "age": 40.0, "zip": 6000}]}, sig)


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"{", BadRequest, "not valid JSON"),
        (b"[1, 2]", BadRequest, "JSON object"),
        (b'{"instances": [], "inputs": []}', BadRequest, "exactly one of"),
        (b'{"data": []}', BadRequest, "exactly one of"),
        (b'{"dataframe_split": [1]}', BadRequest, "needs {'columns'"),
        (b'{"dataframe_records": [1]}', BadRequest, "list of objects"),
    ],
)
def test_malformed(body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        decode_invocation(body, TENSOR)


def test_signature_errors_name_the_problem() -> None:
    from tiffin.errors import SignatureError

    with pytest.raises(SignatureError, match="expects shape"):
        decode({"instances": [[1, 2]]}, TENSOR)
    with pytest.raises(SignatureError, match="expects dtype float64"):
        decode({"instances": [["a", "b", "c"]]}, TENSOR)
    with pytest.raises(SignatureError, match="missing"):
        decode({"inputs": {"a": [1.0]}}, NAMED)


def test_predictions_as_mlflow_answers_them() -> None:
    one = encode_predictions({"output": np.array([0, 1])}, TENSOR)
    assert orjson.loads(one) == {"predictions": [0, 1]}
    two = encode_predictions({"p": np.array([[0.5, np.nan]]), "s": np.array([b"x"], object)}, NAMED)
    assert orjson.loads(two) == {"predictions": {"p": [[0.5, None]], "s": ["x"]}}
    frame_sig = Signature(inputs=TENSOR.inputs, outputs=TENSOR.outputs, output_kind="dataframe")
    records = encode_predictions({"a": np.array([1, 2]), "b": np.array(["x", "y"])}, frame_sig)
    assert orjson.loads(records) == {"predictions": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}
