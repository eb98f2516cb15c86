from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tiffin
from tests.conftest import predict_in_fresh_process
from tests.flavors._roundtrip import assert_reproducible, fresh_predict
from tiffin.flavors import onnx as flavor


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


def two_in_two_out() -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Mul", ["a", "b"], ["prod"]),
        ],
        "pair",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["batch", 3]),
        ],
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


def test_named_inputs_and_outputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a, b = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(2))
    model = two_in_two_out()
    pkg = tiffin.pack(model, tmp_path / "p", name="o", version="1", example={"a": a, "b": b})
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    got = predict_in_fresh_process(
        pkg.path, "{'a': np.load('a.npy'), 'b': np.load('b.npy')}", tmp_path
    )
    np.testing.assert_array_equal(np.asarray(got["sum"], np.float32), a + b)
    np.testing.assert_array_equal(np.asarray(got["prod"], np.float32), a * b)
    m = tiffin.load(pkg.path)
    assert [spec.name for spec in m.signature.inputs] == ["a", "b"]
    with pytest.raises(tiffin.SignatureError, match="'b'"):
        m.predict({"a": a})
    with pytest.raises(tiffin.FlavorError, match="has 2 inputs \\(a, b\\) but one array came"):
        tiffin.pack(model, tmp_path / "q", name="o", version="1", example=a)
    assert not (tmp_path / "q").exists()


def test_detect_file_fails_closed(tmp_path: Path) -> None:
    good = tmp_path / "m.bin"  # any name: parsed, not guessed
    good.write_bytes(linear_model().SerializeToString())
    assert flavor.detect_file(good)
    for name, body in [
        ("garbage.onnx", b"\x08" + b"garbage" * 10),
        ("empty.onnx", b""),
        ("text.onnx", b"hello"),
        ("proto.onnx", b"\x08\x08"),  # parses, but no graph or opset
    ]:
        (tmp_path / name).write_bytes(body)
        assert not flavor.detect_file(tmp_path / name), name
    assert not flavor.detect_file(tmp_path / "missing.onnx")


def test_reproducible_and_errors(tmp_path: Path) -> None:
    model = linear_model()
    x = np.ones((2, 4), np.float32)
    assert_reproducible(model, tmp_path, name="o", version="1", example=x)
    m = tiffin.load(tmp_path / "repro-a")
    with pytest.raises(tiffin.SignatureError, match="expects dtype float32"):
        m.predict(np.ones((2, 4)))
    with pytest.raises(tiffin.SignatureError, match="expects shape"):
        m.predict(np.ones((2, 5), np.float32))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08" + b"garbage" * 10)
    with pytest.raises(tiffin.FlavorError, match="no flavor recognises"):
        tiffin.pack(bad, tmp_path / "b", name="o", version="1", example=x)
    with pytest.raises(tiffin.FlavorError, match="the ONNX model is invalid"):
        tiffin.pack(bad, tmp_path / "b", name="o", version="1", example=x, flavor="onnx")
    with pytest.raises(tiffin.FlavorError, match="unknown ONNX device 'tpu'"):
        tiffin.pack(model, tmp_path / "b", name="o", version="1", example=x,
                    options={"device": "tpu"})  # fmt: skip
    assert not (tmp_path / "b").exists()
    art = tmp_path / "repro-a/artifacts/model.onnx"
    raw = bytearray(art.read_bytes())
    raw[-3] ^= 1
    art.write_bytes(bytes(raw))
    with pytest.raises(tiffin.IntegrityError, match="artifacts/model.onnx"):
        tiffin.load(tmp_path / "repro-a")


def test_external_data_beside_the_model_is_packed(tmp_path: Path) -> None:
    """The refusals and the places a location can hide: tests/security/test_onnx_external.py."""
    model = linear_model()
    x = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    expected = reference(model, x)
    src = tmp_path / "ext.onnx"
    onnx.save_model(model, str(src), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)  # fmt: skip
    pkg = tiffin.pack(src, tmp_path / "p", name="o", version="1", example=x)
    assert (pkg.path / "artifacts/model.onnx.data").is_file()
    np.testing.assert_allclose(fresh_predict(pkg.path, x, tmp_path), expected, rtol=1e-6)


def test_cuda_device_runs_where_available(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = linear_model()
    x = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    pkg = tiffin.pack(model, tmp_path / "p", name="o", version="1", example=x,
                      options={"device": "cuda"})  # fmt: skip
    assert pkg.manifest.runtime["options"]["device"] == "cuda"
    m = tiffin.load(pkg.path)
    expected = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        expected.insert(0, "CUDAExecutionProvider")
    assert m._model.session.get_providers() == expected
    np.testing.assert_allclose(m.predict(x), reference(model, x), rtol=1e-5, atol=1e-5)


def _relu(shape: list[int | str]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_signature_follows_the_graph_shapes(tmp_path: Path) -> None:
    """The example shows one sequence length; the graph says which dims are dynamic."""
    pkg = tiffin.pack(_relu(["batch", "time"]), tmp_path / "seq", name="seq", version="1",
                      example=np.ones((2, 5), np.float32))  # fmt: skip
    model = pkg.load()
    assert [s.shape for s in model.signature.inputs] == [(-1, -1)]
    assert model.predict(-np.ones((3, 9), np.float32)).shape == (3, 9)
    # A fixed batch of one: the signature says so, and requests are never merged.
    pkg = tiffin.pack(_relu([1, 3]), tmp_path / "one", name="one", version="1",
                      example=np.ones((1, 3), np.float32))  # fmt: skip
    model = pkg.load()
    assert model.signature.inputs[0].shape == (1, 3) and not model.signature.batchable
    with pytest.raises(tiffin.SignatureError, match=r"expects shape \[1, 3\]"):
        model.predict(np.ones((2, 3), np.float32))
