from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tests.conftest import predict_in_fresh_process, run_python
from tests.flavors._roundtrip import assert_reproducible, fresh_predict

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


    class Tied(nn.Module):
        def __init__(self, vocab=7, dim=4):
            super().__init__()
            self.vocab, self.dim = vocab, dim
            self.embed = nn.Embedding(vocab, dim)
            self.out = nn.Linear(dim, vocab, bias=False)
            self.out.weight = self.embed.weight  # tied: one tensor under two names
            self.register_buffer("scale", torch.arange(dim * 2.0).reshape(2, dim).t()[:, 0])

        def forward(self, ids):
            return self.out(self.embed(ids) * self.scale)


    class Pair(nn.Module):
        def __init__(self, width=3):
            super().__init__()
            self.width = width
            self.w = nn.Parameter(torch.linspace(-1, 1, width))

        def forward(self, a, b):
            return {"sum": a + b * self.w, "prod": a * b}


    class Doubled(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale * 2  # not what was passed: guessing gets it wrong
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            return self.lin(x) * self.scale


    class Shifted(nn.Module):
        def __init__(self, n=3):
            super().__init__()
            self.n = n
            self.lin = nn.Linear(n, 2)
            # not in state_dict: a value set after construction is not saved
            self.register_buffer("shift", torch.zeros(n), persistent=False)

        def forward(self, x):
            return self.lin(x + self.shift)


    class Attr(nn.Module):
        def __init__(self, n=3):
            super().__init__()
            self.n = n
            self.lin = nn.Linear(n, 2)
            self.offset = 0.0  # a plain attribute: no state_dict entry at all

        def forward(self, x):
            return self.lin(x) + self.offset


    class Mixed(nn.Module):
        def __init__(self, n=3):
            super().__init__()
            self.n = n
            self.lin = nn.Linear(n, 4)
            self.norm = nn.LayerNorm(4)
            self.register_buffer("scale", torch.full((4,), 0.5))
            self.register_buffer("steps", torch.tensor(7))
            self.register_buffer("bias2", torch.ones(4), persistent=False)

        def forward(self, x):
            return self.norm(self.lin(x)) * self.scale + self.bias2 * self.steps


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


def test_tied_weights_and_buffers(tmp_path: Path, mlp_module: Any) -> None:
    import torch

    torch.manual_seed(1)
    net = mlp_module.Tied()
    ids = np.array([[0, 3, 6], [1, 1, 2]], dtype=np.int64)
    with torch.no_grad():
        expected = net(torch.from_numpy(ids)).numpy()
    pkg = tiffin.pack(net, tmp_path / "p", name="t", version="1", example=ids)
    got = fresh_predict(pkg.path, ids, tmp_path)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_dict_inputs_and_outputs(tmp_path: Path, mlp_module: Any) -> None:
    net = mlp_module.Pair()
    rng = np.random.default_rng(3)
    a, b = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(2))
    pkg = tiffin.pack(net, tmp_path / "p", name="d", version="1", example={"a": a, "b": b})
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    got = predict_in_fresh_process(pkg.path, "{'a': np.load('a.npy'), 'b': np.load('b.npy')}",
                                   tmp_path)  # fmt: skip
    w = np.linspace(-1, 1, 3, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(got["sum"], np.float32), a + b * w, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["prod"], np.float32), a * b, atol=1e-6)


def test_wrong_guess_caught_at_pack(tmp_path: Path, mlp_module: Any) -> None:
    net = mlp_module.Doubled(1.5)
    x = np.ones((2, 2), np.float32)
    with pytest.raises(tiffin.FlavorError, match="computes something else") as info:
        tiffin.pack(net, tmp_path / "p", name="d", version="1", example=x)
    assert "init_kwargs" in (info.value.fix or "")
    assert not (tmp_path / "p").exists()
    pkg = tiffin.pack(net, tmp_path / "q", name="d", version="1", example=x,
                      options={"init_kwargs": {"scale": 1.5}})  # fmt: skip
    assert pkg.manifest.runtime["options"]["init_kwargs"] == {"scale": 1.5}


def test_bad_classes_and_options(tmp_path: Path, mlp_module: Any) -> None:
    import torch

    x = np.ones((1, 3), np.float32)
    seq = torch.nn.Sequential(torch.nn.Linear(3, 1))
    with pytest.raises(tiffin.FlavorError, match="not a class from your own source file"):
        tiffin.pack(seq, tmp_path / "a", name="s", version="1", example=x)
    net = mlp_module.Opaque(3)
    with pytest.raises(tiffin.FlavorError, match="init_kwargs do not fit Opaque"):
        tiffin.pack(net, tmp_path / "b", name="o", version="1", example=x,
                    options={"init_kwargs": {"size": 3, "depth": 2}})  # fmt: skip
    with pytest.raises(tiffin.FlavorError, match="unknown torch device 'tpu'"):
        tiffin.pack(net, tmp_path / "c", name="o", version="1", example=x,
                    options={"init_kwargs": {"size": 3}, "device": "tpu"})  # fmt: skip
    assert not any(p.name in ("a", "b", "c") for p in tmp_path.iterdir())


def test_cuda_device_option(tmp_path: Path, mlp_module: Any) -> None:
    import torch

    net = mlp_module.MLP(4).eval()
    x = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)
    pkg = tiffin.pack(net, tmp_path / "p", name="m", version="1", example=x,
                      options={"device": "cuda"})  # fmt: skip
    assert pkg.manifest.runtime["options"]["device"] == "cuda"
    m = tiffin.load(pkg.path)
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(m._model.module.parameters()).device.type == want
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m.predict(x), expected, rtol=1e-5, atol=1e-5)


