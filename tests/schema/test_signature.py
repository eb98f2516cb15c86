from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tiffin
from tiffin.schema.signature import Signature, TensorSpec


def test_infer_tensor() -> None:
    sig = Signature.infer(np.zeros((5, 3), np.float32), np.zeros(5, np.int64))
    assert sig.input_kind == "tensor"
    assert sig.inputs == (TensorSpec("input", "float32", (-1, 3)),)
    assert sig.outputs == (TensorSpec("output", "int64", (-1,)),)
    assert sig.batchable


def test_infer_dataframe_with_strings_and_nulls() -> None:
    frame = pd.DataFrame(
        {"age": [30, 40], "city": ["x", None], "income": [1.5, np.nan], "ok": [True, False]}
    )
    sig = Signature.infer(frame, np.array([0, 1]))
    assert sig.input_kind == "dataframe"
    specs = {s.name: s for s in sig.inputs}
    assert specs["age"].dtype == "int64" and not specs["age"].nullable
    assert specs["city"].dtype == "str" and specs["city"].nullable
    assert specs["income"].dtype == "float64"
    assert specs["ok"].dtype == "bool"


def test_infer_dict_and_strings() -> None:
    sig = Signature.infer({"ids": np.zeros((2, 4), np.int64), "mask": np.ones((2, 4), bool)})
    assert sig.input_kind == "dict"
    assert [s.name for s in sig.inputs] == ["ids", "mask"]
    sig = Signature.infer(["hello", "world"], np.array([0.1, 0.2]))
    assert sig.input_kind == "strings"
    assert sig.inputs[0].dtype == "str"


def test_safe_casts_applied() -> None:
    sig = Signature.infer(np.zeros((1, 2), np.float64))
    out = sig.validate(np.array([[1, 2]], np.int32))
    assert out.dtype == np.float64
    out = sig.validate([[1, 2]])  # plain Python ints fit float64 exactly
    assert out.dtype == np.float64


def test_python_ints_to_float32_when_lossless() -> None:
    sig = Signature.infer(np.zeros((1, 2), np.float32))
    assert sig.validate([[1, 2]]).dtype == np.float32
    with pytest.raises(tiffin.SignatureError, match="expects dtype float32"):
        sig.validate([[16777217, 0]])  # not representable in float32


@pytest.mark.parametrize(
    ("expected", "given"),
    [
        (np.float32, np.zeros((1, 2), np.float64)),
        (np.int64, np.zeros((1, 2), np.float64)),
        (np.int32, np.zeros((1, 2), np.int64)),
        (np.uint8, np.zeros((1, 2), np.int8)),
    ],
)
def test_lossy_casts_refused(expected: Any, given: np.ndarray) -> None:
    sig = Signature.infer(np.zeros((1, 2), expected))
    with pytest.raises(tiffin.SignatureError, match=r"input 'input' expects dtype .* got"):
        sig.validate(given)


def test_float_list_to_int_refused() -> None:
    sig = Signature.infer(np.zeros((1, 2), np.int64))
    with pytest.raises(tiffin.SignatureError, match="expects dtype int64"):
        sig.validate([[1.5, 2.0]])


def test_wrong_shape_named() -> None:
    sig = Signature.infer(np.zeros((3, 4), np.float64))
    with pytest.raises(tiffin.SignatureError, match=r"expects shape \[-1, 4\].*got \[2, 3\]"):
        sig.validate(np.zeros((2, 3)))
    with pytest.raises(tiffin.SignatureError, match="got \\[4\\]"):
        sig.validate(np.zeros(4))


def test_missing_and_unknown_inputs() -> None:
    sig = Signature.infer({"a": np.zeros((1, 2)), "b": np.zeros((1,))})
    with pytest.raises(tiffin.SignatureError, match="input 'b' is missing"):
        sig.validate({"a": np.zeros((1, 2))})
    with pytest.raises(tiffin.SignatureError, match="unknown input 'c'"):
        sig.validate({"a": np.zeros((1, 2)), "b": np.zeros(1), "c": 1})
    with pytest.raises(tiffin.SignatureError, match="expected a mapping"):
        sig.validate(np.zeros((1, 2)))


