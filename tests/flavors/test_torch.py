from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tests.conftest import run_python
from tests.flavors._roundtrip import assert_reproducible

SRC = textwrap.dedent(
    """
    import torch
    from torch import nn


    class MLP(nn.Module):
        def __init__(self, n_in, hidden=16, n_out=3):
            super().__init__()
            self.n_in, self.hidden, self.n_out = n_in, hidden, n_out
            self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))

        def forward(self, x):
            return self.net(x)


    class Opaque(nn.Module):
        def __init__(self, size):
            super().__init__()
            self.lin = nn.Linear(size, 1)

        def forward(self, x):
            return self.lin(x)
    """
)


@pytest.fixture
def mlp_module(tmp_path: Path) -> Any:
    import importlib.util
    import sys

    src = tmp_path / "src" / "mlp_model.py"
    src.parent.mkdir()
    src.write_text(SRC)
    spec = importlib.util.spec_from_file_location("mlp_model", src)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["mlp_model"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("mlp_model", None)


def test_round_trip_with_source_deleted(tmp_path: Path, mlp_module: Any) -> None:
    import torch

    torch.manual_seed(0)
    net = mlp_module.MLP(5, hidden=8).eval()
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    pkg = tiffin.pack(net, tmp_path / "p", name="mlp", version="1", example=x)
    options = pkg.manifest.runtime["options"]
    assert pkg.manifest.flavor == "torch" and options["init_kwargs"] == {
        "n_in": 5,
        "hidden": 8,
        "n_out": 3,
    }
    assert (pkg.path / "code" / "mlp_model.py").is_file()
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    (tmp_path / "src" / "mlp_model.py").unlink()
    np.save(tmp_path / "x.npy", x)
    proc = run_python(
        f"""
        import numpy as np, tiffin
        out = tiffin.load({str(pkg.path)!r}).predict(np.load({str(tmp_path / "x.npy")!r}))
        np.save({str(tmp_path / "y.npy")!r}, out)
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=0, atol=1e-6)


def test_reproducible(tmp_path: Path, mlp_module: Any) -> None:
    net = mlp_module.MLP(4).eval()
    assert_reproducible(net, tmp_path, name="mlp", version="1", example=np.ones((2, 4), np.float32))


def test_init_kwargs_needed(tmp_path: Path, mlp_module: Any) -> None:
    net = mlp_module.Opaque(3)
    with pytest.raises(tiffin.FlavorError, match="argument 'size'"):
        tiffin.pack(net, tmp_path / "p", name="o", version="1", example=np.ones((1, 3), np.float32))
    pkg = tiffin.pack(net, tmp_path / "q", name="o", version="1", example=np.ones((1, 3), np.float32),
                      options={"init_kwargs": {"size": 3}})  # fmt: skip
    assert tiffin.load(pkg.path).predict(np.ones((2, 3), np.float32)).shape == (2, 1)


def test_errors(tmp_path: Path, mlp_module: Any) -> None:
    net = mlp_module.MLP(4).eval()
    pkg = tiffin.pack(
        net, tmp_path / "p", name="m", version="1", example=np.ones((2, 4), np.float32)
    )
    m = tiffin.load(pkg.path)
    with pytest.raises(tiffin.SignatureError, match="expects dtype float32"):
        m.predict(np.ones((2, 4)))
    with pytest.raises(tiffin.SignatureError, match="expects shape"):
        m.predict(np.ones((2, 5), np.float32))
    weights = pkg.path / "artifacts/model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(tiffin.IntegrityError, match="model.safetensors"):
        tiffin.load(pkg.path)


def test_class_in_main_refused(tmp_path: Path) -> None:
    proc = run_python(
        f"""
        import numpy as np, torch, tiffin
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.l = torch.nn.Linear(2, 1)
            def forward(self, x):
                return self.l(x)
        try:
            tiffin.pack(Net(), {str(tmp_path / "p")!r}, name="n", version="1", example=np.ones((1, 2), np.float32))
        except tiffin.FlavorError as exc:
            print("refused:", exc.message)
        """,
        cwd=tmp_path,
    )
    assert "refused: the source file of class Net cannot be found" in proc.stdout, proc.stderr
