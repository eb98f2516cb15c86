"""What an artifact really is, by its bytes (magic numbers), never by its name.

Code-carrying formats are pickle and anything that wraps one: PyTorch ``.pt`` zips
(``data.pkl``), joblib files (pickle, often zlib/gzip/lz4-compressed), object-dtype
``.npy`` arrays, pickles inside other zips. A file tiffin cannot classify fails closed:
it is reported as possibly code-carrying.
"""

from __future__ import annotations

import ast
import bz2
import gzip
import io
import lzma
import pickletools
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

_SCAN_BYTES = 4 << 20  # how much of a file (or of a decompressed stream) is examined


@dataclass(frozen=True)
class Verdict:
    kind: str
    carries_code: bool
    detail: str


def _is_pickle(data: bytes) -> bool:
    """True when ``data`` parses as a pickle opcode stream (any protocol)."""
    if not data:
        return False
    if data[0] == 0x80 and len(data) > 1 and 2 <= data[1] <= 5:
        return True
    if data[:1] not in b"(cSKIJLFGTUVX]}NM\x8c\x95.ip":
        return False
    try:
        for ops, (opcode, _arg, _pos) in enumerate(pickletools.genops(io.BytesIO(data)), 1):
            if opcode.name == "STOP":
                return ops > 1  # a lone STOP is not a pickle of anything
    except (ValueError, EOFError, struct.error, UnicodeDecodeError, KeyError, IndexError):
        return False
    return False


def _npy(data: bytes) -> Verdict:
    try:
        major = data[6]
        if major == 1:
            (hlen,) = struct.unpack("<H", data[8:10])
            header = data[10 : 10 + hlen]
        else:
            (hlen,) = struct.unpack("<I", data[8:12])
            header = data[12 : 12 + hlen]
        descr = ast.literal_eval(header.decode("latin1")).get("descr")
    except (IndexError, struct.error, ValueError, SyntaxError, AttributeError):
        return Verdict("npy", True, "malformed .npy header (fails closed)")
    if "O" in str(descr):
        return Verdict("npy", True, "object-dtype .npy array: its data is a pickle")
    return Verdict("npy", False, f"numpy array ({descr})")


def _zip(path: Path | None, data: bytes) -> Verdict:
    try:
        zf = zipfile.ZipFile(path if path is not None else io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as exc:
        return Verdict("zip", True, f"unreadable zip ({exc}); fails closed")
    with zf:
        for info in zf.infolist():
            with zf.open(info) as member:
                head = member.read(_SCAN_BYTES)
            inner = classify_bytes(head, name=info.filename)
            if inner.carries_code:
                return Verdict("zip", True, f"member {info.filename}: {inner.detail}")
    return Verdict("zip", False, "zip archive with no code-carrying members")


def _decompress(data: bytes) -> tuple[str, bytes] | None:
    try:
        if data[:2] == b"\x1f\x8b":
            return "gzip", gzip.GzipFile(fileobj=io.BytesIO(data)).read(_SCAN_BYTES)
        if data[:3] == b"BZh":
            return "bz2", bz2.BZ2Decompressor().decompress(data)[:_SCAN_BYTES]
        if data[:6] == b"\xfd7zXZ\x00":
            return "xz", lzma.LZMADecompressor().decompress(data, _SCAN_BYTES)
        if data[:1] == b"\x78" and data[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            return "zlib", zlib.decompressobj().decompress(data, _SCAN_BYTES)
        if data[:4] == b"\x04\x22\x4d\x18":
            return "lz4", b""  # lz4 frame: joblib's optional codec
        if data[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard

            return "zstd", zstandard.ZstdDecompressor().decompressobj().decompress(data)[
                :_SCAN_BYTES
            ]
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError, ImportError):
        return None
    return None


def classify_bytes(data: bytes, name: str = "") -> Verdict:
    if data[:2] == b"PK":
        return _zip(None, data)
    return _classify(data, name, None)


def _classify(data: bytes, name: str, path: Path | None) -> Verdict:
    if not data:
        return Verdict("empty", False, "empty file")
    if _is_pickle(data):
        return Verdict("pickle", True, "pickle data (runs code when loaded)")
    if data[:6] == b"\x93NUMPY":
        return _npy(data)
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return _zip(path, data)
    if len(data) >= 9:
        (hlen,) = struct.unpack("<Q", data[:8])
        if 0 < hlen < 100_000_000 and data[8:9] == b"{":
            return Verdict("safetensors", False, "safetensors tensors")
    unpacked = _decompress(data)
    if unpacked is not None:
        codec, inner = unpacked
        if codec == "lz4" or not inner:
            return Verdict(
                codec, True, f"{codec}-compressed data tiffin cannot inspect (fails closed)"
            )
        verdict = _classify(inner, name, None)
        return Verdict(
            f"{codec}+{verdict.kind}", verdict.carries_code, f"{codec}-compressed {verdict.detail}"
        )
    if data[:1] in (b"{", b"[") or name.endswith((".json", ".ubj")):
        return Verdict("json/ubjson", False, "JSON or UBJSON document")
    if data.startswith(b"tree\nversion="):
        return Verdict("lightgbm", False, "LightGBM model text")
    if data[:1] == b"\x08" and name.endswith(".onnx"):
        return Verdict("onnx", False, "ONNX protobuf")
    try:
        data[:65536].decode("utf-8")
        return Verdict("text", False, "UTF-8 text")
    except UnicodeDecodeError:
        pass
    return Verdict(
        "unknown",
        True,
        "unrecognised binary format; cannot prove it carries no code (fails closed)",
    )


def sniff(path: str | Path) -> Verdict:
    """Classify the file at ``path`` by its content."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(_SCAN_BYTES)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip(path, head)
    return _classify(head, path.name, path)


def check_artifacts(root: Path, *, allow_pickle: bool) -> None:
    """Refuse a package whose artifacts carry code (or cannot be classified).

    Runs at pack and at load, after integrity and before any flavor touches a file.
    """
    from ..errors import UnsafeArtifactError

    folder = root / "artifacts"
    if allow_pickle or not folder.is_dir():
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        verdict = sniff(path)
        if verdict.carries_code:
            rel = path.relative_to(root).as_posix()
            raise UnsafeArtifactError(
                f"{rel} is {verdict.kind}: {verdict.detail}",
                where=str(root),
                fix="save it in a pickle-free format; only if you trust its source, pass allow_pickle=True",
            )
