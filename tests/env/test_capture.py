from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tests.env.conftest import pack_custom


def test_import_inside_predict_is_inferred_with_reason(tmp_path: Path, custom_source: Path) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    env = pkg.manifest.environment
    version = metadata.version("packaging")
    assert f"packaging=={version}" in env["requirements"]
    assert any("imported by scaled" in r for r in env["why"]["packaging"])
    assert "numpy" in {r.split("==")[0] for r in env["requirements"]}
    assert (pkg.path / "env/requirements.txt").read_text().splitlines() == env["requirements"]


def test_sklearn_does_not_pull_torch(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    import torch  # installed here on purpose: MLflow would list it

    assert torch.__version__
    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3])
    names = {r.split("==")[0] for r in pkg.manifest.environment["requirements"]}
    assert names == {"numpy", "scikit-learn", "scipy", "skops"}
    assert "torch" not in (pkg.path / "env/requirements.lock").read_text()


def test_local_version_label_is_kept(tmp_path: Path) -> None:
    import sys
    import textwrap

    src = tmp_path / "net.py"
    src.write_text(textwrap.dedent("""
        from torch import nn

        class Net(nn.Module):
            def __init__(self, n=3):
                super().__init__()
                self.n = n
                self.lin = nn.Linear(n, 1)

            def forward(self, x):
                return self.lin(x)
    """))  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:
        import net  # type: ignore[import-not-found]

        pkg = tiffin.pack(net.Net(), tmp_path / "p", name="net", version="1",
                          example=np.ones((1, 3), np.float32), requirements=["+packaging==24.0"])  # fmt: skip
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("net", None)
    env = pkg.manifest.environment
    torch_pin = next(r for r in env["requirements"] if r.startswith("torch=="))
    assert torch_pin == f"torch=={metadata.version('torch')}"
    if "+cpu" in torch_pin:
        assert env["accelerator"]["kind"] == "cpu"
        assert (
            "torch==2.13.0+cpu" in (pkg.path / "env/requirements.lock").read_text()
            or not env["lock"]["hashed"]
        )
    assert "packaging==24.0" in env["requirements"]  # "+" extends
    assert env["difference"] == {"added": ["packaging"], "dropped": []}


def test_user_requirements_replace_and_report(
    tmp_path: Path, custom_source: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p", requirements=["numpy==" + np.__version__])
    env = pkg.manifest.environment
    assert env["requirements"] == ["numpy==" + np.__version__]
    assert env["difference"]["dropped"] == ["packaging"]
    assert "left out ['packaging']" in capfd.readouterr().err


def test_mixed_requirement_syntax_refused(tmp_path: Path, custom_source: Path) -> None:
    with pytest.raises(tiffin.UsageError, match="mix"):
        pack_custom(custom_source, tmp_path / "p", requirements=["+a==1", "b==2"])
    assert not (tmp_path / "p").exists()


def test_inspect_why(tmp_path: Path, custom_source: Path) -> None:
    import subprocess
    import sys

    pkg = pack_custom(custom_source, tmp_path / "p")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "inspect", str(pkg.path), "--why"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "packaging==" in proc.stdout and "imported by scaled" in proc.stdout


def test_dataframe_signature_needs_pandas(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(frame, [0, 1, 0, 1])
    pkg = tiffin.pack(model, tmp_path / "p", name="df", version="1", example=frame.head(2))
    env = pkg.manifest.environment
    assert f"pandas=={pd.__version__}" in env["requirements"]
    assert "DataFrame signature" in " ".join(env["why"]["pandas"])
