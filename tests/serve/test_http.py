"""A real `tiffin serve` against clients that lie, stall or bloat at the HTTP level.

Raw sockets, because well-behaved clients (httpx, tritonclient) refuse to send these.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from tests.serve.conftest import Served

BODY = json.dumps(
    {
        "inputs": [
            {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
).encode()


def exchange(served: Served, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before taking it all
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:  # closed with our bytes still unread: the answer came
            pass
    return out


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:  # the server closed the connection: fail, never spin on empty reads
        raise ConnectionError("the server closed the connection before a whole answer")
    return chunk


def read_answer(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body) from ``sock``.

    Only for one answer per connection at a time: bytes past it are not kept.
    """
    out = b""
    while b"\r\n\r\n" not in out:
        out += _recv(sock)
    head, body = out.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")))  # fmt: skip
    while len(body) < length:
        body += _recv(sock)
    return head + b"\r\n\r\n" + body[:length]


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> dict[str, str]:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


def request(method: str, path: str, body: bytes = b"", headers: bytes = b"") -> bytes:
    return (
        (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        ).encode()
        + headers
        + b"\r\n"
        + body
    )


def test_a_huge_request_head_is_431_not_buffered(server: Served) -> None:
    """uvicorn's httptools protocol buffered a 161 MB header line in memory."""
    answer = exchange(server, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * (4 << 20))  # fmt: skip
    assert status_of(answer) == 431 and "request head" in body_of(answer)["error"]
    many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(2000))  # 200 KB of headers
    assert status_of(exchange(server, request("GET", "/v2/health/live", headers=many))) == 431
    ok = request("GET", "/v2/health/live", headers=b"X-A: " + b"a" * 8000 + b"\r\n")
    assert status_of(exchange(server, ok)) == 200  # ordinary big headers still pass