def test_dataframe_errors() -> None:
    frame = pd.DataFrame({"age": [30, 40], "city": ["x", "y"]})
    sig = Signature.infer(frame)
    with pytest.raises(tiffin.SignatureError, match="column 'city' is missing"):
        sig.validate(frame[["age"]])
    with pytest.raises(tiffin.SignatureError, match="unknown input column 'zip'"):
        sig.validate(frame.assign(zip=[1, 2]))
    with pytest.raises(
        tiffin.SignatureError, match="'city' has missing values but is not nullable"
    ):
        sig.validate(pd.DataFrame({"age": [1], "city": [None]}))
    with pytest.raises(tiffin.SignatureError, match="'city' expects strings, got int"):
        sig.validate(pd.DataFrame({"age": [1], "city": [5]}))
    with pytest.raises(tiffin.SignatureError, match="'age' expects dtype int64"):
        sig.validate(pd.DataFrame({"age": [1.5], "city": ["x"]}))
    ok = sig.validate({"age": [1], "city": ["z"]})
    assert list(ok.columns) == ["age", "city"]


def test_dataframe_columns_reordered_repeated_and_empty() -> None:
    frame = pd.DataFrame({"age": [30, 40], "city": ["x", "y"]})
    sig = Signature.infer(frame)
    assert list(sig.validate(frame[["city", "age"]]).columns) == ["age", "city"]
    with pytest.raises(tiffin.SignatureError, match="'age' appears more than once"):
        sig.validate(pd.concat([frame, frame[["age"]]], axis=1))
    assert len(sig.validate(frame.iloc[:0])) == 0


def test_nullable_int_and_bool_columns_keep_their_gaps() -> None:
    """Int64/boolean with <NA>: the own example validates and the gaps stay gaps."""
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "ok": pd.array([True, None, False], dtype="boolean"),
            "small": pd.array([1, None, 2], dtype="Int8"),
        }
    )
    sig = Signature.infer(frame)
    assert [(s.dtype, s.nullable) for s in sig.inputs] == [
        ("int64", True),
        ("bool", True),
        ("int8", True),
    ]
    out = sig.validate(frame)
    assert str(out["n"].dtype) == "Int64" and str(out["ok"].dtype) == "boolean"
    assert out["n"].isna().tolist() == [False, True, False]
    assert out["small"].tolist()[::2] == [1, 2] and str(out["small"].dtype) == "Int8"
    # From JSON: Python values with null, checked one by one, never turned into floats.
    out = sig.validate({"n": [7, None], "ok": [None, True], "small": [None, 5]})
    assert out["n"].tolist()[0] == 7 and out["n"].isna().tolist() == [False, True]
    assert str(out["small"].dtype) == "Int8"
    # A safe cast of a nullable column (Int32 -> Int64) keeps the gaps too.
    out = sig.validate(frame.assign(n=pd.array([None, 2, 3], dtype="Int32")))
    assert str(out["n"].dtype) == "Int64" and out["n"].isna().tolist() == [True, False, False]
    with pytest.raises(tiffin.SignatureError, match="'n' expects dtype int64, got float64"):
        sig.validate({"n": [1.5, None], "ok": [True, True], "small": [1, 1]})
    with pytest.raises(tiffin.SignatureError, match="'small' expects dtype int8"):
        sig.validate({"n": [1, None], "ok": [True, True], "small": [1000, None]})


def test_strings_kind() -> None:
    sig = Signature.infer(["a", "b"])
    assert sig.validate(["x"]) == ["x"]
    assert sig.validate([]) == []  # an empty batch is still a batch
    with pytest.raises(tiffin.SignatureError, match="expects strings"):
        sig.validate([1, 2])


def test_round_trip_dict_and_exports() -> None:
    frame = pd.DataFrame({"age": [30], "city": ["x"]})
    sig = Signature.infer(frame, np.array([[0.1, 0.9]]))
    assert Signature.from_dict(sig.to_dict()) == sig
    meta = sig.to_v2_metadata("m", "1", "tiffin_sklearn")
    assert meta["inputs"] == [
        {"name": "age", "datatype": "INT64", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["outputs"][0]["datatype"] == "FP64"
    schema = sig.to_json_schema()
    assert schema["properties"]["inputs"]["required"] == ["age", "city"]
    import jsonschema

    jsonschema.validate({"inputs": {"age": [1, 2], "city": ["a", "b"]}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"inputs": {"age": ["x"], "city": ["a"]}}, schema)


def test_from_named_arrays_for_dataframe() -> None:
    sig = Signature.infer(pd.DataFrame({"age": [30], "city": ["x"]}))
    frame = sig.from_named_arrays(
        {"age": np.array([[1], [2]]), "city": np.array([b"a", b"b"], dtype=object)}
    )
    assert frame["city"].tolist() == ["a", "b"]
    assert frame["age"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "raw",
    [None, [], {"inputs": "x"}, {"inputs": [{"name": "a", "dtype": "complex64"}]},
     {"inputs": [{"name": "a", "dtype": "float32", "shape": [-2]}]}, {"inputs": [{"dtype": "int8"}]},
     {"inputs": [], "input_kind": "tree"}],
)  # fmt: skip
def test_bad_signature_documents(raw: Any) -> None:
    with pytest.raises(tiffin.SignatureError):
        Signature.from_dict(raw)


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
    )
)
def test_own_example_always_validates(arr: np.ndarray) -> None:
    sig = Signature.infer(arr)
    out = sig.validate(arr)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert Signature.from_dict(sig.to_dict()) == sig


