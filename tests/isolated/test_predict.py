"""``predict --isolated``: the input read and checked on the host, predicted in the package's
own environment, the child's errors back as the same tiffin errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tiffin
from tests.env.conftest import (  # noqa: F401  (fixtures shared with tests/env)
    custom_source,
    env_cache,
    pack_custom,
    real_capture,
)
from tiffin.isolated.predict import run_isolated

pytestmark = pytest.mark.slow


def test_predict_isolated(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    pkg = pack_custom(custom_source, tmp_path / "p")
    import packaging

    major = int(packaging.__version__.split(".")[0])
    (tmp_path / "in.json").write_text("[[1.0, 2.0]]")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "predict", str(pkg.path), "--input", str(tmp_path / "in.json"), "--isolated"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[1.0 * major, 2.0 * major]]
    # formats are read on the host: a CSV input needs no pandas in the package's environment
    (tmp_path / "in.csv").write_text("a,b\n1.0,2.0\n3.0,4.0\n")
    run_isolated(pkg.path, tmp_path / "in.csv", tmp_path / "out.npy")
    assert np.load(tmp_path / "out.npy").tolist() == [
        [major, 2.0 * major],
        [3.0 * major, 4.0 * major],
    ]


def test_predict_isolated_names_missing_module(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    pkg = pack_custom(custom_source, tmp_path / "p", requirements=["numpy==" + np.__version__])
    (tmp_path / "in.json").write_text("[[1.0, 2.0]]")
    with pytest.raises(tiffin.EnvironmentBuildError, match="'packaging' is missing"):
        run_isolated(pkg.path, tmp_path / "in.json", None)


def test_errors_inside_the_environment_are_tiffin_errors(tmp_path: Path) -> None:
    """The model's own error comes back as the tiffin error it was there, not a traceback."""
    src = tmp_path / "picky.py"
    src.write_text(
        "import numpy as np\n\n"
        "class Picky:\n"
        "    def load(self, context):\n"
        "        pass\n\n"
        "    def predict(self, inputs):\n"
        "        x = np.asarray(inputs, dtype=np.float64)\n"
        "        if (x < 0).any():\n"
        "            raise ValueError('negative amounts are refunds, not payments')\n"
        "        return x\n"
    )
    pkg = tiffin.pack(f"{src}:Picky", tmp_path / "p", name="picky", version="1",
                      example=np.ones((1, 2)))  # fmt: skip
    (tmp_path / "in.json").write_text("[[1.0, -2.0]]")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "predict", str(pkg.path), "--isolated",
         "--input", str(tmp_path / "in.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 8, proc.stderr  # FlavorError's exit code, as in-process
    assert "ValueError: negative amounts are refunds" in proc.stderr
    assert "Traceback" not in proc.stderr and "TIFFIN-ERROR" not in proc.stderr


def test_predict_isolated_checks_the_input_first(
    tmp_path: Path,
    custom_source: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    (tmp_path / "in.json").write_text('[["a", "b", "c"]]')  # strings for a float input
    cache = tmp_path / "untouched-cache"
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(cache))
    with pytest.raises(tiffin.SignatureError):
        run_isolated(pkg.path, tmp_path / "in.json", None)
    assert not cache.exists()  # said before any environment was built
