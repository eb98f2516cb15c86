"""Where an ONNX model's tensors keep their bytes, read from the protobuf wire format.

onnxruntime opens whatever file a tensor's ``external_data`` ``location`` names,
relative to the model's folder, and ``..``, absolute paths and links would take it
out of the package. The locations are found here without the ``onnx`` package (a
model's environment has onnxruntime alone) and everywhere a tensor can hide: the
graph's initializers and sparse initializers, every tensor-valued node attribute
(``Constant``'s ``value`` and ``sparse_value`` among them), the subgraphs of ``If``,
``Loop`` and ``Scan`` at any depth, model-local functions and training graphs.

A message field that appears twice is merged by protobuf, so each occurrence is read:
whatever any of them names is checked. Malformed bytes fail closed.

tiffin writes external data into one file, ``artifacts/model.onnx.data``, that starts
with :data:`MAGIC` (padded to :data:`HEADER_BYTES`, which keeps the writers' page
alignment): the sniffer recognises it by those bytes as tensor data that only
onnxruntime reads.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FlavorError
from ..package.manifest import is_safe_relpath

MAGIC = b"tiffin-onnx-external-data\n"
HEADER_BYTES = 4096
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_MAX_DEPTH = 64  # graphs inside graphs: deeper fails closed, before Python's stack does
_CHUNK = 16 << 20


class ProtoError(ValueError):
    """The bytes are not a protobuf message tiffin can read."""


@dataclass(frozen=True)
class ExternalRef:
    """One tensor whose bytes live outside the model file."""

    where: str  # the tensor's place in the model, e.g. graph.node[2](If).then_branch...
    tensor: str
    location: str | None
    offset: str | None
    length: str | None


def is_header(data: bytes) -> bool:
    return data.startswith(MAGIC)


def header() -> bytes:
    return MAGIC + b"\0" * (HEADER_BYTES - len(MAGIC))


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ProtoError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field; a length-delimited value is a view."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        value: int | memoryview
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = 0, pos + 8
        elif wire == 5:
            value, pos = 0, pos + 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        else:  # groups: no ONNX message uses them
            raise ProtoError(f"unsupported wire type {wire}")
        if pos > end:
            raise ProtoError("a field runs past the end of its message")
        yield number, wire, value


def _messages(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    for number, wire, value in _fields(buf):
        if wire == 2 and isinstance(value, memoryview):
            yield number, value


def _text(buf: memoryview) -> str:
    return bytes(buf).decode("utf-8", "replace")


def external_refs(data: bytes | memoryview | mmap.mmap) -> list[ExternalRef]:
    """Every tensor of a serialized ModelProto that keeps its bytes in external data."""
    refs: list[ExternalRef] = []
    for number, msg in _messages(memoryview(data)):
        if number == 7:
            _graph(msg, "graph", refs, 0)
        elif number == 25:  # functions
            _function(msg, "functions", refs, 0)
        elif number == 20:  # training_info: initialization and algorithm graphs
            for sub, graph in _messages(msg):
                if sub in (1, 2):
                    _graph(graph, "training_info", refs, 0)
    return refs


def _graph(buf: memoryview, where: str, refs: list[ExternalRef], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ProtoError(f"graphs nested more than {_MAX_DEPTH} deep at {where}")
    nodes = 0
    for number, msg in _messages(buf):
        if number == 1:
            _node(msg, f"{where}.node[{nodes}]", refs, depth)
            nodes += 1
        elif number == 5:
            _tensor(msg, f"{where}.initializer", refs)
        elif number == 15:
            _sparse(msg, f"{where}.sparse_initializer", refs)


def _function(buf: memoryview, where: str, refs: list[ExternalRef], depth: int) -> None:
    for number, msg in _messages(buf):
        if number == 7:
            _node(msg, f"{where}.node", refs, depth)
        elif number == 11:  # attribute defaults
            _attribute(msg, f"{where}.attribute", refs, depth)


def _node(buf: memoryview, where: str, refs: list[ExternalRef], depth: int) -> None:
    op = ""
    attributes = []
    for number, msg in _messages(buf):
        if number == 4:
            op = _text(msg)
        elif number == 5:
            attributes.append(msg)
    for attribute in attributes:
        _attribute(attribute, f"{where}({op})", refs, depth)


def _attribute(buf: memoryview, where: str, refs: list[ExternalRef], depth: int) -> None:
    name = ""
    parts = []
    for number, msg in _messages(buf):
        if number == 1:
            name = _text(msg)
        else:
            parts.append((number, msg))
    at = f"{where}.{name or '?'}"
    for number, msg in parts:
        if number in (5, 10):  # t, tensors
            _tensor(msg, at, refs)
        elif number in (22, 23):  # sparse_tensor, sparse_tensors
            _sparse(msg, at, refs)
        elif number in (6, 11):  # g, graphs
            _graph(msg, at, refs, depth + 1)


def _sparse(buf: memoryview, where: str, refs: list[ExternalRef]) -> None:
    for number, msg in _messages(buf):
        if number == 1:
            _tensor(msg, f"{where}.values", refs)
        elif number == 2:
            _tensor(msg, f"{where}.indices", refs)


def _tensor(buf: memoryview, where: str, refs: list[ExternalRef]) -> None:
    name = ""
    external = False
    entries: dict[str, list[str]] = {}
    for number, wire, value in _fields(buf):
        if number == 8 and isinstance(value, memoryview):
            name = _text(value)
        elif number == 14 and wire == 0:
            external = value == _EXTERNAL
        elif number == 13 and isinstance(value, memoryview):
            external = True  # entries alone make a tensor suspect: fail closed
            key = val = ""
            for sub, part in _messages(value):
                if sub == 1:
                    key = _text(part)
                elif sub == 2:
                    val = _text(part)
            entries.setdefault(key, []).append(val)
    if not external:
        return
    locations = entries.get("location") or [None]  # type: ignore[list-item]
    for location in locations:
        refs.append(
            ExternalRef(
                where=where,
                tensor=name,
                location=location,
                offset=_pick(entries.get("offset")),
                length=_pick(entries.get("length")),
            )
        )


def _pick(values: list[str] | None) -> str | None:
    """The value judged: a bad one if any (readers differ on which repeat they take)."""
    if not values:
        return None
    bad = [v for v in values if not (v.isascii() and v.isdigit())]
    return bad[0] if bad else values[-1]


def location_problem(ref: ExternalRef) -> str | None:
    """Why ``ref`` cannot be read from inside the package, judged by its text alone."""
    if ref.location is None:
        return "has no location"
    if not is_safe_relpath(ref.location):
        return (
            f"names {ref.location!r}: external data must be a plain relative path "
            "(no '..', no absolute path, no backslash) beside the model"
        )
    for key, value in (("offset", ref.offset), ("length", ref.length)):
        if value is not None and not (value.isascii() and value.isdigit() and len(value) < 20):
            return f"has {key} {value!r}, not a non-negative integer"
    return None


def file_problem(ref: ExternalRef, base: Path) -> str | None:
    """Why ``ref``'s file under ``base`` cannot be read safely: a link on the way, not a
    regular file, or a byte range past the file's end. ``location_problem`` first."""
    assert ref.location is not None
    path = base
    for part in ref.location.split("/"):
        path = path / part
        try:
            mode = path.lstat().st_mode
        except OSError:
            return f"names {ref.location!r}, which does not exist beside the model"
        if stat.S_ISLNK(mode):
            return f"names {ref.location!r}, which goes through a link"
    if not stat.S_ISREG(mode):
        return f"names {ref.location!r}, which is not a regular file"
    size = path.stat().st_size
    offset = int(ref.offset or 0)
    if offset > size or (ref.length is not None and offset + int(ref.length) > size):
        return f"reads past the end of {ref.location!r} ({size:,} bytes)"
    return None


