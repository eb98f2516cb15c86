"""``tiffin predict``: every input format in, every output format out, errors named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.cli._run import tiffin


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npy", "json"])
def test_predict_formats_and_batches(
    tmp_path: Path, packed_iris: Path, iris_pipeline: tuple[Any, np.ndarray], fmt: str
) -> None:
    model, X = iris_pipeline
    inputs = tmp_path / f"in.{fmt}"
    if fmt == "npy":
        np.save(inputs, X)
    elif fmt == "json":
        inputs.write_text(json.dumps(X.tolist()))
    else:
        frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
        frame.to_csv(inputs, index=False) if fmt == "csv" else frame.to_parquet(inputs)
    output = tmp_path / f"out.{fmt}"
    proc = tiffin(
        "predict", str(packed_iris), "-i", str(inputs), "-o", str(output), "--batch-size", "32"
    )
    assert proc.returncode == 0, proc.stderr
    if fmt == "npy":
        got = np.load(output).tolist()
    elif fmt == "json":
        got = json.loads(output.read_text())
    elif fmt == "csv":
        got = pd.read_csv(output)["output"].tolist()
    else:
        got = pd.read_parquet(output)["output"].tolist()
    assert got == model.predict(X).tolist()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-i", "{tmp}/missing.json"], 2, "does not exist"),
        (["-i", "{tmp}/bad.json"], 2, "cannot read"),
        (["-i", "{tmp}/short.json"], 6, "expects shape"),
        (["-i", "{tmp}/x.txt"], 2, "cannot tell the format"),
        (["-i", "{tmp}/broken.csv"], 2, "cannot read"),
        (["-i", "{tmp}/wrong.csv"], 6, "expects shape"),
        (["-i", "{tmp}/in.npy", "-o", "{tmp}/no/such/out.json"], 2, "folder"),
        (["-i", "{tmp}/in.npy", "-o", "{tmp}/out.txt"], 2, "cannot tell"),
        (["-i", "{tmp}/in.npy", "--batch-size", "0"], 2, "--batch-size must be at least 1"),
    ],
)
def test_errors_are_clear(
    tmp_path: Path, packed_iris: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "short.json").write_text("[[1, 2]]")
    (tmp_path / "x.txt").write_text("1")
    (tmp_path / "broken.csv").write_text('a,b\n1,"2\n')
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    np.save(tmp_path / "in.npy", np.zeros((2, 4)))
    proc = tiffin("predict", str(packed_iris), *[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert proc.stdout == ""


ECHO_MODEL = """
import numpy as np


class Echo:
    def load(self, context):
        pass

    def predict(self, frame):
        kinds = ",".join(f"{c}={frame[c].dtype}" for c in frame.columns)
        return np.array([f"{kinds}|{z}|{n}" for z, n in zip(frame["zip"], frame["n"])])
