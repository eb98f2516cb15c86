"""ONNX models (a ``.onnx`` file or an ``onnx.ModelProto``), run with onnxruntime.

The model is stored as ``artifacts/model.onnx``, one self-contained protobuf (weights
kept in external data files are refused: they would sit outside the seal's one file).
A ModelProto is serialized deterministically, so the same model gives the same bytes.

The graph's input names are the model's inputs: one graph input takes a plain array,
several take a dict of arrays by input name. One output comes back as an array, several
as a dict by output name. onnxruntime runs it on the CPU execution provider; with
``options={"device": "cuda"}`` at pack, the CUDA provider goes first where onnxruntime
has it (an onnxruntime without CUDA runs the same graph on the CPU).

A file is taken as ONNX only when ``onnx`` parses it (without external data) into a
model with a graph and an opset: detection fails closed. Without the ``onnx`` package,
a ``.onnx`` name and a protobuf ``ir_version`` header are required instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FlavorError
from . import LoadContext, SaveContext, mro_modules

NAME = "onnx"
FRAMEWORKS = ("onnxruntime", "numpy")
FILE = "artifacts/model.onnx"
DEVICES = ("cpu", "cuda")
# ModelProto field 1 (ir_version) as a varint: serializers write fields in number order.
_HEADER = b"\x08"


def detect(obj: Any) -> bool:
    return hasattr(obj, "graph") and any(
        m == "onnx" or m.startswith("onnx.") for m in mro_modules(obj)
    )


def detect_file(path: Any) -> bool:
    file = Path(path)
    if not file.is_file():
        return False
    with open(file, "rb") as fh:
        if fh.read(1) != _HEADER:
            return False
    try:
        import onnx
    except ImportError:
        return file.suffix == ".onnx"
    try:
        proto = onnx.load(str(file), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends: not an ONNX model
        return False
    return bool(proto.ir_version > 0 and proto.opset_import and proto.graph.output)


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    device = str(ctx.options.get("device", "cpu"))
    if device not in DEVICES:
        raise FlavorError(
            f"unknown ONNX device {device!r}", where="options.device", fix="use 'cpu' or 'cuda'"
        )
    if isinstance(model, (str, Path)):
        data = Path(model).read_bytes()
    else:
        data = model.SerializeToString(deterministic=True)
    _check(data)
    (ctx.artifacts / "model.onnx").write_bytes(data)
    return {"file": FILE, "format": "onnx", "device": device}


def _check(data: bytes) -> None:
    try:
        import onnx
    except ImportError:
        return  # onnxruntime alone can run it; the reload check still proves it loads
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:
        raise FlavorError(f"the ONNX model is invalid: {exc}") from None
    external = [
        t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    if external:
        raise FlavorError(
            f"the ONNX model keeps weights in external data files (tensor {external[0]!r})",
            fix="save it as one file: onnx.save_model(model, path, save_as_external_data=False)",
        )
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise FlavorError(f"the ONNX model is invalid: {exc}") from None


class _Session:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]
        self.outputs = [o.name for o in session.get_outputs()]

    def _feed(self, inputs: Any) -> dict[str, Any]:
        if isinstance(inputs, dict):
            missing = [n for n in self.inputs if n not in inputs]
            unknown = [str(k) for k in inputs if k not in self.inputs]
            if missing or unknown:
                what = (
                    f"input {missing[0]!r} is missing"
                    if missing
                    else f"unknown input {unknown[0]!r}"
                )
                raise FlavorError(
                    f"the ONNX graph's {what}",
                    fix=f"give a dict with the graph's inputs: {', '.join(self.inputs)}",
                )
            return {n: inputs[n] for n in self.inputs}
        if len(self.inputs) != 1:
            raise FlavorError(
                f"the ONNX graph has {len(self.inputs)} inputs ({', '.join(self.inputs)}) "
                "but one array came",
                fix="give a dict of arrays by input name",
            )
        return {self.inputs[0]: inputs}

    def predict(self, inputs: Any) -> Any:
        results = self.session.run(None, self._feed(inputs))
        if len(results) == 1:
            return results[0]
        return dict(zip(self.outputs, results))


def _declared(dims: Any) -> tuple[int, ...] | None:
    """An onnxruntime shape as a signature shape: symbolic or unknown dims are -1."""
    if not isinstance(dims, (list, tuple)):
        return None
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in dims)


def _refine(specs: tuple[Any, ...], graph: list[Any]) -> tuple[Any, ...]:
    from dataclasses import replace

    by_name = {g.name: g for g in graph}
    out = []
    for spec in specs:
        node = by_name.get(spec.name) or (graph[0] if len(specs) == len(graph) == 1 else None)
        shape = _declared(getattr(node, "shape", None))
        out.append(replace(spec, shape=shape) if shape and len(shape) == len(spec.shape) else spec)
    return tuple(out)


def refine_signature(model: Any, signature: Any) -> Any:
    """The graph's declared shapes over the example's: a symbolic dim (batch, sequence
    length) accepts any size, a fixed one only its own; the example shows one size of each.
    """
    from dataclasses import replace

    if not isinstance(model, _Session):
        return signature
    return replace(
        signature,
        inputs=_refine(signature.inputs, model.session.get_inputs()),
        outputs=_refine(signature.outputs, model.session.get_outputs()),
    )


def load(ctx: LoadContext) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise FlavorError("onnxruntime is not installed", fix="pip install onnxruntime") from None
    providers = ["CPUExecutionProvider"]
    if (
        ctx.options.get("device") == "cuda"
        and "CUDAExecutionProvider" in ort.get_available_providers()
    ):
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    path = ctx.file()
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        raise FlavorError(f"onnxruntime could not load the model: {exc}", where=str(path)) from None
    return _Session(session)
