from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tiffin
from tiffin import enforce
from tiffin.signature import Signature
from tiffin.tensorspec import TensorSpec

SRC = Path(tiffin.__file__).parent


def _imports(path: Path) -> list[tuple[str, bool]]:
    """Every module a file imports (relative ones resolved), and whether at top level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            name = ("." * node.level) + (node.module or "")
            found.append((name, id(node) in top))
            found += [(f"{name}.{a.name}", id(node) in top) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
    return found


def test_enforce_never_imports_signature() -> None:
    """signature.py imports enforce.py; the other way round (even for types) is a cycle."""
    names = [n for n, _ in _imports(SRC / "enforce.py")]
    assert not [n for n in names if "signature" in n.split(".")], names


def test_signature_modules_import_at_top_level_only() -> None:
    """No import nested in a function or an `if TYPE_CHECKING:` block, where cycles hide."""
    for module in ("signature.py", "enforce.py", "tensorspec.py"):
        inner = [n for n, top in _imports(SRC / module) if not top and n.startswith(".")]
        assert inner == [], f"{module} imports {inner} below its top level"


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