def test_a_stalled_request_head_is_408(strict_server: Served) -> None:
    """A client trickling header bytes (or sending none) once held its connection forever."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", strict_server.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        answer = b""
        try:
            for _ in range(20):  # one header line every 0.2 s, never the blank line
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            pass
    assert status_of(answer) == 408 and "did not arrive" in body_of(answer)["error"]
    assert time.monotonic() - started < 4.5  # the --timeout 0.5 server cut it short
    silent = exchange(strict_server, b"")
    assert status_of(silent) == 408


def test_a_kept_alive_connection_times_each_head_from_its_own_start(strict_server: Served) -> None:
    """Heads are timed per request (one timer per connection, re-armed as it fires):
    a quick request, a pause, then a stalled head is cut about --timeout (0.5 s) after
    that head began, not after the connection opened, and not never."""
    ok = request("GET", "/v2/health/live").replace(b"Connection: close\r\n", b"")
    with socket.create_connection(("127.0.0.1", strict_server.port), timeout=10) as sock:
        sock.sendall(ok)
        assert b"200 OK" in sock.recv(65536)
        time.sleep(0.3)
        began = time.monotonic()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nX-Slow: 1\r\n")
        answer = sock.recv(65536)
        took = time.monotonic() - began
    assert status_of(answer) == 408
    assert 0.45 <= took < 3.0, took


def test_pipelined_requests_and_100_continue_still_work(server: Served) -> None:
    one = request("POST", "/v2/models/iris/infer", BODY).replace(b"Connection: close\r\n", b"")
    answer = exchange(server, one * 3 + request("GET", "/v2/health/live"))
    assert answer.count(b"HTTP/1.1 200 OK") == 4
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = request("POST", "/v2/models/iris/infer", headers=b"Expect: 100-continue\r\n")
        sock.sendall(head.replace(b"Content-Length: 0", b"Content-Length: %d" % len(BODY)))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(BODY)
        assert b"200 OK" in sock.recv(65536)


def test_a_non_ascii_digit_in_a_length_header_is_400(server: Served) -> None:
    """'²' passes str.isdigit() and then fails int(): that was a 500."""
    ihcl = b"Inference-Header-Content-Length: \xb2\r\n"
    answer = exchange(server, request("POST", "/v2/models/iris/infer", BODY, ihcl))
    assert (
        status_of(answer) == 400 and "Inference-Header-Content-Length" in body_of(answer)["error"]
    )


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS", "HEAD"])
@pytest.mark.parametrize("path", ["/v2/models/iris/infer", "/v2/models/iris/versions/1/infer", "/invocations"])  # fmt: skip
def test_other_methods_on_post_endpoints_are_405_with_allow(
    server: Served, method: str, path: str
) -> None:
    """They were 404 "no such endpoint", though the endpoint exists."""
    answer = exchange(server, request(method, path))
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert status_of(answer) == 405 and b"\r\nallow: post" in head
    if method != "HEAD":
        assert "use POST" in body_of(answer)["error"]


def test_a_trailing_slash_is_served_not_redirected(server: Served) -> None:
    """A 307 with an empty body (not JSON), which clients do not follow with a POST body."""
    with server.client() as c:
        assert c.get("/v2/health/ready/").json() == {"ready": True}
        assert c.get("/v2/models/iris/").json()["name"] == "iris"
        r = c.post("/v2/models/iris/infer/", content=BODY)
        assert r.status_code == 200 and r.json()["model_name"] == "iris"


def test_a_long_unknown_name_is_not_echoed_whole(server: Served) -> None:
    with server.client() as c:
        r = c.post(f"/v2/models/{'a' * 50_000}/infer", content=BODY)
    assert r.status_code == 404 and len(r.content) < 1000


def test_an_overloaded_model_refuses_before_reading_the_body(strict_server: Served) -> None:
    """With both of the model's slots busy, a third request is a 503 at once, its body
    never waited for (it used to be read and decoded in full, then refused). A body
    still arriving holds a slot: it is in memory, and a slow one is cut by the floor."""
    auth = b"Authorization: Bearer s3cret\r\n"
    slow = json.dumps({"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["slow"]},
    ]}).encode()  # fmt: skip
    head = b"POST /v2/models/multi/infer HTTP/1.1\r\nHost: x\r\n" + auth
    stalled = socket.create_connection(("127.0.0.1", strict_server.port), timeout=5)
    stalled.sendall(head + b"Content-Length: 100000\r\n\r\n" + b'{"inputs": [')
    busy = socket.create_connection(("127.0.0.1", strict_server.port), timeout=5)
    try:
        busy.sendall(head + b"Content-Length: %d\r\n\r\n" % len(slow) + slow)  # 2 s predict
        time.sleep(0.15)
        with socket.create_connection(("127.0.0.1", strict_server.port), timeout=5) as third:
            started = time.monotonic()
            third.sendall(head + b"Content-Length: 100000\r\n\r\n")  # no body yet
            answer = read_answer(third)
            waited = time.monotonic() - started
        assert status_of(answer) == 503 and "2 requests are in flight" in body_of(answer)["error"]
        assert b"retry-after: 1" in answer.lower() and waited < 0.45  # before any --timeout (0.5 s)
        # the stalled upload and the slow predict each held a slot until --timeout: 504
        assert [status_of(read_answer(sock)) for sock in (stalled, busy)] == [504, 504]
    finally:
        for sock in (stalled, busy):
            sock.close()
    time.sleep(2.5)  # the slow predict finishes in its thread


@pytest.mark.parametrize(
    "data",
    [
        b"FOO /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",  # no such method
        b"GET /v2/health/live HTTP/1.1\r\nBad Header\r\n\r\n",  # no colon
        b"GET /v2/health/live HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_unparseable_requests_are_answered_in_json(server: Served, data: bytes) -> None:
    answer = exchange(server, data)
    assert status_of(answer) in (400, 431) and "error" in body_of(answer)


class _Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> object:
        return f"extra {name}"


def test_a_response_is_one_write_and_100_continue_is_not_held() -> None:
    from tiffin.serve.http import OneWriteResponses

    real = _Recording()
    out = OneWriteResponses(real)
    out.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert real.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the client waits for it
    out.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
    assert len(real.writes) == 1  # the head waits for the body
    out.write(b"body")
    out.write(b"more")  # later chunks go straight out
    assert real.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody", b"more"]
    assert out.get_extra_info("peername") == "extra peername"  # the rest is the transport's
    headless = OneWriteResponses(real := _Recording())
    headless.write(b"HTTP/1.1 200 OK\r\n\r\n")
    headless.close()  # a head with no body still goes out before the close
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\n"] and real.closed


class _Socketless(_Recording):
    """What uvicorn's protocol asks of a transport, with the writes recorded."""

    def get_extra_info(self, name: str) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_the_served_protocol_writes_each_response_once() -> None:
    import asyncio

    import uvicorn
    from uvicorn.server import ServerState

    from tiffin.serve.http import bounded_protocol

    async def app(scope: dict, receive: object, send: Any) -> None:  # type: ignore[type-arg]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok"})

    async def go() -> list[bytes]:
        config = uvicorn.Config(app, http=bounded_protocol(head_timeout=5.0), lifespan="off")
        config.load()
        protocol_class: Any = config.http_protocol_class
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        transport = _Socketless()
        protocol.connection_made(transport)
        for _ in range(2):  # two requests on one keep-alive connection
            protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(50):
                await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport.writes

    writes = asyncio.run(go())
    assert len(writes) == 2 and all(w.startswith(b"HTTP/1.1 200") and w.endswith(b"\r\n\r\nok") for w in writes)  # fmt: skip


