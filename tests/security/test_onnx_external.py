"""ONNX external data: packed beside the model when it stays there, refused otherwise.

Every refusal is checked with a target that onnxruntime could read and run (a copy of
the real weights outside the package): without tiffin's check the model would load.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import tiffin
from tests.flavors._roundtrip import assert_reproducible, fresh_predict
from tiffin._lint import lint
from tiffin.package.integrity import index_files, read_manifest
from tiffin.security import onnx_external as ext

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
B = np.array([1.0, -1.0, 0.5], np.float32)
X = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)


def _model(*, nodes: list[onnx.NodeProto] | None = None, extra: list[TensorProto] = ()) -> onnx.ModelProto:  # type: ignore[assignment]  # fmt: skip
    """y = x @ W + B, with B produced by the given nodes (a Constant by default)."""
    nodes = nodes or [
        helper.make_node("Constant", [], ["B"], value=numpy_helper.from_array(B, "B"))
    ]
    graph = helper.make_graph(
        [*nodes, helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(W, "W"), *extra],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _if_model(depth: int = 1) -> onnx.ModelProto:
    """B comes from a Constant inside If branches nested ``depth`` deep."""

    def branch(level: int) -> onnx.GraphProto:
        if level == depth:
            inner = [
                helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(B, "Bc"))
            ]
        else:
            inner = [_if_node(level + 1, "b")]
        return helper.make_graph(
            inner,
            f"branch{level}",
            [],
            [helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])],
        )

    def _if_node(level: int, out: str) -> onnx.NodeProto:
        return helper.make_node(
            "If", ["cond"], [out], then_branch=branch(level), else_branch=branch(level)
        )

    cond = helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True)))
    return _model(nodes=[cond, _if_node(1, "B")])


def _externalize(model: onnx.ModelProto, folder: Path, location: str, name: str = "model.onnx") -> Path:  # fmt: skip
    """Save ``model`` with every tensor's data in ``location`` (relative to ``folder``),
    whatever that location says, as a hand-edited file would."""
    data = folder / "weights.bin"
    with open(data, "wb") as fh:
        for tensor in ext._tensors(model):
            if tensor.dims == [] and tensor.data_type == TensorProto.BOOL:
                continue
            raw = numpy_helper.to_array(tensor).tobytes()
            offset = fh.tell()
            fh.write(raw)
            tensor.ClearField("raw_data")
            tensor.ClearField("float_data")
            tensor.data_location = TensorProto.EXTERNAL
            for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):  # fmt: skip
                tensor.external_data.add(key=k, value=v)
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def _reference(x: np.ndarray) -> np.ndarray:
    return x @ W + B


def test_external_data_packs_reproducibly_and_predicts(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    model = _model(nodes=[helper.make_node("Identity", ["B0"], ["B"])],
                   extra=[numpy_helper.from_array(B, "B0")])  # fmt: skip
    onnx.save_model(model, str(src / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=0)  # fmt: skip
    assert len(os.listdir(src)) > 2  # one file per tensor, named by the tensor
    assert_reproducible(src / "m.onnx", tmp_path, name="e", version="1", example=X)
    pkg = tmp_path / "repro-a"
    files = {f.path for f in read_manifest(pkg).files}
    assert {"artifacts/model.onnx", "artifacts/model.onnx.data"} <= files
    assert (pkg / "artifacts/model.onnx.data").read_bytes().startswith(ext.MAGIC)
    refs = ext.external_refs((pkg / "artifacts/model.onnx").read_bytes())
    assert {r.location for r in refs} == {"model.onnx.data"} and len(refs) == 2
    np.testing.assert_allclose(fresh_predict(pkg, X, tmp_path), _reference(X), rtol=1e-6)
    assert not [f for f in lint(pkg) if f.rule in ("TL004", "TL006")]
    # The data file is sealed like any artifact.
    data = pkg / "artifacts/model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 1
    data.write_bytes(bytes(raw))
    with pytest.raises(tiffin.IntegrityError, match="model.onnx.data"):
        tiffin.load(pkg)


def test_subfolder_locations_and_subgraph_constants_are_gathered(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "weights").mkdir(parents=True)
    path = _externalize(_if_model(depth=3), src, "weights/w.bin")
    (src / "weights.bin").rename(src / "weights/w.bin")
    pkg = tiffin.pack(path, tmp_path / "p", name="e", version="1", example=X)
    refs = ext.external_refs((pkg.path / "artifacts/model.onnx").read_bytes())
    assert any("then_branch" in r.where and "If" in r.where for r in refs)
    assert {r.location for r in refs} == {"model.onnx.data"}
    np.testing.assert_allclose(pkg.load().predict(X), _reference(X), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")  # fmt: skip
def test_torch_export_default_data_file(tmp_path: Path) -> None:
    """torch.onnx.export's defaults write the weights of even a tiny MLP (a 16x8 weight
    of 512 bytes) to a ``.data`` file beside the model."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(5, 16)
    src = tmp_path / "mlp.onnx"
    torch.onnx.export(net.eval(), (x,), str(src), input_names=["x"], output_names=["y"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)  # fmt: skip
    assert ext.external_refs(src.read_bytes())  # the weights really are outside
    pkg = tiffin.pack(src, tmp_path / "p", name="mlp", version="1", example=x.numpy())
    assert (pkg.path / "artifacts/model.onnx.data").is_file()
    with torch.no_grad():
        expected = net(torch.cat([x, -x])).numpy()
    got = fresh_predict(pkg.path, np.concatenate([x.numpy(), -x.numpy()]), tmp_path)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not lint(pkg.path)  # no finding: not data, not code


def _outside_cases(tmp_path: Path) -> dict[str, tuple[onnx.ModelProto, str]]:
    outside = tmp_path / "elsewhere"
    outside.mkdir(exist_ok=True)
    return {
        "dotdot": (_model(), "../elsewhere/weights.bin"),
        "absolute": (_model(), str(outside / "weights.bin")),
        "subgraph-constant": (_if_model(depth=2), "../elsewhere/weights.bin"),
        "backslash": (_model(), "..\\elsewhere\\weights.bin"),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "subgraph-constant", "backslash"])
