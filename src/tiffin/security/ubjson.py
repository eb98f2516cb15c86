"""A bounded reader of UBJSON, the subset XGBoost writes and reads.

XGBoost's own reader copies as many bytes as a length field says and sizes arrays by a
count it never compares with the bytes left. This one checks every length and count
against the bytes left before it reads, keeps nesting shallow, refuses a key given twice
(XGBoost keeps the first, most readers the last) and anything after the document, and
reads only what XGBoost reads: ``L`` (int64) lengths, the scalar markers, strings,
null and booleans, and typed arrays of ``d``, ``i``, ``U``, ``l`` and ``L``, each read
with one NumPy call.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

_MAX_DEPTH = 32  # XGBoost's documents nest about 6 deep


class Malformed(Exception):
    """The bytes are not a document this reader accepts; the message says what and where."""


def read(data: bytes) -> Any:
    """The document in ``data``; typed arrays come back as NumPy arrays in native byte order."""
    return _UBJ(data).document()


_INT64 = struct.Struct(">q")
_SCALARS: dict[int, tuple[struct.Struct, Callable[[Any], Any]]] = {
    ord("i"): (struct.Struct(">b"), int),
    ord("U"): (struct.Struct(">B"), int),
    ord("I"): (struct.Struct(">h"), int),
    ord("l"): (struct.Struct(">i"), int),
    ord("L"): (_INT64, int),
    ord("C"): (struct.Struct(">b"), int),
    ord("d"): (struct.Struct(">f"), float),
}
_TYPED = {ord("d"): ">f4", ord("i"): "i1", ord("U"): "u1", ord("l"): ">i4", ord("L"): ">i8"}


class _UBJ:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.end = data, 0, len(data)

    def document(self) -> Any:
        value = self._value(0)
        if self.pos != self.end:
            raise Malformed(f"{self.end - self.pos} bytes follow the document")
        return value

    def _unpack(self, fmt: struct.Struct) -> Any:
        if fmt.size > self.end - self.pos:
            raise Malformed(f"byte {self.pos}: a value runs past the end")
        value = fmt.unpack_from(self.data, self.pos)[0]
        self.pos += fmt.size
        return value

    def _marker(self) -> int:
        marker = self._peek()
        self.pos += 1
        return marker

    def _peek(self) -> int:
        if self.pos >= self.end:
            raise Malformed("it ends inside the document (is it cut short?)")
        return self.data[self.pos]

    def _count(self) -> int:
        """An int64 count after an ``L`` marker: XGBoost reads no other kind."""
        at = self.pos
        if self._marker() != ord("L"):
            raise Malformed(f"byte {at}: a length is not marked 'L'")
        n: int = self._unpack(_INT64)
        if n < 0 or n > self.end - self.pos:
            raise Malformed(f"byte {at}: length {n} runs past the end")
        return n

    def _string(self) -> str:
        n = self._count()
        start, self.pos = self.pos, self.pos + n
        try:
            return self.data[start : self.pos].decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed(f"byte {start}: a string is not UTF-8") from None

    def _value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise Malformed(f"it nests deeper than {_MAX_DEPTH}")
        at = self.pos
        marker = self._marker()
        if marker == ord("{"):
            obj: dict[str, Any] = {}
            while self._peek() != ord("}"):
                key = self._string()
                if key in obj:
                    raise Malformed(f"byte {at}: an object gives {key[:40]!r} twice")
                obj[key] = self._value(depth + 1)
            self.pos += 1
            return obj
        if marker == ord("["):
            return self._array(depth)
        if marker in _SCALARS:
            fmt, kind = _SCALARS[marker]
            return kind(self._unpack(fmt))
        if marker == ord("S"):
            return self._string()
        if marker == ord("Z"):
            return None
        if marker in (ord("T"), ord("F")):
            return marker == ord("T")
        raise Malformed(f"byte {at}: unknown or unsupported marker {bytes([marker])!r}")

    def _array(self, depth: int) -> Any:
        at = self.pos
        if self._peek() == ord("$"):
            self.pos += 1
            kind = self._marker()
            if kind not in _TYPED:
                raise Malformed(f"byte {at}: typed array of {bytes([kind])!r}, which XGBoost does not read")  # fmt: skip
            if self._marker() != ord("#"):
                raise Malformed(f"byte {at}: typed array without a count")
            dtype = np.dtype(_TYPED[kind])
            n = self._count()
            if n * dtype.itemsize > self.end - self.pos:
                raise Malformed(f"byte {at}: typed array of {n} runs past the end")
            values = np.frombuffer(self.data, dtype=dtype, count=n, offset=self.pos)
            self.pos += n * dtype.itemsize
            return values.astype(dtype.newbyteorder("="))
        if self._peek() == ord("#"):
            self.pos += 1
            n = self._count()  # each value takes at least a byte: bounded by the bytes left
            return [self._value(depth + 1) for _ in range(n)]
        items = []
        while self._peek() != ord("]"):
            items.append(self._value(depth + 1))
        self.pos += 1
        return items
