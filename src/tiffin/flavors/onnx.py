"""ONNX models (a ``.onnx`` file or an ``onnx.ModelProto``), run with onnxruntime.

The model is stored as ``artifacts/model.onnx``. A ModelProto is serialized
deterministically, so the same model gives the same bytes.

External data (weights kept beside the model file, as ``torch.onnx.export`` writes them
and as every model over 2 GB must): each location must be a plain relative path beside
the model (no ``..``, no absolute path, no link), checked in every place a tensor can
sit (:mod:`tiffin.security.onnx_external`). The referenced byte ranges are copied into one file,
``artifacts/model.onnx.data``, hashed like any artifact, and the model is rewritten to
point there. Locations are checked again at load, against the manifest, before
onnxruntime opens anything; the session is built from the verified model bytes.

ZipMap outputs (skl2onnx's default for classifiers, CatBoost's ONNX export) are a
sequence of {label: probability} maps that no signature can describe. At pack each
ZipMap that produces a graph output becomes an Identity over its input, so the output
is the float32 ``[n, n_classes]`` array, columns in the class order recorded under
``runtime.options.zipmap`` and in the signature's ``params["onnx_zipmap"]``. The
label output is kept as it is.

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

from ..errors import FlavorError, UnsafeArtifactError
from ..security import onnx_external as ext
from ..security.sniff import ByteFormat
from . import LoadContext, SaveContext, mro_modules

NAME = "onnx"
FRAMEWORKS = ("onnxruntime", "numpy")
BYTE_FORMATS = (
    ByteFormat(
        "onnx", "ONNX protobuf", lambda head, name: head[:1] == b"\x08" and name.endswith(".onnx"),
        # it names files for onnxruntime to open: each must stay beside it
        check=ext.model_problem,
        fix="keep the model's external data in files beside it, named by relative paths "
        "(tiffin pack gathers them into artifacts/model.onnx.data)",
    ),
    ByteFormat(
        "onnx-data", "ONNX external tensor data (raw numbers onnxruntime reads)",
        lambda head, name: head.startswith(ext.MAGIC),
    ),
)  # fmt: skip
COST_FOLLOWS_INPUT_SIZE = True
FILE = "artifacts/model.onnx"
DATA = "model.onnx.data"  # beside FILE
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
    base: Path | None = None
    if isinstance(model, (str, Path)):
        base = Path(model).parent
        data = Path(model).read_bytes()
        where = str(model)
    else:
        data = model.SerializeToString(deterministic=True)
        where = "the ONNX ModelProto"
    refs = _refs(data, where)
    for ref in refs:
        problem = ext.location_problem(ref) or (
            ext.file_problem(ref, base) if base is not None else None
        )
        if problem:
            raise UnsafeArtifactError(
                f"the ONNX model's {ext.describe(ref)} {problem}",
                where=where,
                fix="keep external data files in the model's folder or below it, as real "
                "files, and name them by a relative path",
            )
        if base is None:
            raise FlavorError(
                f"the ONNX ModelProto keeps {ext.describe(ref)} in external data "
                f"({ref.location!r}) and tiffin does not know which folder holds it",
                fix="pass the .onnx file's path instead, or onnx.load it with its external data",
            )
    options: dict[str, Any] = {"file": FILE, "format": "onnx", "device": device}
    proto = _parse(data) if refs or b"ZipMap" in data else None
    if proto is not None:
        zipmap = _unzip(proto)
        if zipmap:
            options["zipmap"] = zipmap
        if refs:
            assert base is not None
            ext.gather(proto, base, ctx.artifacts / DATA)
        data = proto.SerializeToString(deterministic=True)
    target = ctx.artifacts / "model.onnx"
    target.write_bytes(data)
    _check_refs(data, ctx.artifacts, None, str(target))
    _check(target)
    return options


def _refs(data: bytes, where: str) -> list[ext.ExternalRef]:
    try:
        return ext.external_refs(data)
    except ext.ProtoError as exc:
        raise FlavorError(f"the ONNX model is invalid: {exc}", where=where) from None


def _parse(data: bytes) -> Any:
    try:
        import onnx
    except ImportError:
        raise FlavorError(
            "packing an ONNX model with external data or ZipMap outputs needs the onnx package",
            fix="pip install onnx",
        ) from None
    try:
        return onnx.load_from_string(data)
    except Exception as exc:
        raise FlavorError(f"the ONNX model is invalid: {exc}") from None


def _check(path: Path) -> None:
    try:
        import onnx
    except ImportError:
        return  # onnxruntime alone can run it; the reload check still proves it loads
    try:
        # By path: external data is then looked up beside the model, and a model over
        # 2 GB is checked without building it in memory.
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise FlavorError(f"the ONNX model is invalid: {exc}") from None


def _check_refs(data: bytes, folder: Path, digests: Any, where: str) -> None:
    """Every external location names a verified file beside the model (``digests``), or
    a real file under ``folder`` while the package is being written."""
    for ref in _refs(data, where):
        problem = ext.location_problem(ref)
        if problem is None and digests:
            listed = f"{Path(FILE).parent.as_posix()}/{ref.location}"
            if listed not in digests:
                problem = f"names {ref.location!r}, which is not a file of this package"
        if problem is None:
            problem = ext.file_problem(ref, folder)
        if problem:
            raise UnsafeArtifactError(
                f"the ONNX model's {ext.describe(ref)} {problem}",
                where=where,
                fix="do not load it; a packed ONNX model reads external data only from "
                "files listed in its own manifest",
            )


def _unzip(proto: Any) -> dict[str, Any]:
    """Each ZipMap that yields a graph output becomes an Identity over its [n, C] input."""
    from onnx import TensorProto, helper

    outputs = {o.name: o for o in proto.graph.output}
    mapped: dict[str, Any] = {}
    for i, node in enumerate(proto.graph.node):
        if node.op_type != "ZipMap" or node.domain != "ai.onnx.ml" or node.output[0] not in outputs:
            continue
        attrs = {a.name: a for a in node.attribute}
        if "classlabels_int64s" in attrs:
            labels: list[Any] = [int(v) for v in attrs["classlabels_int64s"].ints]
        else:
            labels = [v.decode("utf-8") for v in attrs["classlabels_strings"].strings]
        name = node.output[0]
        proto.graph.node[i].CopyFrom(
            helper.make_node("Identity", [node.input[0]], [name], name=node.name or name)
        )
        info = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", len(labels)])
        outputs[name].CopyFrom(info)
        _import_default_domain(proto)
        mapped[name] = {
            "mapping": "ZipMap sequence of {label: probability} maps to float32 [n, n_classes]",
            "labels": labels,
        }
    return mapped


def _import_default_domain(proto: Any) -> None:
    """Identity lives in the default domain, which an ML-only graph (CatBoost's) does not
    import: import the newest opset its IR version allows."""
    from onnx import helper

    if any(o.domain in ("", "ai.onnx") for o in proto.opset_import):
        return
    version = max(row[2] for row in helper.VERSION_TABLE if row[1] <= max(proto.ir_version, 3))
    proto.opset_import.append(helper.make_opsetid("", version))


class _Session:
    def __init__(self, session: Any, zipmap: Any = None) -> None:
        self.session = session
        self.zipmap = zipmap if isinstance(zipmap, dict) else {}
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
    params = dict(signature.params)
    if model.zipmap:
        params["onnx_zipmap"] = model.zipmap
    return replace(
        signature,
        inputs=_refine(signature.inputs, model.session.get_inputs()),
        outputs=_refine(signature.outputs, model.session.get_outputs()),
        params=params,
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
    data = ctx.read_verified()
    # Before onnxruntime sees the model: it opens whatever an external location names.
    _check_refs(data, path.parent, ctx.digests, str(path))
    # The session is built from the verified bytes, not the path, so the locations just
    # checked are the ones onnxruntime reads; external data resolves beside the model.
    opts.add_session_config_entry(
        "session.model_external_initializers_file_folder_path", str(path.parent)
    )
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=providers)
    except Exception as exc:
        raise FlavorError(f"onnxruntime could not load the model: {exc}", where=str(path)) from None
    return _Session(session, ctx.options.get("zipmap"))
