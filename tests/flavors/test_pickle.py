from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tests.conftest import run_python

SRC = textwrap.dedent(
    """
    import numpy as np


    class Thresholder:
        def __init__(self, cut):
            self.cut = cut
            self.weights = np.array([0.5, 2.0])

        def predict(self, x):
            return (np.asarray(x) @ self.weights > self.cut).astype(np.int64)
    """
)


@pytest.fixture
def thresholder(tmp_path: Path) -> Any:
    import importlib.util
    import sys

    src = tmp_path / "src" / "thresh.py"
    src.parent.mkdir()
    src.write_text(SRC)
    spec = importlib.util.spec_from_file_location("thresh", src)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["thresh"] = module
    spec.loader.exec_module(module)
    yield module.Thresholder(1.0)
    sys.modules.pop("thresh", None)


def test_refused_without_opt_in(tmp_path: Path, thresholder: Any) -> None:
    with pytest.raises(tiffin.UnsafeArtifactError, match="allow_pickle=True"):
        tiffin.pack(thresholder, tmp_path / "p", name="t", version="1", example=np.ones((2, 2)))
    assert not (tmp_path / "p").exists()


def test_round_trip_with_opt_in_twice(tmp_path: Path, thresholder: Any) -> None:
    pkg = tiffin.pack(
        thresholder,
        tmp_path / "p",
        name="t",
        version="1",
        example=np.ones((2, 2)),
        allow_pickle=True,
    )
    assert pkg.manifest.flavor == "pickle"
    assert (pkg.path / "code" / "thresh.py").is_file()
    with pytest.raises(tiffin.UnsafeArtifactError, match="model.pkl is pickle"):
        tiffin.load(pkg.path)
    (tmp_path / "src" / "thresh.py").unlink()
    proc = run_python(
        f"""
        import numpy as np, tiffin
        m = tiffin.load({str(pkg.path)!r}, allow_pickle=True)
        print(m.predict(np.array([[1.0, 1.0], [0.0, 0.1]])).tolist())
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1, 0]"