@given(st.lists(st.floats(allow_nan=False) | st.integers() | st.text(max_size=3), max_size=6))
def test_arbitrary_python_input_never_crashes(values: list[Any]) -> None:
    sig = Signature.infer(np.zeros((1, 3), np.float32))
    try:
        sig.validate([values])
    except tiffin.SignatureError:
        pass


def test_each_column_records_how_its_nullability_was_decided() -> None:
    frame = pd.DataFrame(
        {"age": [30, 40], "city": ["x", None], "zip": ["a", "b"], "income": [1.5, 2.5]}
    )
    sig = Signature.infer(frame, np.array([0, 1]))
    specs = {s["name"]: s for s in sig.to_dict()["inputs"]}
    assert specs["city"]["nullable"] is True
    assert specs["city"]["nullable_reason"] == "the example has missing values in this column"
    assert "nullable" not in specs["zip"]
    assert specs["zip"]["nullable_reason"] == "the example has no missing values in this column"
    assert "nullable" not in specs["income"]
    assert specs["income"]["nullable_reason"].startswith("float: NaN")
    back = Signature.from_dict(sig.to_dict())
    assert [s.nullable_reason for s in back.inputs] == [s.nullable_reason for s in sig.inputs]
    # The string column with None accepts None; the float column takes gaps it never saw.
    out = sig.validate({"age": [1, 2], "city": [None, "y"], "zip": ["a", "b"], "income": [None, 1]})
    assert out["city"].tolist()[0] is None and np.isnan(out["income"].tolist()[0])
    with pytest.raises(tiffin.SignatureError, match="'zip' has missing values") as info:
        sig.validate({"age": [1], "city": ["y"], "zip": [None], "income": [1.0]})
    assert "nullable" in (info.value.fix or "")


def test_declared_nullability_is_enforced_and_typed() -> None:
    sig = Signature.from_dict(
        {"inputs": [{"name": "n", "dtype": "int64", "nullable": True}], "input_kind": "dataframe"}
    )
    assert sig.validate({"n": [1, None]})["n"].isna().tolist() == [False, True]
    with pytest.raises(tiffin.SignatureError, match="must be true or false"):
        Signature.from_dict({"inputs": [{"name": "n", "dtype": "int64", "nullable": "yes"}]})
    with pytest.raises(tiffin.SignatureError, match="'nullable_reason' of 'n' must be a string"):
        Signature.from_dict({"inputs": [{"name": "n", "dtype": "int64", "nullable_reason": 1}]})


def test_dynamic_axes_at_inference() -> None:
    example = {"tokens": np.zeros((2, 8), np.int64), "mask": np.ones((2, 8), bool)}
    sig = Signature.infer(
        example, np.zeros((2, 8, 4), np.float32), dynamic_axes={"tokens": [1], "mask": [1]}
    )
    assert [s.shape for s in sig.inputs] == [(-1, -1), (-1, -1)]
    assert sig.outputs[0].shape == (-1, 8, 4)
    out = sig.validate({"tokens": np.zeros((1, 30), np.int64), "mask": np.ones((1, 30), bool)})
    assert out["tokens"].shape == (1, 30)
    fixed = Signature.infer(example)
    with pytest.raises(tiffin.SignatureError, match=r"expects shape \[-1, 8\]"):
        fixed.validate({"tokens": np.zeros((1, 30), np.int64), "mask": np.ones((1, 8), bool)})
    assert Signature.infer(np.zeros((2, 3, 4)), np.zeros(2), dynamic_axes={"output": [0]})


@pytest.mark.parametrize(
    ("axes", "match"),
    [
        ({"nope": [1]}, "names 'nope', which is no input or output"),
        ({"input": [2]}, "has no axis 2"),
        ({"input": [-1]}, "has no axis -1"),
        ({"input": "1"}, "must be a list of integers"),
        ({"input": [True]}, "has no axis True"),
        ([("input", [1])], "must map input names"),
    ],
)
def test_dynamic_axes_refused_when_wrong(axes: Any, match: str) -> None:
    sig = Signature.infer(np.zeros((2, 3)))
    with pytest.raises(tiffin.SignatureError, match=match) as info:
        sig.with_dynamic_axes(axes)
    assert info.value.where == "dynamic_axes"


