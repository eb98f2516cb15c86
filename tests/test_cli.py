"""The CLI through a real subprocess: results on stdout, errors on stderr, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

TIFFIN = [sys.executable, "-m", "tiffin.cli"]


def tiffin(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIFFIN, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def skops_file(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> Path:
    import skops.io as sio

    model, X = iris_pipeline
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    np.save(tmp_path / "example.npy", X[:5])
    return path


def test_help_lists_verbs_and_exit_codes() -> None:
    proc = tiffin("--help")
    assert proc.returncode == 0
    for verb in ("pack", "inspect", "predict", "build"):
        assert verb in proc.stdout
    assert "4  IntegrityError" in proc.stdout


def test_pack_inspect_predict(
    tmp_path: Path, skops_file: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    model, X = iris_pipeline
    out = tmp_path / "iris-1.0.0"
    proc = tiffin("pack", str(skops_file), str(out), "--name", "iris", "--version", "1.0.0",
                  "--example", str(tmp_path / "example.npy"), "--description", "Iris", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["name"] == "iris" and result["digest"].startswith("sha256:")

    proc = tiffin("inspect", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "iris 1.0.0" in proc.stdout and "Iris" in proc.stdout and "float64" in proc.stdout
    proc = tiffin("inspect", str(out), "--json")
    assert json.loads(proc.stdout)["manifest"]["digest"] == result["digest"]

    inputs = tmp_path / "rows.json"
    inputs.write_text(json.dumps(X[:4].tolist()))
    proc = tiffin("predict", str(out), "--input", str(inputs))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == model.predict(X[:4]).tolist()


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
        (["inspect", "{tmp}/nope"], 3, "no package folder"),
        (["predict", "{pkg}", "-i", "{tmp}/missing.json"], 2, "does not exist"),
        (["predict", "{pkg}", "-i", "{tmp}/bad.json"], 2, "cannot read"),
        (["predict", "{pkg}", "-i", "{tmp}/short.json"], 6, "expects shape"),
        (["predict", "{pkg}", "-i", "{tmp}/x.txt"], 2, "cannot tell the format"),
        (
            ["pack", "{tmp}/nothing.skops", "{tmp}/o", "--name", "x", "--version", "1"],
            2,
            "does not exist",
        ),
        (["pack", "{skops}", "{tmp}/o", "--name", "x", "--version", "latest"], 2, "moving tag"),
        (["pack", "{skops}", "{tmp}/o", "--name", "x", "--version", "1.0 "], 2, "invalid package"),
        (["pack", "{skops}", "{tmp}/o", "--name", "Iris", "--version", "1"], 2, "invalid package"),
        (["predict", "{pkg}", "-i", "{tmp}/broken.csv"], 2, "cannot read"),
        (["predict", "{pkg}", "-i", "{tmp}/wrong.csv"], 6, "expects shape"),
        (["predict", "{pkg}", "-i", "{tmp}/in.npy", "-o", "{tmp}/no/such/out.json"], 2, "folder"),
        (["predict", "{pkg}", "-i", "{tmp}/in.npy", "-o", "{tmp}/out.txt"], 2, "cannot tell"),
        (
            [
                "pack",
                "{skops}",
                "{pkg}",
                "--name",
                "x",
                "--version",
                "1",
                "--example",
                "{tmp}/example.npy",
            ],
            12,
            "already exists",
        ),
        (["build", "{tmp}"], 2, "no [tool.tiffin] table"),
    ],
)
def test_errors_are_clear(
    tmp_path: Path, packed_iris: Path, skops_file: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "short.json").write_text("[[1, 2]]")
    (tmp_path / "x.txt").write_text("1")
    (tmp_path / "broken.csv").write_text('a,b\n1,"2\n')
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    np.save(tmp_path / "in.npy", np.zeros((2, 4)))
    fmt = {"tmp": str(tmp_path), "pkg": str(packed_iris), "skops": str(skops_file)}
    proc = tiffin(*[a.format(**fmt) for a in args])
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")


def test_tampered_package_exit_code(packed_iris: Path) -> None:
    (packed_iris / "schema.json").write_text("{}")
    proc = tiffin("inspect", str(packed_iris))
    assert proc.returncode == 4
    assert "schema.json was changed" in proc.stderr


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


def test_inspect_why_shows_your_changes_and_the_lock(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    """--why once showed the requirements alone: not what the packer added or the lock."""
    from importlib.metadata import version

    model, X = iris_pipeline
    import tiffin as api

    extra = [f"+packaging=={version('packaging')}"]
    pkg = api.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3], requirements=extra)  # fmt: skip
    proc = tiffin("inspect", str(pkg.path), "--why")
    assert proc.returncode == 0, proc.stderr
    assert "added by you: packaging" in proc.stdout
    assert "lock: none (packed with TIFFIN_ENV_CAPTURE=off" in proc.stdout  # as the tests pack


KINDS_MODEL = """
import numpy as np
import pandas as pd


