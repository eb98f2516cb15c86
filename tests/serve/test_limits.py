"""Refusals before work: content type, body size (also after gzip), encoding, token.

The body reader runs on an in-memory ASGI receive channel here; the same refusals over
real HTTP are in test_errors.py.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import pytest

from tiffin.serve import limits
from tiffin.serve.errors import HTTPError


def channel(*chunks: bytes, disconnect: bool = False) -> Any:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})
    reads: list[int] = []

    async def receive() -> dict[str, Any]:
        reads.append(1)
        return messages[len(reads) - 1]

    receive.reads = reads  # type: ignore[attr-defined]
    return receive


def read(receive: Any, headers: dict[bytes, bytes], limit: int = 1000) -> bytes:
    return asyncio.run(limits.read_body(receive, headers, limit))


def test_plain_and_chunked_bodies() -> None:
    assert read(channel(b'{"a": 1}'), {b"content-length": b"8"}) == b'{"a": 1}'
    assert read(channel(b"ab", b"", b"cd"), {}) == b"abcd"


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    receive = channel(b"x" * 10)
    with pytest.raises(HTTPError) as err:
        read(receive, {b"content-length": b"5000"})
    assert err.value.status == 413 and "limit is 1000" in err.value.message
    assert receive.reads == []  # not one chunk was read
    with pytest.raises(HTTPError, match="bad Content-Length"):
        read(channel(b""), {b"content-length": b"-1"})


def test_streamed_body_is_cut_at_the_limit() -> None:
    receive = channel(*([b"x" * 400] * 10))
    with pytest.raises(HTTPError) as err:
        read(receive, {})
    assert err.value.status == 413
    assert len(receive.reads) == 3  # stopped as soon as the limit was passed


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_limited_after_expansion(encoding: str) -> None:
    def pack(data: bytes) -> bytes:
        return gzip.compress(data) if encoding == "gzip" else zlib.compress(data)

    headers = {b"content-encoding": encoding.encode()}
    assert read(channel(pack(b"hello" * 100)), headers) == b"hello" * 100
    bomb = pack(b"\x00" * 100_000_000)  # 100 MB that packs into about 100 KB
    assert len(bomb) < 200_000
    with pytest.raises(HTTPError) as err:
        read(channel(bomb[:50_000], bomb[50_000:]), headers, limit=1_000_000)
    assert err.value.status == 413 and "expands past" in err.value.message
    with pytest.raises(HTTPError, match="not valid") as bad:
        read(channel(b"not compressed at all"), headers)
    assert bad.value.status == 400
    with pytest.raises(HTTPError, match="truncated"):
        read(channel(pack(b"hello" * 100)[:-8]), headers)


def test_unknown_encoding_and_disconnect() -> None:
    with pytest.raises(HTTPError) as err:
        read(channel(b"x"), {b"content-encoding": b"br"})
    assert err.value.status == 415
    with pytest.raises(HTTPError, match="went away"):
        read(channel(b"x", disconnect=True), {})


@pytest.mark.parametrize(
    ("ctype", "binary_ok", "status"),
    [
        (None, True, None),
        (b"application/json", False, None),
        (b"Application/JSON; charset=utf-8", False, None),
        (b"application/octet-stream", True, None),
        (b"application/octet-stream", False, 415),
        (b"text/csv", False, 415),
        (b"application/x-www-form-urlencoded", True, 415),
        (b"application/python-pickle", True, 415),
        (b"multipart/form-data; boundary=x", True, 415),
    ],
)
def test_content_types(ctype: bytes | None, binary_ok: bool, status: int | None) -> None:
    headers = {} if ctype is None else {b"content-type": ctype}
    if status is None:
        limits.check_content_type(headers, binary_ok=binary_ok)
        return
    with pytest.raises(HTTPError) as err:
        limits.check_content_type(headers, binary_ok=binary_ok)
    assert err.value.status == status and "Content-Type" in err.value.message


@pytest.mark.parametrize("raw", ["\u00b2", "\u0661", "-1", "1e3", "", "0x10"])
def test_header_numbers_are_ascii_decimals(raw: str) -> None:
    """'²'.isdigit() is True and int('²') raises: once a 500 for Inference-Header-Content-Length."""
    with pytest.raises(HTTPError) as err:
        limits.decimal(raw, "Inference-Header-Content-Length")
    assert err.value.status == 400
    assert limits.decimal(" 42 ", "Content-Length") == 42


def _gzip_body(*members: bytes) -> bytes:
    return b"".join(gzip.compress(m) for m in members)


def test_gzip_members_and_trailing_data() -> None:
    gz = {b"content-encoding": b"gzip"}
    # several gzip members are one body (RFC 1952), as Python's gzip module reads them
    two = _gzip_body(b'{"a": ', b"1}")
    assert read(channel(two), gz) == b'{"a": 1}'
    pieces = [two[i : i + 3] for i in range(0, len(two), 3)]  # member edges inside chunks
    assert read(channel(*pieces), gz) == b'{"a": 1}'
    for tail in (b"garbage", b"\x1f\x8b"):
        with pytest.raises(HTTPError) as err:
            read(channel(gzip.compress(b"{}") + tail), gz)
        assert err.value.status == 400
    deflate = {b"content-encoding": b"deflate"}
    with pytest.raises(HTTPError, match="after the end") as err:
        read(channel(zlib.compress(b"{}") + b"more"), deflate)
    # the limit counts every member: a bomb in the second member is still a 413
    with pytest.raises(HTTPError) as err:
        read(channel(_gzip_body(b"{}", b" " * 5000)), gz)
    assert err.value.status == 413