def test_no_rows_answer_shaped_from_outputs() -> None:
    sig = Signature.infer(np.zeros((2, 3), np.float32), np.zeros((2, 5), np.float32))
    empty = sig.no_rows()
    assert empty.shape == (0, 5) and empty.dtype == np.float32
    assert sig.rows(sig.validate(np.zeros((0, 3), np.float32))) == 0
    sig = Signature.infer(
        {"a": np.zeros((2, 3))}, {"p": np.zeros(2), "label": np.array(["x", "y"])}
    )
    out = sig.no_rows()
    assert out["p"].shape == (0,) and out["label"].dtype == object
    sig = Signature.infer(pd.DataFrame({"a": [1]}), pd.DataFrame({"y": [0.5]}))
    frame = sig.no_rows()
    assert list(frame.columns) == ["y"] and len(frame) == 0 and frame["y"].dtype == np.float64
    assert sig.rows(sig.validate(pd.DataFrame({"a": pd.Series([], dtype="int64")}))) == 0
    with pytest.raises(tiffin.SignatureError, match="records no outputs"):
        Signature.infer(np.zeros((2, 3))).no_rows()


def test_pack_dynamic_axes_for_a_torch_sequence_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every axis but the batch is frozen by the example unless pack names it."""
    pytest.importorskip("torch")
    import importlib
    import sys

    (tmp_path / "seqpool.py").write_text(
        "import torch\n\n\nclass Pool(torch.nn.Module):\n"
        "    def forward(self, x):\n        return x.mean(dim=1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "seqpool", raising=False)  # gone again after the test
    Pool = importlib.import_module("seqpool").Pool
    example = np.ones((2, 5, 3), np.float32)
    fixed = tiffin.pack(Pool(), tmp_path / "fixed", name="p", version="1", example=example)
    with pytest.raises(tiffin.SignatureError, match=r"dynamic_axes=\{'input': \[1\]\}"):
        tiffin.load(fixed.path).predict(np.ones((1, 9, 3), np.float32))
    pkg = tiffin.pack(Pool(), tmp_path / "dyn", name="p", version="1", example=example,
                      dynamic_axes={"input": [1]})  # fmt: skip
    assert pkg.manifest is not None
    model = tiffin.load(pkg.path)
    assert model.signature.inputs[0].shape == (-1, -1, 3)
    assert model.predict(np.ones((1, 9, 3), np.float32)).shape == (1, 3)
    with pytest.raises(tiffin.SignatureError, match="'nope'"):
        tiffin.pack(Pool(), tmp_path / "bad", name="p", version="1", example=example,
                    dynamic_axes={"nope": [1]})  # fmt: skip
    assert not (tmp_path / "bad").exists()


def test_python_api_answers_an_empty_batch_like_the_server(tmp_path: Path) -> None:
    """scikit-learn refuses zero samples; the package answers zero rows from its signature."""
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    model = LogisticRegression().fit(X, [0, 1, 0, 1])
    pkg = tiffin.pack(model, tmp_path / "p", name="lr", version="1", example=X[:2])
    loaded = tiffin.load(pkg.path)
    with pytest.raises(ValueError, match="0 sample"):
        model.predict(X[:0])  # what the Python API answered before
    out = loaded.predict(X[:0])
    assert isinstance(out, np.ndarray) and out.shape == (0,) and out.dtype == np.int64
    assert loaded.predict_named({"input": np.zeros((0, 2))})["output"].shape == (0,)
    with pytest.raises(tiffin.SignatureError, match=r"expects shape \[-1, 2\]"):
        loaded.predict(np.zeros((0, 3)))


def test_a_flavor_marks_columns_nullable_with_its_reason() -> None:
    sig = Signature.infer(pd.DataFrame({"plan": ["a", "b"], "n": [1, 2]}))
    seen = sig.with_nullable(["plan"], "the training data has missing values in this column")
    assert seen.inputs[0].nullable and not seen.inputs[1].nullable
    assert seen.to_dict()["inputs"][0]["nullable_reason"].startswith("the training data")
    assert seen.validate({"plan": [None, "a"], "n": [1, 2]})["plan"].tolist()[0] is None
    with pytest.raises(tiffin.SignatureError, match="'zip' is no input"):
        sig.with_nullable(["zip"], "x")