"""


def test_text_inputs_are_read_into_the_signature_dtypes(tmp_path: Path) -> None:
    """CSV and JSON carry text: "007" stays a string, gaps in ints stay gaps, decimals
    parse to float32 for a float32 column, datetimes are parsed; the model sees what it
    was packed with, whichever file the rows come from."""
    from tiffin import pack

    (tmp_path / "echo.py").write_text(ECHO_MODEL)
    frame = pd.DataFrame(
        {
            "zip": ["007", "123"],
            "n": pd.array([1, None], dtype="Int64"),
            "w": np.array([0.1, 2.5], dtype=np.float32),
            "t": pd.to_datetime(["2024-01-02", "2024-03-04"]),
            "ok": [True, False],
        }
    )
    pkg = pack(f"{tmp_path / 'echo.py'}:Echo", tmp_path / "p", name="echo",
                      version="1", example=frame)  # fmt: skip
    want = pkg.load().predict(frame).tolist()
    frame.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "rows.json").write_text(
        json.dumps(
            [
                {"zip": "007", "n": 1, "w": 0.1, "t": "2024-01-02", "ok": True},
                {"zip": "123", "n": None, "w": 2.5, "t": "2024-03-04", "ok": False},
            ]
        )
    )
    for name in ("rows.csv", "rows.json"):
        proc = tiffin("predict", str(pkg.path), "-i", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == want, name


def test_decimal_text_for_a_float32_model(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    from tiffin import pack

    model, X = iris_pipeline
    x32 = X.astype(np.float32)
    pkg = pack(model, tmp_path / "p", name="iris32", version="1", example=x32[:5])
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    pd.DataFrame(rows, columns=["a", "b", "c", "d"]).to_csv(tmp_path / "rows.csv", index=False)
    want = model.predict(np.asarray(rows, dtype=np.float32)).tolist()
    for name in ("rows.json", "rows.csv"):
        proc = tiffin("predict", str(pkg.path), "-i", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == want
    # A float64 .npy is typed: it is not silently narrowed.
    np.save(tmp_path / "rows.npy", np.asarray(rows))
    proc = tiffin("predict", str(pkg.path), "-i", str(tmp_path / "rows.npy"))
    assert proc.returncode == 6 and "expects dtype float32" in proc.stderr


def test_output_written_whole_or_not_at_all(
    tmp_path: Path, packed_iris: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    _, X = iris_pipeline
    np.save(tmp_path / "in.npy", X)
    (tmp_path / "out.csv").write_text("old\n")
    np.save(tmp_path / "bad.npy", X[:, :2])
    proc = tiffin("predict", str(packed_iris), "-i", str(tmp_path / "bad.npy"),
                  "-o", str(tmp_path / "out.csv"))  # fmt: skip
    assert proc.returncode == 6
    assert (tmp_path / "out.csv").read_text() == "old\n"
    for suffix in ("csv", "npy", "parquet", "json"):
        out = tmp_path / f"out.{suffix}"
        proc = tiffin("predict", str(packed_iris), "-i", str(tmp_path / "in.npy"), "-o", str(out))
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if "tiffin-tmp" in p.name) == []


def test_input_without_rows_gives_an_empty_output(tmp_path: Path, packed_iris: Path) -> None:
    """scikit-learn refuses an empty batch; an empty file still has an empty answer."""
    (tmp_path / "head.csv").write_text("a,b,c,d\n")
    (tmp_path / "none.json").write_text("[]")
    proc = tiffin("predict", str(packed_iris), "-i", str(tmp_path / "head.csv"),
                  "-o", str(tmp_path / "out.csv"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.csv").read_text().strip() == "output"
    proc = tiffin("predict", str(packed_iris), "-i", str(tmp_path / "none.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    (tmp_path / "cols.csv").write_text("a,b\n")  # no rows, but still the wrong columns
    proc = tiffin("predict", str(packed_iris), "-i", str(tmp_path / "cols.csv"))
    assert proc.returncode == 6 and "expects shape" in proc.stderr


@pytest.mark.parametrize(
    ("cls", "fmt"),
    [
        ("Tensor", "npy"),
        ("Frame", "parquet"),
        ("Frame", "json"),
        ("Dict", "csv"),
        ("Dict", "parquet"),
        ("Strings", "parquet"),
    ],
)
def test_predict_empty_input_answers_as_the_python_api(
    tmp_path: Path, kinds_model: str, cls: str, fmt: str
) -> None:
    """An input with no rows gets the Python API's zero-row answer in every output kind,
    written as a file with rows would be, the model never called (it needs a row)."""
    import pyarrow.parquet as pq

    from tiffin import load, pack
    from tiffin.schema.signature import named_arrays

    pkg = pack(f"{kinds_model}:{cls}", tmp_path / "p", name="kinds", version="1",
               requirements=[f"pandas=={pd.__version__}"],
               example=np.load(tmp_path / "example.npy"))  # fmt: skip
    answer = load(pkg.path).predict(np.empty((0, 3)))
    # The API answers a strings model with [], which holds no dtype; the file holds text.
    want = named_arrays(np.empty(0, dtype=object) if isinstance(answer, list) else answer)
    (tmp_path / "none.csv").write_text("a,b,c\n")
    out = tmp_path / f"out.{fmt}"
    proc = tiffin("predict", str(pkg.path), "-i", str(tmp_path / "none.csv"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    if fmt == "json":
        got = json.loads(out.read_text())
        assert got == {k: [] for k in want}
    elif fmt == "npy":
        arr = np.load(out)
        assert arr.shape == want["output"].shape == (0, 3) and arr.dtype == want["output"].dtype
    else:
        frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert len(frame) == 0
        columns = {
            f"{k}_{j}" if v.ndim > 1 else k: v.dtype
            for k, v in want.items()
            for j in range(v.shape[1] if v.ndim > 1 else 1)
        }
        assert list(frame.columns) == list(columns)
        if fmt == "parquet":  # typed: text stays text, numbers keep their dtype
            for name, dtype in columns.items():
                if dtype.kind in "OU":
                    # An empty object column would be Parquet's null type, not text.
                    assert pq.read_schema(out).field(name).type == "large_string", name
                else:
                    assert frame[name].dtype == dtype, name