class Tensor:
    def load(self, context):
        pass

    def predict(self, inputs):
        # Any width in, three columns out: the output's shape does not follow the input's.
        x = np.asarray(inputs, dtype=np.float64)
        return (x.sum(axis=1, keepdims=True) * [1, 2, 3]).astype(np.float32)


class Frame(Tensor):
    def predict(self, inputs):
        x = np.asarray(inputs, dtype=np.float64)
        return pd.DataFrame({"label": [f"r{v:.0f}" for v in x[:, 0]], "n": x[:, 1].astype(np.int64)})


class Dict(Tensor):
    def predict(self, inputs):
        x = np.asarray(inputs, dtype=np.float64)
        return {"label": np.array([f"r{v:.0f}" for v in x[:, 0]], dtype=object),
                "score": x[:, :2].astype(np.float32)}


class Strings(Tensor):
    def predict(self, inputs):
        return [f"r{v:.0f}" for v in np.asarray(inputs, dtype=np.float64)[:, 0]]
"""


@pytest.fixture
def kinds_model(tmp_path: Path) -> str:
    (tmp_path / "kinds.py").write_text(KINDS_MODEL)
    np.save(tmp_path / "example.npy", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    return f"{tmp_path / 'kinds.py'}"


def test_pack_dynamic_axes(tmp_path: Path, kinds_model: str) -> None:
    out = tmp_path / "p"
    proc = tiffin("pack", f"{kinds_model}:Tensor", str(out), "--name", "kinds", "--version", "1",
                  "--example", str(tmp_path / "example.npy"),
                  "--dynamic-axes", "input=1", "--dynamic-axes", "output=1,0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((out / "schema.json").read_text())
    assert schema["inputs"][0]["shape"] == [-1, -1]
    assert schema["outputs"][0]["shape"] == [-1, -1]
    np.save(tmp_path / "wide.npy", np.ones((2, 7)))
    proc = tiffin("predict", str(out), "-i", str(tmp_path / "wide.npy"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[7.0, 14.0, 21.0]] * 2


@pytest.mark.parametrize(
    ("value", "code", "message"),
    [
        ("input=one", 2, "is not NAME=AXIS[,AXIS]"),
        ("tokens=1", 6, "names 'tokens', which is no input or output"),
        ("input=2", 6, "'input' has no axis 2"),
    ],
)
def test_pack_dynamic_axes_bad_values(
    tmp_path: Path, kinds_model: str, value: str, code: int, message: str
) -> None:
    out = tmp_path / "p"
    proc = tiffin("pack", f"{kinds_model}:Tensor", str(out), "--name", "kinds", "--version", "1",
                  "--example", str(tmp_path / "example.npy"), "--dynamic-axes", value)  # fmt: skip
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("value", ["input", "=1", "input=", "input=1,,2", "input=1.5", "x=--1"])
def test_dynamic_axes_option_syntax(value: str) -> None:
    from tiffin.cli.pack_cmd import _dynamic_axes
    from tiffin.errors import UsageError

    with pytest.raises(UsageError, match=r"is not NAME=AXIS\[,AXIS\]") as info:
        _dynamic_axes((value,))
    assert info.value.where == "--dynamic-axes"
    assert _dynamic_axes(("a=1", " a = 2,1 ", "b=-1")) == {"a": [1, 2], "b": [-1]}


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
