"""What an artifact really is, by its bytes (magic numbers), never by its name.

Code-carrying formats are pickle and anything that wraps one: PyTorch ``.pt`` zips
(``data.pkl``), joblib files (pickle, often zlib/gzip/lz4-compressed), object-dtype
``.npy`` arrays, pickles inside other zips or tars. A file tiffin cannot classify fails
closed: it is reported as possibly code-carrying. So does a stream that starts like a
pickle and makes a call before it stops parsing: :mod:`pickle` runs opcodes as it reads
them, so a broken tail does not make the head harmless.

Which framework formats are safe is the flavors' knowledge, not this module's: each
flavor declares the :class:`ByteFormat` s it writes and reads (``BYTE_FORMATS``), and the
callers pass them in (``tiffin.flavors.byte_formats()``). What is generic stays here:
pickles, NumPy arrays, safetensors, zips and tars (searched inside), compressed
streams, media and data files, and plain text.
"""

from __future__ import annotations

import ast
import contextvars
import io
import json
import pickletools
import re
import struct
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import UnsafeArtifactError

_SCAN_BYTES = 4 << 20  # how much of a file (or of a decompressed stream) is examined
_MAX_MEMBERS = 10_000  # members of a zip or tar examined before giving up (fails closed)
_MAX_DEPTH = 4  # containers inside containers
_CUT_SLACK = 1 << 16  # an opcode argument (a long line, say) straddling the cut
# Bounds on the work one file can cause, so a crafted archive cannot stall pack, lint or
# load: bytes read from members and decompressed streams in all, and opcodes parsed in
# one stream (real text or binary breaks the opcode grammar within a few bytes; a stream
# that keeps parsing is a pickle, or built to look like one).
_BUDGET_BYTES = 1 << 30
_MAX_OPS = 100_000
_NPY_HEAD = 1 << 16  # an .npy member needs only its header read
_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("tiffin_sniff_budget")
_formats: contextvars.ContextVar[Sequence[ByteFormat]] = contextvars.ContextVar(
    "tiffin_sniff_formats", default=()
)
_GLOBALS = frozenset({"STACK_GLOBAL", "EXT1", "EXT2", "EXT4"})
_PICKLE_STARTS = b"(cSKIJLFGTUVX]})NM\x8c\x95ip"  # how protocol 0 and 1 streams begin
_TEXT_CONTROLS = frozenset(range(32)) - {9, 10, 12, 13}


@dataclass(frozen=True)
class ByteFormat:
    """A format a flavor reads without running code, recognised by its first bytes.

    ``matches(head, name)`` sees up to the first few MiB and the file's name; ``check``,
    when given, looks at the whole file and returns a problem (a reason to refuse it),
    or None.
    """

    kind: str
    detail: str
    matches: Callable[[bytes, str], bool]
    check: Callable[[Path], str | None] | None = None
    fix: str | None = None  # what to do when ``check`` finds a problem


@dataclass(frozen=True)
class Verdict:
    kind: str
    carries_code: bool
    detail: str
    fix: str | None = None  # how to make such a file acceptable, where known


_PICKLE = Verdict("pickle", True, "pickle data (runs code when loaded)")


def _dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


_C_INT = re.compile(rb"\s*[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)L?")


def _c_reads_int(line: bytes) -> bool:
    """True when the C unpickler reads ``line`` as a protocol 0 INT or LONG argument.

    It uses ``strtol(s, NULL, 0)`` and then ``int(s, 0)``, so ``0x10``, ``010`` and
    ``1_000`` are numbers to it, while :mod:`pickletools` (``int(s)``) rejects them.
    """
    try:
        int(line.rstrip(b"L"), 0)
    except ValueError:
        return _C_INT.fullmatch(line) is not None
    return True


