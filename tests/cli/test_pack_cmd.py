"""``tiffin pack`` and ``tiffin build``: options in, the library's pack called, the result shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli._run import tiffin, tiffin_process


def test_pack_inspect_predict(
    tmp_path: Path, skops_file: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    """The whole path through fresh interpreters, as a user runs it."""
    model, X = iris_pipeline
    out = tmp_path / "iris-1.0.0"
    proc = tiffin_process("pack", str(skops_file), str(out), "--name", "iris", "--version", "1.0.0",
                  "--example", str(tmp_path / "example.npy"), "--description", "Iris", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["name"] == "iris" and result["digest"].startswith("sha256:")

    proc = tiffin_process("inspect", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "iris 1.0.0" in proc.stdout and "Iris" in proc.stdout and "float64" in proc.stdout
    proc = tiffin_process("inspect", str(out), "--json")
    assert json.loads(proc.stdout)["manifest"]["digest"] == result["digest"]

    inputs = tmp_path / "rows.json"
    inputs.write_text(json.dumps(X[:4].tolist()))
    proc = tiffin_process("predict", str(out), "--input", str(inputs))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == model.predict(X[:4]).tolist()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["pack", "{tmp}/nothing.skops", "{tmp}/o", "--name", "x", "--version", "1"],
            2,
            "does not exist",
        ),
        (["pack", "{skops}", "{tmp}/o", "--name", "x", "--version", "latest"], 2, "moving tag"),
        (["pack", "{skops}", "{tmp}/o", "--name", "x", "--version", "1.0 "], 2, "invalid package"),
        (["pack", "{skops}", "{tmp}/o", "--name", "Iris", "--version", "1"], 2, "invalid package"),
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
        (
            ["pack", "{skops}", "{tmp}/o", "--name", "x", "--version", "1", "--metadata", "[1]"],
            2,
            "--metadata must be a JSON object",
        ),
        (
            ["pack", "{skops}", "{tmp}/o", "--name", "x", "--version", "1", "--metadata", "{{no"],
            2,
            "--metadata is not JSON or a JSON file",
        ),
        (
            ["pack", "{skops}", "{tmp}/o", "--name", "x", "--version", "1", "--artifact", "w"],
            2,
            "--artifact 'w' is not NAME=PATH",
        ),
        (["build", "{tmp}"], 2, "no [tool.tiffin] table"),
    ],
)
def test_errors_are_clear(
    tmp_path: Path, packed_iris: Path, skops_file: Path, args: list[str], code: int, message: str
) -> None:
    fmt = {"tmp": str(tmp_path), "pkg": str(packed_iris), "skops": str(skops_file)}
    proc = tiffin(*[a.format(**fmt) for a in args])
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert not (tmp_path / "o").exists()


def test_metadata_from_a_file_and_force(tmp_path: Path, skops_file: Path) -> None:
    """--metadata takes a JSON file as well as JSON text; --description wins over its own;
    --force replaces a package that is there."""
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"license": "MIT", "description": "from the file"}))
    out = tmp_path / "o"
    args = ["pack", str(skops_file), str(out), "--name", "iris", "--version", "1",
            "--example", str(tmp_path / "example.npy"), "--metadata", str(meta)]  # fmt: skip
    proc = tiffin(*args, "--description", "from the flag")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"packed iris 1 -> {out}\ndigest sha256:")
    written = json.loads((out / "tiffin.json").read_text())
    assert written["metadata"]["license"] == "MIT"
    assert written["metadata"]["description"] == "from the flag"
    proc = tiffin(*args, "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads((out / "tiffin.json").read_text())["metadata"]["description"] == "from the file"
    )
    assert json.loads(proc.stdout)["path"] == str(out)


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
    assert message in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("value", ["input", "=1", "input=", "input=1,,2", "input=1.5", "x=--1"])
def test_dynamic_axes_option_syntax(value: str) -> None:
    from tiffin.cli.pack_cmd import _dynamic_axes
    from tiffin.errors import UsageError

    with pytest.raises(UsageError, match=r"is not NAME=AXIS\[,AXIS\]") as info:
        _dynamic_axes((value,))
    assert info.value.where == "--dynamic-axes"
    assert _dynamic_axes(("a=1", " a = 2,1 ", "b=-1")) == {"a": [1, 2], "b": [-1]}