def describe(ref: ExternalRef) -> str:
    return f"tensor {ref.tensor!r} at {ref.where}"


def model_problem(path: Path) -> str | None:
    """Why the ONNX model file at ``path`` would read external data from outside its
    folder (or cannot be read to tell); None when every location stays beside it.

    For the sniffer, which judges each artifact by its bytes at pack, lint and load.
    """
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return _problem(view, path.parent)


def _problem(data: mmap.mmap, base: Path) -> str | None:
    try:
        refs = external_refs(data)
    except ProtoError as exc:
        return f"not a readable ONNX protobuf ({exc})"
    for ref in refs:
        problem = location_problem(ref) or file_problem(ref, base)
        if problem:
            return f"its {describe(ref)} {problem}"
    return None


def _tensors(proto: Any) -> Any:
    """Every TensorProto of a ModelProto: the places onnx_external reads, as objects."""

    def graph(g: Any) -> Any:
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in g.node:
            for attr in node.attribute:
                yield from attribute(attr)

    def attribute(attr: Any) -> Any:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
        for s in [*sparse, *attr.sparse_tensors]:
            yield from (s.values, s.indices)
        if attr.HasField("g"):
            yield from graph(attr.g)
        for g in attr.graphs:
            yield from graph(g)

    yield from graph(proto.graph)
    for function in proto.functions:
        for node in function.node:
            for attr in node.attribute:
                yield from attribute(attr)
        for attr in function.attribute_proto:
            yield from attribute(attr)
    for info in proto.training_info:
        yield from graph(info.initialization)
        yield from graph(info.algorithm)


def gather(proto: Any, base: Path, out: Path) -> None:
    """Copy each external tensor's bytes into ``out`` and point the tensor there.

    Ranges are streamed (models over 2 GB), repeated ranges stored once, and tensors of
    1 MiB or more start on a page boundary, as onnx's own writer places them.
    """
    import onnx
    from onnx import helper

    placed: dict[tuple[str, int, int], int] = {}
    with open(out, "wb") as sink:
        sink.write(header())
        for tensor in _tensors(proto):
            entries = {e.key: e.value for e in tensor.external_data}
            if tensor.data_location != onnx.TensorProto.EXTERNAL and not entries:
                continue
            offset = int(entries.get("offset", "0"))
            if "length" in entries:
                length = int(entries["length"])
            else:
                itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
                length = itemsize * int(_prod(tensor.dims))
            key = (entries["location"], offset, length)
            if key not in placed:
                align = 4096 if length >= 1 << 20 else 64
                sink.write(b"\0" * (-sink.tell() % align))
                placed[key] = sink.tell()
                _copy(base / entries["location"], offset, length, sink)
            del tensor.external_data[:]
            place = (("location", out.name), ("offset", str(placed[key])), ("length", str(length)))
            for k, v in place:
                tensor.external_data.add(key=k, value=v)
            tensor.data_location = onnx.TensorProto.EXTERNAL


def _prod(dims: Any) -> int:
    total = 1
    for d in dims:
        total *= int(d)
    return total


def _copy(src: Path, offset: int, length: int, sink: Any) -> None:
    with open(src, "rb") as fh:
        fh.seek(offset)
        left = length
        while left:
            chunk = fh.read(min(left, _CHUNK))
            if not chunk:
                raise FlavorError(
                    f"{src} ends before the {length:,} bytes a tensor reads at offset {offset:,}",
                    where=str(src),
                    fix="re-export the model; its external data file is incomplete",
                )
            sink.write(chunk)
            left -= len(chunk)