def _ops(data: bytes) -> Iterator[tuple[str, Any, int]]:
    """The opcodes of a pickle stream as the C unpickler would read them.

    :func:`pickletools.genops` is stricter than the unpickler in two places, and a
    stream that breaks genops there would otherwise look like text while ``pickle``
    runs it: INT/LONG arguments with a base prefix (``I0x10``) are stepped over, and a
    GLOBAL/INST whose names are UTF-8 (genops reads ASCII) is reported as a GLOBAL.
    """
    start = 0
    while True:
        stream = io.BytesIO(data)
        stream.seek(start)
        end = start
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                end = stream.tell()
                yield opcode.name, arg, end
            return
        except ValueError:
            op, rest = data[end : end + 1], data[end + 1 :]
            first, nl, tail = rest.partition(b"\n")
            if op in (b"I", b"L") and nl and _c_reads_int(first):
                start = end + 1 + len(first) + 1
                continue
            second, nl2, _ = tail.partition(b"\n")
            if op in (b"c", b"i") and nl and nl2:
                try:
                    yield "GLOBAL", f"{first.decode()} {second.decode()}", end
                except UnicodeDecodeError:
                    pass
            raise


def _is_pickle(data: bytes, *, by_magic: bool = True) -> bool:
    """True when ``data`` parses as a pickle opcode stream (any protocol).

    Protocol 2+ streams announce themselves (``\\x80`` and the protocol number);
    protocols 0 and 1 have no magic, so the opcodes are parsed. A stream that names an
    importable-looking global (GLOBAL, INST, STACK_GLOBAL, EXT) counts even if it
    breaks afterwards: the unpickler imports it before reading on. Callables only ever
    come from globals, so a stream without one cannot call anything.

    Only the first ``_SCAN_BYTES`` are examined, so a sample that still parses as
    opcodes where it was cut off is a pickle too: 5 MB of ``N0`` (push None, pop) then
    a GLOBAL once passed as text while ``pickle.load`` ran it.
    """
    if not data:
        return False
    if by_magic and data[0] == 0x80 and len(data) > 1 and 2 <= data[1] <= 5:
        return True
    names = False
    end = 0
    try:
        for ops, (opname, arg, op_end) in enumerate(_ops(data), 1):
            end = op_end
            if ops > _MAX_OPS:
                return True  # fails closed: see _MAX_OPS
            if opname in ("GLOBAL", "INST"):
                module, _, name = str(arg).partition(" ")
                names = names or (_dotted(module) and _dotted(name))
            elif opname in _GLOBALS and ops > 2:
                names = True  # (a STACK_GLOBAL needs two strings pushed before it)
            if opname == "STOP":
                # a lone STOP, or "0." at the start of a CSV, is not a pickle of anything
                return ops > 1 and (names or data[:1] in _PICKLE_STARTS)
    except (ValueError, EOFError, struct.error, KeyError, IndexError, Warning):
        # parsed up to the cut: what follows it is unknown, so fail closed
        return names or (len(data) >= _SCAN_BYTES and end >= len(data) - _CUT_SLACK)
    return names


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
    except (IndexError, struct.error, ValueError, SyntaxError, AttributeError, MemoryError):
        return Verdict("npy", True, "malformed .npy header (fails closed)")
    if "O" in str(descr):
        return Verdict("npy", True, "object-dtype .npy array: its data is a pickle")
    return Verdict("npy", False, f"numpy array ({descr})")


def _safetensors(data: bytes, hlen: int) -> Verdict | None:
    """A safetensors file: a u64 header length, then a JSON object.

    The length's own bytes are also read as opcodes by ``pickle.load``: ``B`` (BINBYTES)
    as its low byte swallows the next bytes and resumes the stream inside the header,
    so an unchecked header could hide a pickle (it once did). The header must parse
    as safetensors writes it (else None: not safetensors, classify it otherwise), and
    the whole must not parse as a pickle.
    """
    # by its opcodes, not its magic: a header of 1,152 bytes starts b"\x80\x04"
    if _is_pickle(data, by_magic=False):
        return _PICKLE
    if 8 + hlen <= len(data):
        try:
            header = json.loads(data[8 : 8 + hlen])
            ok = isinstance(header, dict) and all(
                key == "__metadata__" or (isinstance(v, dict) and "dtype" in v)
                for key, v in header.items()
            )
        except (ValueError, RecursionError):
            ok = False
        if not ok:
            return None
    return Verdict("safetensors", False, "safetensors tensors")


