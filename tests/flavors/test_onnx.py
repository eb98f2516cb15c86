from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tiffin
from tests.flavors._roundtrip import assert_reproducible, fresh_predict


def linear_model(n_in: int = 4, n_out: int = 2) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(n_out,)).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_out])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    w = numpy_helper.to_array(model.graph.initializer[0])
    b = numpy_helper.to_array(model.graph.initializer[1])
    return x @ w + b


def test_model_proto_round_trip(tmp_path: Path) -> None:
    model = linear_model()
    x = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    pkg = tiffin.pack(model, tmp_path / "p", name="o", version="1", example=x[:2])
    assert pkg.manifest.flavor == "onnx"
    np.testing.assert_allclose(fresh_predict(pkg.path, x, tmp_path), reference(model, x), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_file_and_torch_export(tmp_path: Path) -> None:
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).eval()
    src = tmp_path / "mlp.onnx"
    x = torch.randn(5, 3)
    torch.onnx.export(net, (x,), str(src), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)  # fmt: skip
    pkg = tiffin.pack(src, tmp_path / "p", name="o", version="1", example=x.numpy())
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(tiffin.load(pkg.path).predict(x.numpy()), expected, atol=1e-5)


def test_reproducible_and_errors(tmp_path: Path) -> None:
    model = linear_model()
    x = np.ones((2, 4), np.float32)
    assert_reproducible(model, tmp_path, name="o", version="1", example=x)
    m = tiffin.load(tmp_path / "repro-a")
    with pytest.raises(tiffin.SignatureError, match="expects dtype float32"):
        m.predict(np.ones((2, 4)))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08" + b"garbage" * 10)
    with pytest.raises(tiffin.FlavorError, match="invalid"):
        tiffin.pack(bad, tmp_path / "b", name="o", version="1", example=x)
    assert not (tmp_path / "b").exists()
