"""ONNX models (a ``.onnx`` file or an ``onnx.ModelProto``), run with onnxruntime.

One graph input takes a plain array; several take a dict by input name. One output
comes back as an array; several as a dict by output name. The CUDA execution provider
is used when onnxruntime has it and the runtime option ``device`` is ``cuda``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FlavorError
from . import LoadContext, SaveContext, mro_modules

NAME = "onnx"
FRAMEWORKS = ("onnxruntime", "numpy")
FILE = "artifacts/model.onnx"


def detect(obj: Any) -> bool:
    return any(m.startswith("onnx") for m in mro_modules(obj)) and hasattr(obj, "graph")


def detect_file(path: Any) -> bool:
    path = Path(path)
    if path.suffix != ".onnx" or not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(2)
    return head[:1] == b"\x08"  # protobuf field 1 (ir_version), varint


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    dest = ctx.artifacts / "model.onnx"
    if isinstance(model, (str, Path)):
        data = Path(model).read_bytes()
    else:
        data = model.SerializeToString(deterministic=True)
    try:
        import onnx
    except ImportError:
        onnx = None  # type: ignore[assignment]  # onnxruntime alone can run it; the reload check still proves it loads
    if onnx is not None:
        try:
            proto = onnx.load_from_string(data)
            onnx.checker.check_model(proto)
        except Exception as exc:
            raise FlavorError(f"the ONNX model is invalid: {exc}") from None
        if any(init.data_location == 1 for init in proto.graph.initializer):
            raise FlavorError(
                "the ONNX model keeps weights in external data files",
                fix="save it with onnx.save_model(..., save_as_external_data=False)",
            )
    dest.write_bytes(data)
    return {"file": FILE, "format": "onnx", "device": ctx.options.get("device", "cpu")}


class _Session:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]
        self.outputs = [o.name for o in session.get_outputs()]

    def predict(self, inputs: Any) -> Any:
        feed = dict(inputs) if isinstance(inputs, dict) else {self.inputs[0]: inputs}
        results = self.session.run(None, feed)
        if len(results) == 1:
            return results[0]
        return dict(zip(self.outputs, results))


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
    try:
        session = ort.InferenceSession(str(ctx.file()), sess_options=opts, providers=providers)
    except Exception as exc:
        raise FlavorError(
            f"onnxruntime could not load the model: {exc}", where=str(ctx.file())
        ) from None
    return _Session(session)