def _zip(source: Path | bytes, depth: int) -> Verdict:
    try:
        zf = zipfile.ZipFile(source if isinstance(source, Path) else io.BytesIO(source))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return Verdict("zip", True, f"unreadable zip ({exc}); fails closed")
    try:
        with zf:
            members = zf.infolist()
            if len(members) > _MAX_MEMBERS:
                return Verdict("zip", True, f"{len(members)} members, too many to examine")
            for info in members:
                with zf.open(info) as member:
                    head = _member_head(member)
                if not _spend(len(head)):
                    return _TOO_MUCH
                inner = _classify(head, info.filename, depth + 1)
                if inner.carries_code:
                    return Verdict("zip", True, f"member {info.filename}: {inner.detail}")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        return Verdict("zip", True, f"unreadable zip member ({exc}); fails closed")
    return Verdict("zip", False, "zip archive with no code-carrying members")


_TOO_MUCH = Verdict("large", True, "more data than tiffin examines in one file (fails closed)")


def _spend(n: int) -> bool:
    """Take ``n`` bytes from this sniff's budget; False once it is spent."""
    left = _budget.get(None)
    if left is None:
        return True
    left[0] -= n
    return left[0] >= 0


def _member_head(stream: IO[bytes]) -> bytes:
    head = stream.read(_NPY_HEAD)
    if head[:6] == b"\x93NUMPY":
        return head  # arrays (skops members) are judged by their header alone
    return head + stream.read(_SCAN_BYTES - len(head))


def _is_tar(data: bytes) -> bool:
    return data[257:262] == b"ustar"


def _tar(source: Path | bytes, depth: int) -> Verdict:
    import tarfile

    fileobj: IO[bytes] = open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)  # noqa: SIM115
    try:
        with fileobj, tarfile.open(fileobj=fileobj, mode="r:") as tar:
            for count, member in enumerate(tar, 1):
                if count > _MAX_MEMBERS:
                    return Verdict("tar", True, "too many members to examine")
                if not member.isreg():
                    continue
                src = tar.extractfile(member)
                head = _member_head(src) if src is not None else b""
                if not _spend(len(head)):
                    return _TOO_MUCH
                inner = _classify(head, member.name, depth + 1)
                if inner.carries_code:
                    return Verdict("tar", True, f"member {member.name}: {inner.detail}")
    except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
        return Verdict("tar", True, f"unreadable or truncated tar ({exc}); fails closed")
    return Verdict("tar", False, "tar archive with no code-carrying members")


def _decompress(data: bytes) -> tuple[str, bytes] | None:
    import bz2
    import gzip
    import lzma
    import zlib

    try:
        if data[:2] == b"\x1f\x8b":
            return "gzip", gzip.GzipFile(fileobj=io.BytesIO(data)).read(_SCAN_BYTES)
        if data[:3] == b"BZh":
            return "bz2", bz2.BZ2Decompressor().decompress(data, _SCAN_BYTES)
        if data[:6] == b"\xfd7zXZ\x00":
            return "xz", lzma.LZMADecompressor().decompress(data, _SCAN_BYTES)
        if data[:1] == b"\x78" and data[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            return "zlib", zlib.decompressobj().decompress(data, _SCAN_BYTES)
        if data[:4] == b"\x04\x22\x4d\x18":
            return "lz4", b""  # lz4 frame: joblib's optional codec
        if data[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
            return "zstd", reader.read(_SCAN_BYTES)
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError, ImportError) as exc:
        if isinstance(exc, ImportError):
            return "zstd", b""
        return None
    return None


def _looks_like_text(data: bytes) -> bool:
    try:
        text = data[:65536].decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of the sample is still text
        if exc.start < 65536 - 4 or len(data) <= 65536:
            return False
        text = data[: exc.start].decode("utf-8")
    return not any(ord(ch) in _TEXT_CONTROLS for ch in text)


# Plain data formats a custom model may ship as artifacts (tables, images, audio). Checked
# only after the pickle parse, so a file that starts like one of these but also parses
# as pickle opcodes ("GIF89a" begins with BINFLOAT) is still a pickle.
_DATA_MAGIC = (
    (b"PAR1", "parquet"),
    (b"ARROW1\x00\x00", "arrow"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"fLaC", "flac"),
)


def _data_format(data: bytes) -> str | None:
    for magic, kind in _DATA_MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] in (b"WAVE", b"WEBP"):
        return data[8:12].decode().lower()
    return None