def test_a_big_head_parsed_in_one_read_is_still_431() -> None:
    """A 200 KB head arriving in one read was parsed whole before the byte count ran."""
    import asyncio

    import uvicorn
    from uvicorn.server import ServerState

    from tiffin.serve.http import bounded_protocol

    called = []

    async def app(scope: dict, receive: object, send: Any) -> None:  # type: ignore[type-arg]
        called.append(scope["path"])

    async def go() -> list[bytes]:
        config = uvicorn.Config(app, http=bounded_protocol(head_timeout=5.0), lifespan="off", log_level="error")  # fmt: skip
        config.load()
        protocol_class: Any = config.http_protocol_class
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        transport = _Socketless()
        protocol.connection_made(transport)
        many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(2000))
        protocol.data_received(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        assert transport.closed
        return transport.writes

    writes = asyncio.run(go())
    assert len(writes) == 1 and status_of(writes[0]) == 431, writes
    assert "request head" in body_of(writes[0])["error"]
    assert not called  # the request never reached the app


def test_head_requests_keep_the_connection(server: Served) -> None:
    keep = request("POST", "/v2/models/iris/infer", BODY).replace(b"Connection: close\r\n", b"")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(keep)
        assert status_of(read_answer(sock)) == 200
        # HEAD has no body bytes: its head must still go out, and the connection go on
        sock.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 ") and head.endswith(b"\r\n\r\n")
        sock.sendall(keep)
        assert status_of(read_answer(sock)) == 200


# -- the direct lane: inference requests answered without ASGI -------------------------


class _DirectHarness:
    """uvicorn's protocol with tiffin's direct lane, a recording transport and a stub router.

    The handler reads the body through ``limits.read_body`` (as the endpoints do) and
    answers it back; ``gate`` holds answers back until a test releases it.
    """

    def __init__(self, keep_alive: float = 5.0) -> None:
        import asyncio

        import uvicorn
        from uvicorn.server import ServerState

        from tiffin.serve import limits
        from tiffin.serve.http import bounded_protocol

        self.asgi_paths: list[str] = []
        self.direct_calls: list[dict[bytes, bytes]] = []
        self.gate: asyncio.Event | None = None

        async def app(scope: dict, receive: Any, send: Any) -> None:  # type: ignore[type-arg]
            self.asgi_paths.append(scope["path"])
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"asgi"})

        async def handler(headers: dict[bytes, bytes], receive: Any) -> Any:
            self.direct_calls.append(headers)
            if b"x-fail" in headers:
                raise RuntimeError("a bug in an endpoint")
            try:
                body = await limits.read_body(receive, headers, 1 << 20)
            except limits.HTTPError as exc:
                return exc.status, [(b"content-length", b"0")], b""
            if self.gate is not None:
                await self.gate.wait()
            return 200, [(b"content-length", str(len(body)).encode())], body

        def router(path: str) -> Any:
            return handler if path.endswith("/infer") else None

        config = uvicorn.Config(app, http=bounded_protocol(5.0, direct=router), lifespan="off", log_level="error", access_log=False, timeout_keep_alive=keep_alive)  # fmt: skip
        config.load()
        self.protocol: Any = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})  # fmt: skip
        self.transport = _Socketless()
        self.protocol.connection_made(self.transport)

    @staticmethod
    async def turns(n: int = 30) -> None:
        import asyncio

        for _ in range(n):
            await asyncio.sleep(0)


def _post(path: str, body: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"POST %s HTTP/%s\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (
        path.encode(),
        version,
        len(body),
        extra,
        body,
    )


def test_an_inference_post_is_answered_directly_in_one_write() -> None:
    import asyncio

    async def go() -> _DirectHarness:
        h = _DirectHarness()
        h.protocol.data_received(_post("/v2/models/m/infer", b'{"a": 1}', b"X-Custom: Yes \r\n"))
        await h.turns()
        h.protocol.connection_lost(None)
        return h

    h = asyncio.run(go())
    assert h.asgi_paths == [] and len(h.direct_calls) == 1
    assert h.direct_calls[0][b"x-custom"] == b"Yes"  # names lowercased, trailing space gone
    [write] = h.transport.writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b'\r\n\r\n{"a": 1}')
    assert b"connection: close" not in write