def test_pack_refuses_locations_outside(tmp_path: Path, case: str) -> None:
    model, location = _outside_cases(tmp_path)[case]
    src = tmp_path / "src"
    src.mkdir()
    path = _externalize(model, src, location)
    (src / "weights.bin").rename(tmp_path / "elsewhere/weights.bin")
    with pytest.raises(tiffin.UnsafeArtifactError, match="plain relative path"):
        tiffin.pack(path, tmp_path / "p", name="e", version="1", example=X)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("link", ["file", "folder"])
def test_pack_refuses_links(tmp_path: Path, link: str) -> None:
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    path = _externalize(_model(), src, "w/weights.bin" if link == "folder" else "weights.lnk")
    if link == "folder":
        (src / "weights.bin").rename(src / "real/weights.bin")
        (src / "w").symlink_to(src / "real")
    else:
        (src / "weights.lnk").symlink_to(src / "weights.bin")
    with pytest.raises(tiffin.UnsafeArtifactError, match="goes through a link"):
        tiffin.pack(path, tmp_path / "p", name="e", version="1", example=X)


def test_pack_refuses_a_model_proto_with_external_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = _externalize(_model(), src, "weights.bin")
    proto = onnx.load(str(path), load_external_data=False)
    with pytest.raises(tiffin.FlavorError, match="pass the .onnx file's path"):
        tiffin.pack(proto, tmp_path / "p", name="e", version="1", example=X)
    assert tiffin.pack(onnx.load(str(path)), tmp_path / "q", name="e", version="1", example=X)


def _repoint(pkg: Path, location: str) -> None:
    """What an attacker who can write the whole folder does: edit the model, re-seal."""
    model_path = pkg / "artifacts/model.onnx"
    model = onnx.load(str(model_path), load_external_data=False)
    for tensor in ext._tensors(model):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    model_path.write_bytes(model.SerializeToString())
    old = read_manifest(pkg)
    import dataclasses

    (pkg / "tiffin.json").write_bytes(
        dataclasses.replace(old, files=index_files(pkg)).seal().to_bytes()
    )


@pytest.mark.parametrize("case", ["dotdot", "absolute", "subgraph-constant", "unlisted"])
def test_load_refuses_locations_outside_before_onnxruntime(tmp_path: Path, case: str) -> None:
    model = _if_model(depth=2) if case == "subgraph-constant" else _model()
    src = tmp_path / "src"
    src.mkdir()
    path = _externalize(model, src, "weights.bin")
    pkg = tiffin.pack(path, tmp_path / "p", name="e", version="1", example=X).path
    # A readable copy of the weights outside the package: onnxruntime would run it.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(pkg / "artifacts/model.onnx.data", outside / "weights.bin")
    location = {
        "dotdot": "../../elsewhere/weights.bin",
        "absolute": str(outside / "weights.bin"),
        "subgraph-constant": "../../elsewhere/weights.bin",
        "unlisted": "model.onnx.data2",
    }[case]
    _repoint(pkg, location)
    findings = [f for f in lint(pkg) if f.rule == "TL006"]
    if case == "unlisted":
        # A name that is not there: onnxruntime would fail; tiffin says why first.
        with pytest.raises(tiffin.UnsafeArtifactError, match="does not exist beside the model"):
            tiffin.load(pkg)
        (pkg / "artifacts/model.onnx.data2").write_bytes(b"")
        with pytest.raises(tiffin.IntegrityError, match="model.onnx.data2"):
            tiffin.load(pkg)
        return
    assert findings and "external data" in findings[0].message
    with pytest.raises(tiffin.UnsafeArtifactError, match="plain relative path") as err:
        tiffin.load(pkg)
    if case == "subgraph-constant":
        assert "(If)" in str(err.value) and "_branch.node[0](Constant).value" in str(err.value)
    # allow_pickle turns the sniffer off; the flavor still checks before onnxruntime.
    with pytest.raises(tiffin.UnsafeArtifactError, match="plain relative path"):
        tiffin.load(pkg, allow_pickle=True)


