"""Input and output files for ``tiffin predict``: readers, writers, good and bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tiffin.errors import SignatureError, UsageError
from tiffin.schema import datafiles
from tiffin.schema import typed_json as examples
from tiffin.schema.signature import Signature


def sig(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None, **kinds: str) -> Signature:  # fmt: skip
    outputs = [{"name": "output", "dtype": "int64", "shape": [-1]}] if outputs is None else outputs
    return Signature.from_dict({"inputs": inputs, "outputs": outputs, **kinds})


TENSOR = sig([{"name": "input", "dtype": "float32", "shape": [-1, 2]}])
FRAME = sig(
    [
        {"name": "age", "dtype": "int64", "shape": [-1], "nullable": True},
        {"name": "code", "dtype": "str", "shape": [-1]},
        {"name": "spend", "dtype": "float32", "shape": [-1]},
        {"name": "when", "dtype": "datetime64[ns]", "shape": [-1]},
    ],
    input_kind="dataframe",
)
DICT = sig(
    [
        {"name": "ids", "dtype": "int32", "shape": [-1, 3]},
        {"name": "w", "dtype": "float64", "shape": [-1]},
    ],
    input_kind="dict",
)
STRINGS = sig([{"name": "input", "dtype": "str", "shape": [-1]}], input_kind="strings")


# -- format_of ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "given", "fmt"),
    [
        ("a.json", None, "json"),
        ("a.jsonl", None, "json"),
        ("a.CSV", None, "csv"),
        ("a.pq", None, "parquet"),
        ("a.parquet", None, "parquet"),
        ("a.npy", None, "npy"),
        ("a.txt", "csv", "csv"),
        ("a", "NPY", "npy"),
    ],
)
def test_format_of(name: str, given: str | None, fmt: str) -> None:
    assert datafiles.format_of(Path(name), given) == fmt


@pytest.mark.parametrize(("name", "given"), [("a.txt", None), ("a", None), ("a.csv", "xlsx")])
def test_format_of_unknown_is_named(name: str, given: str | None) -> None:
    with pytest.raises(UsageError, match="cannot tell the format") as info:
        datafiles.format_of(Path(name), given)
    assert info.value.fix is not None and ".parquet" in info.value.fix


# -- read_input: text formats into the signature's dtypes -------------------------------


def test_csv_into_a_dataframe_signature(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("age,code,spend,when\n3,007,0.1,2024-01-02\n,010,2.5,2024-03-04\n")
    frame = datafiles.read_input(path, FRAME)
    assert str(frame["age"].dtype) == "Int64" and frame["age"].isna().tolist() == [False, True]
    assert frame["code"].tolist() == ["007", "010"]  # text stays text, not 7
    assert frame["spend"].dtype == np.float32 and frame["spend"][0] == np.float32(0.1)
    assert frame["when"].dtype.kind == "M"
    FRAME.validate(frame)


def test_csv_header_only_is_typed_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "head.csv"
    path.write_text("age,code,spend,when\n")
    frame = datafiles.read_input(path, FRAME)
    assert len(frame) == 0 and frame["spend"].dtype == np.float32


def test_csv_into_a_tensor_and_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a,b\n0.1,2\n3,4\n")
    arr = datafiles.read_input(path, TENSOR)
    assert arr.dtype == np.float32 and arr.shape == (2, 2)
    path.write_text("w\n1\n2\n")
    named = datafiles.read_input(path, DICT)
    assert named["w"].dtype == np.float64


def test_csv_of_strings(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("text\nhello\nworld\n")
    assert datafiles.read_input(path, STRINGS) == ["hello", "world"]


def test_int_that_does_not_fit_is_left_for_the_signature(tmp_path: Path) -> None:
    narrow = sig([{"name": "input", "dtype": "int8", "shape": [-1]}])
    path = tmp_path / "in.json"
    path.write_text("[1, 300]")
    out = datafiles.read_input(path, narrow)
    assert out == [1, 300]  # unchanged: the signature refuses it by name
    with pytest.raises(SignatureError):
        narrow.validate(out)


@pytest.mark.parametrize(
    "body",
    [
        [{"age": 1, "code": "a", "spend": 1.5, "when": "2024-01-01"}],  # records
        {"age": [1], "code": ["a"], "spend": [1.5], "when": ["2024-01-01"]},  # columns
        {"inputs": [{"age": 1, "code": "a", "spend": 1.5, "when": "2024-01-01"}]},
        [[1, "a", 1.5, "2024-01-01"]],  # rows, in the signature's column order
    ],
)
def test_json_shapes_for_a_dataframe(tmp_path: Path, body: Any) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps(body))
    frame = datafiles.read_input(path, FRAME)
    assert list(frame.columns) == ["age", "code", "spend", "when"]
    assert frame["spend"].dtype == np.float32
    FRAME.validate(frame)


def test_json_for_dict_tensor_and_typed_example(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"ids": [[1, 2, 3]], "w": [0.5]}))
    named = DICT.validate(datafiles.read_input(path, DICT))
    assert named["ids"].dtype == np.int32 and named["w"].dtype == np.float64
    path.write_text("[[0.1, 0.2]]")
    assert datafiles.read_input(path, TENSOR).dtype == np.float32
    typed = np.array([[1, 2]], dtype=np.int16)
    path.write_bytes(examples.dumps(typed))
    back = datafiles.read_input(path, TENSOR)
    assert back.dtype == np.int16  # a typed example goes in as it was recorded
    path.write_text("[]")
    assert datafiles.read_input(path, TENSOR).shape == (0, 2)


def test_binary_formats_go_in_as_typed(tmp_path: Path) -> None:
    arr = np.arange(6, dtype=np.int64).reshape(3, 2)
    np.save(tmp_path / "in.npy", arr)
    assert datafiles.read_input(tmp_path / "in.npy", TENSOR).dtype == np.int64
    pd.DataFrame({"age": [1], "code": ["x"], "spend": [1.0], "when": [pd.Timestamp(0)]}).to_parquet(
        tmp_path / "in.parquet"
    )
    frame = datafiles.read_input(tmp_path / "in.parquet", FRAME)
    assert frame["spend"].dtype == np.float64  # not cast: the signature decides
    named = datafiles.read_input(tmp_path / "in.parquet", DICT)
    assert set(named) == {"age", "code", "spend", "when"}


@pytest.mark.parametrize(
    ("name", "content", "kind", "message"),
    [
        ("missing.json", None, TENSOR, "does not exist"),
        ("bad.json", b"{not json", TENSOR, "cannot read"),
        ("bad.csv", b'a,b\n"1,2\n', TENSOR, "cannot read"),
        ("bad.parquet", b"PAR1 not really", FRAME, "cannot read"),
        ("bad.npy", b"\x93NUMPY broken", TENSOR, "cannot read"),
        ("scalar.json", b"3", FRAME, "expected records or columns"),
        ("list.json", b"[[1, 2, 3]]", DICT, "expected an object of named inputs"),
        ("in.txt", b"1,2", TENSOR, "cannot tell the format"),
    ],
)
def test_bad_input_files_are_usage_errors(
    tmp_path: Path, name: str, content: bytes | None, kind: Signature, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        datafiles.read_input(path, kind)


def test_object_npy_is_a_pickle_and_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UsageError, match="cannot read"):
        datafiles.read_input(tmp_path / "obj.npy", TENSOR)
    with pytest.raises(UsageError, match="cannot read example"):
        datafiles.read_example(tmp_path / "obj.npy")


# -- read_example -----------------------------------------------------------------------


def test_read_example_shapes(tmp_path: Path) -> None:
    cases: list[tuple[str, Any, type]] = [
        ("rows.json", [[1.0, 2.0]], np.ndarray),
        ("records.json", [{"a": 1}], pd.DataFrame),
        ("texts.json", ["hi", "there"], list),
        ("named.json", {"ids": [[1, 2]]}, dict),
    ]
    for name, body, kind in cases:
        (tmp_path / name).write_text(json.dumps(body))
        assert isinstance(datafiles.read_example(tmp_path / name), kind), name
    (tmp_path / "typed.json").write_bytes(examples.dumps({"x": np.zeros((1, 2), np.float16)}))
    assert datafiles.read_example(tmp_path / "typed.json")["x"].dtype == np.float16
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp_path / "e.csv", index=False)
    assert list(datafiles.read_example(tmp_path / "e.csv")["a"]) == [1, 2]
    pd.DataFrame({"a": [1.5]}).to_parquet(tmp_path / "e.parquet")
    assert datafiles.read_example(tmp_path / "e.parquet")["a"].dtype == np.float64


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("none.json", None, "does not exist"),
        ("bad.json", b"[1,", "cannot read example"),
        ("e.xlsx", b"", "cannot tell the format"),
    ],
)
def test_read_example_bad(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(UsageError, match=message):
        datafiles.read_example(tmp_path / name)


# -- batches, rows, concat --------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs",
    [
        np.arange(10).reshape(5, 2),
        pd.DataFrame({"a": range(5), "b": list("abcde")}),
        {"x": np.arange(5), "y": np.arange(10).reshape(5, 2)},
        ["a", "b", "c", "d", "e"],
    ],
    ids=["array", "frame", "dict", "list"],
)
def test_batches_then_concat_is_the_input(inputs: Any) -> None:
    parts = list(datafiles.batches(inputs, 2))
    assert [datafiles.rows(p) for p in parts] == [2, 2, 1]
    back = datafiles.concat(parts)
    if isinstance(inputs, pd.DataFrame):
        pd.testing.assert_frame_equal(back, inputs)
    elif isinstance(inputs, dict):
        assert all(np.array_equal(back[k], v) for k, v in inputs.items())
    elif isinstance(inputs, list):
        assert back == inputs
    else:
        np.testing.assert_array_equal(back, inputs)
    assert datafiles.rows({}) == 0


# -- empty_output: the Python API's zero-row answer -------------------------------------

OUTPUT_KINDS: dict[str, Signature] = {
    "tensor": sig(
        [{"name": "input", "dtype": "float64", "shape": [-1, 2]}],
        [{"name": "output", "dtype": "float32", "shape": [-1, 3]}],
    ),
    "dict": sig(
        [{"name": "input", "dtype": "float64", "shape": [-1, 2]}],
        [
            {"name": "label", "dtype": "str", "shape": [-1]},
            {"name": "score", "dtype": "float32", "shape": [-1, 2]},
        ],
        output_kind="dict",
    ),
    "dataframe": sig(
        [{"name": "input", "dtype": "float64", "shape": [-1, 2]}],
        [
            {"name": "label", "dtype": "str", "shape": [-1]},
            {"name": "n", "dtype": "int64", "shape": [-1]},
        ],
        output_kind="dataframe",
    ),
    "strings": sig(
        [{"name": "input", "dtype": "float64", "shape": [-1, 2]}],
        [{"name": "output", "dtype": "str", "shape": [-1]}],
        output_kind="strings",
    ),
}


@pytest.mark.parametrize("kind", sorted(OUTPUT_KINDS))
def test_empty_output_matches_no_rows(kind: str) -> None:
    signature = OUTPUT_KINDS[kind]
    got = datafiles.empty_output(signature)
    want = signature.no_rows()
    if kind == "dataframe":
        pd.testing.assert_frame_equal(got, want)
    elif kind == "strings":
        assert want == [] and got.shape == (0,) and got.dtype == object
    elif kind == "dict":
        assert got.keys() == want.keys()
        for k in got:
            assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype
    else:
        assert got.shape == want.shape == (0, 3) and got.dtype == want.dtype == np.float32


def test_empty_output_without_outputs_or_batch_axis() -> None:
    with pytest.raises(UsageError, match="no outputs"):
        datafiles.empty_output(sig([{"name": "input", "dtype": "float64", "shape": [-1]}], []))
    with pytest.raises(UsageError, match="no batch axis"):
        datafiles.empty_output(
            sig(
                [{"name": "input", "dtype": "float64", "shape": [2]}],
                [{"name": "output", "dtype": "float64", "shape": [2]}],
            )
        )


def _read_back(path: Path) -> Any:
    fmt = path.suffix.lstrip(".")
    if fmt == "json":
        return json.loads(path.read_text())
    if fmt == "csv":
        return path.read_text()
    if fmt == "npy":
        arr = np.load(path, allow_pickle=False)
        return (arr.dtype.kind, arr.shape)
    return pq.read_schema(path).to_string(show_schema_metadata=False).splitlines()


# Each output kind's zero-row answer in each format, as a file with rows would be written
# (the same names and column types), only without the rows.
EMPTY_FILES: dict[tuple[str, str], Any] = {
    ("tensor", "json"): [],
    ("tensor", "csv"): "output_0,output_1,output_2\n",
    ("tensor", "npy"): ("f", (0, 3)),
    ("tensor", "parquet"): ["output_0: float", "output_1: float", "output_2: float"],
    ("dict", "json"): {"label": [], "score": []},
    ("dict", "csv"): "label,score_0,score_1\n",
    ("dict", "parquet"): ["label: large_string", "score_0: float", "score_1: float"],
    ("dataframe", "json"): {"label": [], "n": []},
    ("dataframe", "csv"): "label,n\n",
    ("dataframe", "parquet"): ["label: large_string", "n: int64"],
    ("strings", "json"): [],
    ("strings", "csv"): "output\n",
    ("strings", "npy"): ("U", (0,)),
    ("strings", "parquet"): ["output: large_string"],
}


@pytest.mark.parametrize(("kind", "fmt"), sorted(EMPTY_FILES))
def test_empty_output_in_every_format(tmp_path: Path, kind: str, fmt: str) -> None:
    path = tmp_path / f"out.{fmt}"
    datafiles.write_output(datafiles.empty_output(OUTPUT_KINDS[kind]), path)
    assert _read_back(path) == EMPTY_FILES[(kind, fmt)]


@pytest.mark.parametrize("kind", ["dict", "dataframe"])
def test_several_outputs_do_not_fit_one_npy(tmp_path: Path, kind: str) -> None:
    with pytest.raises(UsageError, match="several outputs"):
        datafiles.write_output(datafiles.empty_output(OUTPUT_KINDS[kind]), tmp_path / "o.npy")
    assert list(tmp_path.iterdir()) == []


def test_empty_text_column_is_text_in_parquet_like_a_full_one(tmp_path: Path) -> None:
    full = pd.DataFrame({"label": ["a", "b"], "n": [1, 2]})
    datafiles.write_output(full, tmp_path / "full.parquet")
    datafiles.write_output(full.iloc[:0], tmp_path / "empty.parquet")
    assert (
        pq.read_schema(tmp_path / "full.parquet").types
        == pq.read_schema(tmp_path / "empty.parquet").types
    )


# -- write_output -----------------------------------------------------------------------


def test_stdout_json_nan_and_bytes() -> None:
    body = datafiles.write_output(np.array([1.0, np.nan, np.inf]), None)
    assert body is not None and json.loads(body) == [1.0, None, None]
    body = datafiles.write_output({"a": np.array([b"x"]), "b": np.array([1])}, None)
    assert body is not None and json.loads(body) == {"a": ["x"], "b": [1]}


def test_text_labels_to_npy_and_objects_refused(tmp_path: Path) -> None:
    datafiles.write_output(np.array(["a", "bc"], dtype=object), tmp_path / "t.npy")
    assert np.load(tmp_path / "t.npy").tolist() == ["a", "bc"]
    with pytest.raises(UsageError, match="Python objects"):
        datafiles.write_output(np.array([{"a": 1}], dtype=object), tmp_path / "o.npy")
    assert not (tmp_path / "o.npy").exists()


def test_wide_output_becomes_numbered_columns(tmp_path: Path) -> None:
    datafiles.write_output({"p": np.arange(6).reshape(3, 2)}, tmp_path / "o.csv")
    assert pd.read_csv(tmp_path / "o.csv").to_dict("list") == {"p_0": [0, 2, 4], "p_1": [1, 3, 5]}


def test_check_output_path(tmp_path: Path) -> None:
    datafiles.check_output_path(tmp_path / "ok.parquet")
    with pytest.raises(UsageError, match="does not exist"):
        datafiles.check_output_path(tmp_path / "no" / "o.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        datafiles.check_output_path(tmp_path / "dir.json")
    with pytest.raises(UsageError, match="cannot tell"):
        datafiles.check_output_path(tmp_path / "o.xlsx")


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot write"):
        datafiles.write_output(np.array([1]), tmp_path / "file" / "out.csv")
    datafiles.write_output(np.array([1, 2]), target)
    assert json.loads(target.read_text()) == [1, 2]
    assert [p.name for p in tmp_path.iterdir() if "tiffin-tmp" in p.name] == []


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.int64, np.int32, np.float32, np.float64, np.bool_]),
        # rows may be none; a row of width 0 has no column to carry it in a table
        shape=st.tuples(st.integers(0, 5)) | st.tuples(st.integers(0, 5), st.integers(1, 4)),
    )
)
def test_npy_and_parquet_round_trip_the_values(tmp_path: Path, arr: np.ndarray) -> None:
    datafiles.write_output(arr, tmp_path / "o.npy")
    back = np.load(tmp_path / "o.npy")
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    datafiles.write_output(arr, tmp_path / "o.parquet")
    frame = pd.read_parquet(tmp_path / "o.parquet")
    assert len(frame) == arr.shape[0]
    width = arr.shape[1] if arr.ndim == 2 else 1
    np.testing.assert_array_equal(frame.to_numpy(), arr.reshape(arr.shape[0], width))
    assert all(frame[c].dtype == arr.dtype for c in frame.columns)