@pytest.mark.parametrize(
    "data",
    [
        _post("/v2/models/m/infer?verbose=1", b"{}"),  # a query string
        _post("/v2/models/m%2Fx/infer", b"{}"),  # percent-escapes: uvicorn decodes them
        _post("/v2/models/m/infer", b"{}", b"Expect: 100-continue\r\n"),  # uvicorn answers 100
        _post("/v2/health/live", b"{}"),  # not an inference endpoint
        b"GET /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n\r\n",  # not a POST
    ],
)
def test_anything_but_the_plain_case_goes_to_the_asgi_app(data: bytes) -> None:
    import asyncio

    async def go() -> _DirectHarness:
        h = _DirectHarness()
        h.protocol.data_received(data)
        await h.turns()
        h.protocol.connection_lost(None)
        return h

    h = asyncio.run(go())
    assert h.direct_calls == [] and len(h.asgi_paths) == 1
    assert h.transport.writes[-1].endswith(b"asgi")


def test_a_direct_body_that_arrives_in_pieces_is_read_whole() -> None:
    import asyncio

    async def go() -> _DirectHarness:
        h = _DirectHarness()
        body = b"x" * 200_000  # past uvicorn's 64 KiB high-water mark: reading pauses, resumes
        data = _post("/v2/models/m/infer", body)
        for i in range(0, len(data), 30_000):
            h.protocol.data_received(data[i : i + 30_000])
            await h.turns(3)
        await h.turns()
        h.protocol.connection_lost(None)
        return h

    h = asyncio.run(go())
    [write] = h.transport.writes
    assert write.startswith(b"HTTP/1.1 200") and write.endswith(b"\r\n\r\n" + b"x" * 200_000)