def test_load_refuses_a_link_in_the_package(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    pkg = tiffin.pack(_externalize(_model(), src, "weights.bin"), tmp_path / "p", name="e",
                      version="1", example=X).path  # fmt: skip
    data = pkg / "artifacts/model.onnx.data"
    shutil.move(data, tmp_path / "real.data")
    data.symlink_to(tmp_path / "real.data")
    with pytest.raises(tiffin.IntegrityError, match="model.onnx.data"):
        tiffin.load(pkg)


def test_walker_finds_every_place_a_tensor_hides() -> None:
    def ext_tensor(name: str) -> TensorProto:
        t = numpy_helper.from_array(B, name)
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=f"{name}.bin")
        return t

    sparse = helper.make_sparse_tensor(ext_tensor("sv"), ext_tensor("si"), [3])
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], sparse_value=sparse)], "body", [], [],
        initializer=[ext_tensor("body_init")],
    )  # fmt: skip
    loop = helper.make_node("Loop", ["n", "c0"], ["out"], body=body)
    scan = helper.make_node("Scan", ["s"], ["o"], body=helper.make_graph(
        [helper.make_node("Constant", [], ["k"], value=ext_tensor("scan_value"))], "sb", [], []))  # fmt: skip
    graph = helper.make_graph([loop, scan], "g", [], [], initializer=[ext_tensor("init")])
    graph.sparse_initializer.append(helper.make_sparse_tensor(ext_tensor("gsv"), ext_tensor("gsi"), [3]))  # fmt: skip
    model = helper.make_model(graph)
    fn = model.functions.add()
    fn.name, fn.domain = "f", "local"
    fn.node.append(helper.make_node("Constant", [], ["z"], value=ext_tensor("fn_value")))
    found = {r.location for r in ext.external_refs(model.SerializeToString())}
    assert found == {f"{n}.bin" for n in ("sv", "si", "body_init", "scan_value", "init", "gsv", "gsi", "fn_value")}  # fmt: skip
    # The onnx-object walk used to rewrite locations at pack sees the same tensors.
    assert {t.name for t in ext._tensors(model)} >= {"sv", "si", "body_init", "scan_value", "init", "gsv", "gsi", "fn_value"}  # fmt: skip


def test_walker_fails_closed() -> None:
    with pytest.raises(ext.ProtoError):
        ext.external_refs(b"\x3a\xff\xff\xff\xff\x0f")  # a length past the end
    with pytest.raises(ext.ProtoError):
        ext.external_refs(b"\x0b")  # a group

    # Graphs nested past the bound: refused, not a RecursionError.
    # (protobuf itself will not build it, so it is written field by field)
    def field(number: int, payload: bytes) -> bytes:
        size, n = b"", len(payload)
        while True:
            size += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return bytes([number << 3 | 2]) + size + payload

    graph = b""
    for _ in range(1000):
        attribute = field(1, b"then_branch") + field(6, graph)
        graph = field(1, field(4, b"If") + field(5, attribute))
    with pytest.raises(ext.ProtoError, match="nested"):
        ext.external_refs(field(7, graph))
    # A location repeated with a bad second value is judged by every value.
    t = numpy_helper.from_array(B, "t")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="ok.bin")
    t.external_data.add(key="location", value="/etc/passwd")
    t.external_data.add(key="offset", value="-4")
    t.external_data.add(key="length", value="9" * 5000)  # past int()'s digit limit
    refs = ext.external_refs(helper.make_model(helper.make_graph([], "g", [], [], initializer=[t])).SerializeToString())  # fmt: skip
    assert [ext.location_problem(r) is None for r in refs] == [False, False]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_walker_on_damaged_models_raises_only_proto_errors(data: st.DataObject) -> None:
    raw = bytearray(_if_model(depth=2).SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(bytes(raw[:cut]))
        problem = ext.model_problem(path)  # the sniffer's view: a verdict, never a crash
    try:
        refs = ext.external_refs(bytes(raw[:cut]))
    except ext.ProtoError:
        assert problem and "not a readable ONNX protobuf" in problem
        return
    assert all(isinstance(r.where, str) for r in refs)
    assert (problem is None) == (not refs)  # nothing external is written beside it


def test_data_file_sniffs_as_tensor_data(tmp_path: Path) -> None:
    from tiffin.flavors import byte_formats
    from tiffin.security import sniff as sniffing_module
    from tiffin.security.sniff import sniff as sniffing

    def sniff(path: Path) -> sniffing_module.Verdict:
        return sniffing(path, formats=byte_formats())

    path = tmp_path / "model.onnx.data"
    path.write_bytes(ext.header() + np.random.default_rng(0).bytes(1 << 16))
    verdict = sniff(path)
    assert verdict.kind == "onnx-data" and not verdict.carries_code
    raw = tmp_path / "weights.bin"
    raw.write_bytes(np.random.default_rng(0).bytes(1 << 16))
    assert sniff(raw).carries_code  # raw bytes without the header stay unknown