def test_sibling_modules_of_the_class_file_are_packed(tmp_path: Path) -> None:
    """``import helpers`` beside the class file works in the packer; it must in the package."""
    proj = tmp_path / "proj"
    (proj / "blocks").mkdir(parents=True)
    (proj / "helpers.py").write_text("import torch\n\ndef act(x):\n    return torch.relu(x) * 2\n")
    (proj / "blocks" / "__init__.py").write_text("from .norm import Block\n")
    (proj / "blocks" / "norm.py").write_text(
        "from torch import nn\nimport helpers\n\n"
        "class Block(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n"
        "        self.lin, self.bn = nn.Linear(n, n), nn.BatchNorm1d(n)\n\n"
        "    def forward(self, x):\n"
        "        return helpers.act(self.bn(self.lin(x)))\n"
    )
    (proj / "net.py").write_text(
        "from torch import nn\nfrom blocks import Block\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n_in):\n"
        "        super().__init__()\n"
        "        self.n_in = n_in\n"
        "        self.body = nn.Sequential(Block(n_in), Block(n_in), nn.Linear(n_in, 2))\n\n"
        "    def forward(self, x):\n"
        "        return self.body(x)\n"
    )
    dest = tmp_path / "pkg"
    proc = run_python(
        f"""
        import sys, numpy as np, torch, tiffin
        sys.path.insert(0, {str(proj)!r})
        from net import Net
        torch.manual_seed(0)
        net = Net(4)
        x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        net(torch.from_numpy(x))  # training mode: moves the BatchNorm running statistics
        net.eval()
        tiffin.pack(net, {str(dest)!r}, name="net", version="1", example=x[:4])
        with torch.no_grad():
            np.save({str(tmp_path / "want.npy")!r}, net(torch.from_numpy(x)).numpy())
        np.save({str(tmp_path / "x.npy")!r}, x)
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (dest / "code").iterdir()) == ["blocks", "helpers.py", "net.py"]
    shutil.rmtree(proj)  # the package alone must be enough
    got = fresh_predict(dest, np.load(tmp_path / "x.npy"), tmp_path)
    np.testing.assert_allclose(got, np.load(tmp_path / "want.npy"), rtol=0, atol=1e-6)


def test_same_named_installed_module_is_not_copied(tmp_path: Path, mlp_module: Any) -> None:
    """A file beside the class that shadows nothing the class really imports stays out."""
    (tmp_path / "src" / "torch.py").write_text("raise ImportError('not the real torch')\n")
    net = mlp_module.MLP(3).eval()
    pkg = tiffin.pack(net, tmp_path / "p", name="mlp", version="1", example=np.ones((2, 3), "f4"))
    assert sorted(p.name for p in (pkg.path / "code").iterdir()) == ["mlp_model.py"]


def test_state_outside_the_state_dict_is_refused(tmp_path: Path, mlp_module: Any) -> None:
    """A rebuilt module that answers otherwise must stop the pack, naming what differs."""
    x = np.ones((2, 3), np.float32)
    net = mlp_module.Shifted()
    net.shift += 5.0
    with pytest.raises(tiffin.FlavorError, match="non-persistent buffer 'shift'") as info:
        tiffin.pack(net, tmp_path / "a", name="s", version="1", example=x)
    assert "persistent=True" in (info.value.fix or "")
    net = mlp_module.Attr()
    net.offset = 2.5
    with pytest.raises(tiffin.FlavorError, match="does not reproduce") as info:
        tiffin.pack(net, tmp_path / "b", name="s", version="1", example=x)
    assert "'output'" in info.value.message and "largest difference 2.5" in info.value.message
    assert not any(p.name in ("a", "b") for p in tmp_path.iterdir())
    # An unchanged non-persistent buffer is rebuilt by the constructor: nothing to refuse.
    pkg = tiffin.pack(mlp_module.Shifted(), tmp_path / "c", name="s", version="1", example=x)
    assert tiffin.load(pkg.path).predict(x).shape == (2, 2)


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_dtypes_are_kept(tmp_path: Path, mlp_module: Any, dtype: str) -> None:
    import torch

    from tiffin.schema import typed_json as examples

    torch.manual_seed(0)
    net = mlp_module.Mixed().to(getattr(torch, dtype)).eval()
    want = {k: v.dtype for k, v in net.state_dict().items()}
    want["bias2"] = net.bias2.dtype
    assert want["steps"] == torch.int64 and want["scale"] == getattr(torch, dtype)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    pkg = tiffin.pack(net, tmp_path / "p", name="d", version="1", example=x)
    # numpy has no bfloat16: such a module takes and gives float32, computing in bfloat16
    np_dtype = "float32" if dtype == "bfloat16" else dtype
    schema = pkg.load().signature
    assert [s.dtype for s in schema.inputs] == [np_dtype] == [s.dtype for s in schema.outputs]
    recorded = examples.loads((pkg.path / "examples/input.json").read_bytes())
    assert recorded.dtype == np.dtype(np_dtype)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x).to(getattr(torch, dtype))).float().numpy()
    proc = run_python(
        f"""
        import json, numpy as np, tiffin
        m = tiffin.load({str(pkg.path)!r})
        module = m._model.module
        tensors = dict(module.named_parameters()) | dict(module.named_buffers())
        print(json.dumps({{k: str(v.dtype) for k, v in tensors.items()}}))
        out = m.predict(np.asarray({x.tolist()!r}, dtype={np_dtype!r}))
        print(json.dumps([str(out.dtype), out.astype(float).tolist()]))
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[-2]) == {k: str(v) for k, v in want.items()}
    out_dtype, out = json.loads(lines[-1])
    assert out_dtype == np_dtype
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-2)