def test_pipelined_direct_requests_are_answered_in_order() -> None:
    import asyncio

    async def go() -> _DirectHarness:
        h = _DirectHarness()
        h.gate = asyncio.Event()
        first, second = _post("/v2/models/m/infer", b"first"), _post("/v2/models/m/infer", b"second!")  # fmt: skip
        h.protocol.data_received(
            first + second + b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        await h.turns()
        assert h.transport.writes == []  # the first is held: nothing may overtake it
        h.gate.set()
        await h.turns(60)
        h.protocol.connection_lost(None)
        return h

    h = asyncio.run(go())
    bodies = [w.split(b"\r\n\r\n", 1)[1] for w in h.transport.writes]
    # requests pipelined behind a running one are uvicorn's to queue: they go to the app
    assert bodies == [b"first", b"asgi", b"asgi"]
    assert h.asgi_paths == ["/v2/models/m/infer", "/v2/health/live"]


def test_http_1_0_gets_connection_close_and_the_connection_closes() -> None:
    import asyncio

    async def go() -> _DirectHarness:
        h = _DirectHarness()
        h.protocol.data_received(_post("/v2/models/m/infer", b"{}", version=b"1.0"))
        await h.turns()
        return h

    h = asyncio.run(go())
    assert b"\r\nconnection: close\r\n" in h.transport.writes[0] and h.transport.closed


def test_a_client_gone_before_its_body_ends_gets_nothing_written() -> None:
    import asyncio

    async def go() -> _DirectHarness:
        h = _DirectHarness()
        h.protocol.data_received(_post("/v2/models/m/infer", b"0123456789")[:-4])
        await h.turns()
        h.protocol.connection_lost(ConnectionResetError())
        await h.turns()
        return h

    h = asyncio.run(go())
    assert len(h.direct_calls) == 1 and h.transport.writes == []


def test_a_shutdown_lets_a_running_direct_request_answer_then_closes() -> None:
    import asyncio

    async def go() -> _DirectHarness:
        h = _DirectHarness()
        h.gate = asyncio.Event()
        h.protocol.data_received(_post("/v2/models/m/infer", b"{}"))
        await h.turns()
        h.protocol.shutdown()  # what uvicorn does to every connection on SIGTERM
        assert not h.transport.closed  # the answer is still due
        h.gate.set()
        await h.turns()
        return h

    h = asyncio.run(go())
    [write] = h.transport.writes
    assert write.startswith(b"HTTP/1.1 200") and b"\r\nconnection: close\r\n" in write
    assert h.transport.closed


def test_an_endpoint_that_raises_is_a_json_500_and_the_connection_closes() -> None:
    import asyncio

    async def go() -> _DirectHarness:
        h = _DirectHarness()
        h.protocol.data_received(_post("/v2/models/m/infer", b"{}", b"X-Fail: 1\r\n"))
        await h.turns()
        return h

    h = asyncio.run(go())
    [write] = h.transport.writes
    assert status_of(write) == 500 and "a bug in an endpoint" in body_of(write)["error"]
    assert b"\r\nconnection: close\r\n" in write and h.transport.closed


_MULTI = json.dumps({"inputs": [
    {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]},
    {"name": "n", "shape": [2], "datatype": "INT64", "data": [1, 2]},
    {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
], "outputs": [{"name": "upper", "parameters": {"binary_data": True}}]}).encode()  # fmt: skip
_BINARY_HEADER = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "parameters": {"binary_data_size": 32}}]}).encode()  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [
        _post("/v2/models/iris/infer", BODY),
        _post("/v2/models/iris/versions/2/infer/", BODY),
        _post("/v2/models/multi/infer", _MULTI),
        _post(
            "/v2/models/iris/infer",
            _BINARY_HEADER + b"\x00" * 32,
            b"Inference-Header-Content-Length: %d\r\nContent-Type: application/octet-stream\r\n"
            % len(_BINARY_HEADER),
        ),
        _post("/v2/models/nope/infer", BODY),
        _post("/v2/models/iris/infer", b'{"inputs": ['),
        _post("/v2/models/iris/infer", BODY.replace(b"FP64", b"BYTES")),
        _post("/v2/models/iris/infer", BODY, b"Content-Type: text/plain\r\n"),
        _post("/v2/models/iris/infer", BODY, b"Content-Encoding: br\r\n"),
        _post("/invocations", b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'),
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    ],
    ids=[
        "json",
        "version-slash",
        "multi-binary-out",
        "binary-in",
        "404",
        "bad-json",
        "bad-dtype",
        "415",
        "encoding",
        "invocations",
        "413",
    ],
)
def test_the_direct_lane_answers_byte_for_byte_as_the_asgi_path(
    packages: dict[str, Any], data: bytes
) -> None:
    """The README says the answers are the same either way: each request, both lanes."""
    import asyncio

    import uvicorn
    from uvicorn.server import ServerState

    from tiffin.serve.app import create_app
    from tiffin.serve.http import bounded_protocol
    from tiffin.serve.repository import Repository, from_paths

    repo = Repository()
    for predictor in from_paths([packages["iris"], packages["iris2"], packages["multi"]]):
        repo.add(predictor)
    iris_only = Repository()
    iris_only.add(next(iter(from_paths([packages["iris"]]))))
    app = create_app(iris_only if b"/invocations" in data else repo)

    async def answer(direct: Any) -> bytes:
        config = uvicorn.Config(app, http=bounded_protocol(5.0, direct=direct), lifespan="off", log_level="error", access_log=False)  # fmt: skip
        config.load()
        protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})  # fmt: skip
        transport = _Socketless()
        protocol.connection_made(transport)
        protocol.data_received(data)
        for _ in range(200):
            await asyncio.sleep(0)
            if transport.writes:
                break
        await asyncio.sleep(0.05)  # a predict on the thread pool
        for _ in range(50):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return b"".join(transport.writes)

    direct, asgi = (asyncio.run(answer(d)) for d in (app.post_handler, None))
    assert direct and status_of(direct) == status_of(asgi)
    strip = [line for line in direct.split(b"\r\n") if not line.startswith(b"date: ")]
    assert strip == [line for line in asgi.split(b"\r\n") if not line.startswith(b"date: ")]


def test_an_idle_kept_alive_connection_closes_after_the_keep_alive_timeout() -> None:
    """One timer per connection (not one per answer) still closes idle connections, and
    never one that is busy or that sent a request within the timeout."""
    import asyncio

    async def go() -> list[bool]:
        h = _DirectHarness(keep_alive=0.3)
        h.gate = asyncio.Event()
        seen = []
        for _ in range(4):  # a request every 0.15 s: never idle for 0.3 s
            h.gate.set()
            h.protocol.data_received(_post("/v2/models/m/infer", b"{}"))
            await asyncio.sleep(0.15)
        seen.append(h.transport.closed)  # 0.6 s in: open
        h.gate.clear()  # a request that runs past the timeout is not cut
        h.protocol.data_received(_post("/v2/models/m/infer", b"{}"))
        await asyncio.sleep(0.5)
        seen.append(h.transport.closed)
        h.gate.set()
        await asyncio.sleep(0.15)
        seen.append(h.transport.closed)  # answered 0.15 s ago: open
        await asyncio.sleep(0.4)
        seen.append(h.transport.closed)  # idle past 0.3 s: closed
        assert len(h.transport.writes) == 5
        return seen

    assert asyncio.run(go()) == [False, False, False, True]
