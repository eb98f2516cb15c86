"""What the server refuses before any work is done: type, size, encoding and credentials.

Every check here runs on raw ASGI data (the header list and the ``receive`` channel),
so a refused request costs almost nothing:

- a Content-Type other than JSON, ``application/octet-stream`` or none is 415, and the
  body is never read;
- a Content-Length over the limit is 413 before a byte of the body is read; a body
  without one (chunked) is counted while it streams and cut at the limit; a gzip or
  deflate body is inflated in bounded steps, so a bomb is 413 once its *expanded* size
  passes the limit, never after it was inflated in memory;
- a transfer coding other than chunked is 501 (the body is never read);
- every byte held while a body arrives (raw or inflated) is taken from the server's
  ``Budget`` (``budget``), shared by all connections: 503 with ``Retry-After`` once it
  runs out;
(the bearer token is checked in :mod:`.auth`).
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from .budget import Budget
from .errors import HTTPError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

JSON_TYPES = frozenset({"application/json"})
BINARY_TYPES = frozenset({"application/octet-stream", "application/vnd.kserve.binary"})
ENCODINGS = ("identity", "gzip", "deflate")
STEP = 1 << 20  # bytes inflated at a time, each piece counted before the next is made
# zlib's inflate state with its 32 KiB window, counted while a request inflates
INFLATER_BYTES = 48 << 10


def header(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


def check_content_type(headers: Mapping[bytes, bytes], *, binary_ok: bool) -> None:
    """415 unless the body is JSON, binary tensors (where allowed), or unlabelled."""
    value = headers.get(b"content-type")
    if value is None or value == b"application/json":  # the usual cases, without parsing
        return
    raw = value.decode("latin-1")
    ctype = raw.split(";", 1)[0].strip().lower()
    if not ctype or ctype in JSON_TYPES or (binary_ok and ctype in BINARY_TYPES):
        return
    allowed = "application/json" + (" or application/octet-stream" if binary_ok else "")
    if ctype == "text/csv":  # MLflow's server takes CSV; its types are guesses (protocols.mlflow)
        allowed += ', e.g. {"dataframe_split": {"columns": [...], "data": [[...]]}}'
    raise HTTPError(415, f"unsupported Content-Type {ctype!r:.60}; send {allowed}")


def decimal(raw: str, name: str) -> int:
    """A header's non-negative decimal value; 400 otherwise.

    ASCII digits only: ``str.isdigit`` also accepts '²' and other Unicode digits, which
    ``int`` then refuses (a 500 instead of a 400).
    """
    value = raw.strip()
    if not (value.isascii() and value.isdigit()):
        raise HTTPError(400, f"bad {name} {raw!r:.40}; send a non-negative decimal number")
    return int(value)


def _declared_length(headers: Mapping[bytes, bytes], limit: int) -> int | None:
    raw = header(headers, b"content-length")
    if raw is None:
        return None
    length = decimal(raw, "Content-Length")
    if length > limit:
        raise HTTPError(413, f"the body is {length} bytes; the limit is {limit}")
    return length


def _check_transfer_coding(headers: Mapping[bytes, bytes]) -> None:
    """501 for a transfer coding other than chunked (RFC 9112 6.1).

    httptools takes ``Transfer-Encoding: gzip, chunked`` and removes only the chunking,
    so a gzip body reached the JSON parser still compressed ("not valid UTF-8").
    """
    raw = header(headers, b"transfer-encoding")
    if raw is None:
        return
    other = [c for c in (c.strip().lower() for c in raw.split(",")) if c and c != "chunked"]
    if other:
        raise HTTPError(
            501, f"Transfer-Encoding {other[0]!r:.40} is not supported; send the body chunked "
            "or with a Content-Length, and compress it with Content-Encoding: gzip",
        )  # fmt: skip


def _inflater(headers: Mapping[bytes, bytes]) -> tuple[str, Any]:
    encoding = (header(headers, b"content-encoding") or "identity").strip().lower()
    if encoding not in ENCODINGS:
        raise HTTPError(
            415, f"unsupported Content-Encoding {encoding!r}; send gzip, deflate or none"
        )
    if encoding == "identity":
        return encoding, None
    return encoding, zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)


def _inflate(
    inflater: Any, data: bytes, size: int, limit: int, encoding: str, out: list[bytes],
    budget: Budget | None,
) -> tuple[Any, int]:  # fmt: skip
    """Inflate ``data`` onto ``out`` in pieces of at most ``STEP`` bytes (413 past ``limit``).

    Each piece is taken from ``budget`` as it is produced, before it joins ``out``, so
    one chunk of compressed bytes never expands unaccounted. A gzip body may hold
    several members one after another (RFC 1952), each inflated by a fresh
    decompressor; bytes after the end of a deflate stream are refused. Returns the
    inflater (a new one after a member ends) and the inflated size so far.
    """
    while True:
        want = min(STEP, limit + 1 - size)
        try:
            piece = inflater.decompress(data, want)
        except zlib.error as exc:
            raise HTTPError(400, f"the body is not valid {encoding}: {exc}") from None
        size += len(piece)
        if size > limit:
            raise HTTPError(413, f"the body expands past the limit of {limit} bytes")
        if piece:
            if budget is not None:
                budget.take(len(piece))
            out.append(piece)
        # a full piece may leave output inside zlib with no input left: ask again
        if inflater.unconsumed_tail or (len(piece) == want and not inflater.eof):
            data = inflater.unconsumed_tail
            continue
        if not (inflater.eof and inflater.unused_data):
            return inflater, size
        if encoding != "gzip":
            raise HTTPError(400, f"the body has data after the end of its {encoding} stream")
        data, inflater = inflater.unused_data, zlib.decompressobj(wbits=31)


async def read_body(
    receive: Receive, headers: Mapping[bytes, bytes], limit: int, budget: Budget | None = None
) -> bytes:
    """The request body, decoded from gzip/deflate, never more than ``limit`` bytes.

    With ``budget``, every byte held on the way is taken from it as it arrives or is
    inflated (503 once it runs out). On success the body's length stays taken, for the
    caller to give back once the request is answered; on any failure, a cancellation
    included, everything is given back here.
    """
    _check_transfer_coding(headers)
    _declared_length(headers, limit)
    encoding, inflater = _inflater(headers)
    chunks: list[bytes] = []
    size = 0
    extra = 0  # taken from the budget and not in ``chunks``: the inflater, a raw chunk
    try:
        if inflater is not None and budget is not None:
            budget.take(INFLATER_BYTES)
            extra = INFLATER_BYTES
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "the client went away before sending the whole body")
            chunk: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if inflater is None:
                size += len(chunk)
                if size > limit:
                    raise HTTPError(413, f"the body is over the limit of {limit} bytes")
                if chunk:
                    if budget is not None:
                        budget.take(len(chunk))
                    chunks.append(chunk)
                continue
            if budget is not None and chunk:  # the compressed bytes, held while they inflate
                budget.take(len(chunk))
                extra += len(chunk)
            inflater, size = _inflate(inflater, chunk, size, limit, encoding, chunks, budget)
            if budget is not None and chunk:
                budget.give(len(chunk))
                extra -= len(chunk)
        if inflater is not None and not inflater.eof:
            raise HTTPError(400, f"the body is truncated {encoding} data")
        # The joined copy is not counted: it lives beside its pieces only until this
        # returns, with no other request running in between. Counted, a budget full of
        # bodies still arriving would refuse each of them its last step.
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if budget is not None:
            budget.give(extra)
            extra = 0
        return body
    except BaseException:
        if budget is not None:
            budget.give(extra + sum(len(c) for c in chunks))
        raise