def classify_bytes(data: bytes, name: str = "", *, formats: Sequence[ByteFormat] = ()) -> Verdict:
    """Classify in-memory bytes (the first part of a file, or a whole one)."""
    token, known = _budget.set([_BUDGET_BYTES]), _formats.set(formats)
    try:
        return _classify(data, name, 0)
    finally:
        _budget.reset(token)
        _formats.reset(known)


def _classify(data: bytes, name: str, depth: int, path: Path | None = None) -> Verdict:
    if depth > _MAX_DEPTH:
        return Verdict("nested", True, "containers nested too deep to examine (fails closed)")
    if not data:
        return Verdict("empty", False, "empty file")
    if len(data) >= 9:
        # first: a safetensors header length can begin b"\x80\x04" (1,152 bytes) or
        # b"PK", and such files were refused as pickles or broken zips
        (hlen,) = struct.unpack("<Q", data[:8])
        tensors = _safetensors(data, hlen) if 0 < hlen < 100_000_000 and data[8:9] == b"{" else None
        if tensors is not None:
            return tensors
    if data[0] == 0x80 and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return _PICKLE
    if data[:6] == b"\x93NUMPY":
        return _npy(data)
    if data[:2] == b"PK":
        return _zip(path if path is not None else data, depth)
    if _is_tar(data):
        return _tar(path if path is not None else data, depth)
    unpacked = _decompress(data)
    if unpacked is not None:
        codec, inner = unpacked
        if not _spend(len(inner)):
            return _TOO_MUCH
        if not inner:
            return Verdict(
                codec, True, f"{codec}-compressed data tiffin cannot inspect (fails closed)"
            )
        verdict = _classify(inner, name, depth + 1)
        return Verdict(
            f"{codec}+{verdict.kind}", verdict.carries_code, f"{codec}-compressed {verdict.detail}"
        )
    if _is_pickle(data):
        return _PICKLE
    for fmt in _formats.get():
        if fmt.matches(data, name):
            problem = fmt.check(path) if fmt.check is not None and path is not None else None
            if problem:
                return Verdict(
                    fmt.kind, True, f"{fmt.detail} that cannot be trusted: {problem}", fmt.fix
                )
            return Verdict(fmt.kind, False, fmt.detail)
    media = _data_format(data)
    if media is not None:
        return Verdict(media, False, f"{media} data (no loader of it runs code)")
    if _looks_like_text(data):
        return Verdict("text", False, "UTF-8 text")
    return Verdict(
        "unknown",
        True,
        "unrecognised binary format; cannot prove it carries no code (fails closed)",
    )


def sniff(path: str | Path, *, formats: Sequence[ByteFormat] = ()) -> Verdict:
    """Classify the file at ``path`` by its content; ``formats``: the flavors' own formats."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(_SCAN_BYTES)
    token, known = _budget.set([_BUDGET_BYTES]), _formats.set(formats)
    try:
        return _classify(head, path.name, 0, path)
    finally:
        _budget.reset(token)
        _formats.reset(known)


def check_artifacts(root: Path, *, allow_pickle: bool, formats: Sequence[ByteFormat] = ()) -> None:
    """Refuse a package whose artifacts carry code (or cannot be classified).

    Runs at pack and at load, after integrity and before any flavor touches a file.
    """
    folder = root / "artifacts"
    if allow_pickle or not folder.is_dir():
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        verdict = sniff(path, formats=formats)
        if verdict.carries_code:
            rel = path.relative_to(root).as_posix()
            raise UnsafeArtifactError(
                f"{rel} is {verdict.kind}: {verdict.detail}",
                where=str(root),
                fix=verdict.fix
                or "save it in a pickle-free format; only if you trust its source, pass allow_pickle=True",
            )
