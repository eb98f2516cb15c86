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
        (["pack", "{skops}", "{tmp}/o", "--name", "x", "--version", "latest"], 5, "moving tag"),
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
