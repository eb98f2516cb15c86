"""The HTTP/1.1 connection handler: uvicorn's httptools protocol, with limits and a direct lane.

uvicorn's httptools protocol buffers a request head (request line and headers) without
bound and without a deadline, and its keep-alive timer only runs between requests, so
one client could hold a huge head in memory, or a connection open forever by sending a
header byte every few seconds; ``--max-body`` cannot help, as the head is not the body.
This protocol adds:

- a head size cap (``MAX_HEAD``, 64 KiB, four times nginx's default buffers for one
  header line): past it, 431 and the connection is closed. Counted twice over: the raw
  bytes of a head still arriving (one endless header line never reaches a parser
  callback), and the URL and headers as the parser hands them over (a 200 KB head can
  arrive in one read, and be parsed whole before the raw count sees it);
- a head deadline: a connection must finish each request head within the request
  timeout of its first byte (or of the connection, for a client that sends nothing);
  past it, 408 and the connection is closed;
- a body rate floor: once its head is in, a body must arrive at ``min_body_rate``
  bytes a second, after a grace of ``body_grace`` seconds (Apache's mod_reqtimeout
  ``MinRate`` rule: by time t, ``(t - grace) * rate`` bytes); below it, 408 and the
  connection is closed. A request holds a slot of its model's queue while its body
  arrives, so a body sent a byte at a time must not hold it for the whole ``--timeout``.
  The timer is only set when a body is still arriving at the end of a read: a request
  that arrives whole costs one counter.

These answers, and the 400 for a request httptools cannot parse (uvicorn's is plain
text), are JSON ``{"error": ...}`` like every other. Without httptools, uvicorn
falls back to h11, which caps the head itself (16 KiB) but has no deadline.

Inference requests skip ASGI, whose per-request objects (a scope dict, a cycle, an
``asyncio.Event``, the ``receive`` and ``send`` messages, the checks on every header
sent) cost more CPU than parsing the request, and batching cannot share them. A POST to
an inference endpoint (``App.post_handler``, which asks each wire protocol's ``match``)
runs as a ``_DirectCycle``: the endpoint's coroutine gets the headers and a body channel,
returns its answer, and the answer goes out in one write. Everything that is not the
plain case (a query string or percent-escapes in the path, ``Expect: 100-continue``, a
request pipelined behind one still running, the access log on) takes uvicorn's path, and
so does every other endpoint. The direct cycle keeps the fields uvicorn's protocol reads
from a cycle, so body delivery, pipelining, keep-alive and graceful shutdown are
uvicorn's own code. ``docs/serving.md`` has the figures (``benchmarks/protocol.py``).

It also writes each response in one piece: uvicorn writes the head and the body
separately, two system calls and two TCP segments for every small answer (the client
wakes twice to read it). The head is held until the body's first bytes and the two go
out together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

MAX_HEAD = 64 << 10
# an answer: the status, the headers (Content-Length among them) and the payload
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
# an inference endpoint: from the request's headers and its ASGI-style ``receive`` to
# the answer (``Server.answer`` for one wire protocol and target)
Handler = Callable[[dict[bytes, bytes], Callable[[], Awaitable[MutableMapping[str, Any]]]], Awaitable[Answer]]  # fmt: skip
# the endpoint for a POST to a path, or None: that request goes to the ASGI app
Router = Callable[[str], Handler | None]


class OneWriteResponses:
    """One request's transport: the response head waits for the first body bytes.

    A request's writes are an optional interim answer (``100 Continue``, passed at
    once: the client waits for it before it sends the body), then the head, then body
    chunks. Everything else is the real transport's.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif not self._head_seen and not _interim(data):
            self._head_seen = True
            self._held = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _interim(data: bytes) -> bool:
    """Whether ``data`` is a 1xx answer (``HTTP/1.1 100 Continue``), never held back."""
    return data.startswith(b"HTTP/1.1 1")


def bounded_protocol(
    head_timeout: float,
    max_head: int = MAX_HEAD,
    direct: Router | None = None,
    min_body_rate: float = 0.0,
    body_grace: float = 5.0,
) -> Any:
    """The protocol class for ``uvicorn.Config(http=...)``; ``"auto"`` without httptools.

    ``direct`` maps the path of a POST to the endpoint that answers it without ASGI
    (``App.post_handler``), or to None for the ASGI app. ``min_body_rate`` (bytes a
    second, 0: no floor) and ``body_grace`` (seconds) set the body rate floor.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools comes with the serve extra
        return "auto"

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._head_began = False  # the head began inside the chunk being parsed
            self._head_timer: asyncio.TimerHandle | None = None
            self._head_since: float | None = None  # when the head now awaited began to be due
            self._parsed_head = 0  # bytes of URL and headers the parser has handed over
            self._oversized = False
            self._idle_timer: asyncio.TimerHandle | None = None
            self._idle_since: float | None = None  # since when the connection waits, idle
            self._body_since: float | None = None  # when the body now arriving was due to begin
            self._body_bytes = 0  # of the body now arriving
            self._body_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_since = None
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            self._idle_since = None
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            self._body_since = None
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._body_since is not None and self._body_timer is None:
                self._body_timer = self.loop.call_at(self._body_since + body_grace, self._body_due)  # fmt: skip
            if not self._in_head or self.transport.is_closing():
                return
            if self._head_began:  # part of this chunk may belong to the previous request
                self._head_began = False
                return
            self._head_bytes += len(data)
            if self._head_bytes > max_head:
                self._refuse(431, f"the request head is over {max_head} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes, self._head_began = True, 0, True
            self._parsed_head = 0
            self._arm()

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value) + 4)  # "name: value\r\n"
            super().on_header(name, value)

        def _count_head(self, size: int) -> None:
            self._parsed_head += size
            if self._parsed_head > max_head:
                # raising from a callback stops the parser before the request reaches
                # the app; uvicorn answers it through send_400_response, below
                self._oversized = True
                raise ValueError("request head too large")

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            if min_body_rate > 0:
                self._body_since, self._body_bytes = self.loop.time(), 0
            handler = self._direct_handler()
            if handler is not None:
                self._start_direct(handler)
                return
            super().on_headers_complete()
            if self.cycle is not None:
                self.cycle.transport = OneWriteResponses(self.cycle.transport)  # type: ignore[assignment]  # duck-typed: delegates the rest

        def on_body(self, body: bytes) -> None:
            self._body_bytes += len(body)
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._body_since = None  # the timer, when it fires, finds no body due
            super().on_message_complete()

        def _body_due(self) -> None:
            self._body_timer = None
            if self._body_since is None or self.transport.is_closing():
                return
            now = self.loop.time()
            if self.flow.read_paused:
                # the server stopped reading (a request pipelined behind a running one,
                # or a body not yet taken): not the client's fault; the clock restarts
                self._body_since, self._body_bytes = now, 0
                self._body_timer = self.loop.call_at(now + body_grace, self._body_due)
                return
            due = self._body_since + body_grace + self._body_bytes / min_body_rate
            if now < due:
                self._body_timer = self.loop.call_at(due, self._body_due)
                return
            if self.cycle is not None and self.cycle.response_complete:
                # answered already (a refusal that did not need the body): the rest
                # would only be read and dropped
                self.transport.close()
                return
            self._refuse(
                408, f"the request body arrived slower than {min_body_rate:g} bytes a second "
                f"({self._body_bytes} bytes in {now - self._body_since:.1f} s); send it at once",
            )  # fmt: skip

        def on_response_complete(self) -> None:
            # a response with no body bytes (HEAD) ends without a body write
            transport = getattr(self.cycle, "transport", None)  # a direct cycle has none
            if isinstance(transport, OneWriteResponses):
                transport.flush()
            # uvicorn's own steps (0.45 and later: _start_asgi_task), but for the
            # keep-alive timer (below)
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._idle_since = None
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
                return
            self._idle_since = self.loop.time()
            if self._idle_timer is None:
                self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_expired)  # fmt: skip

        # Keep-alive (close a connection idle for --timeout-keep-alive, uvicorn's 5 s) with
        # one timer per connection, as for the head: uvicorn sets a timer after every answer
        # and cancels it at the next request's first bytes, 2 µs of every request.
        def _unset_keepalive_if_required(self) -> None:
            self._idle_since = None  # bytes arrived: not idle; the timer finds it so

        def _idle_expired(self) -> None:
            self._idle_timer = None
            if self._idle_since is None or self.transport.is_closing():
                return  # a request is under way: its answer arms the timer again
            left = self._idle_since + self.timeout_keep_alive - self.loop.time()
            if left > 0:  # idle again since the timer was set
                self._idle_timer = self.loop.call_later(left, self._idle_expired)
                return
            self.transport.close()

        def _direct_handler(self) -> Handler | None:
            """The endpoint that answers this request without ASGI, if it is the plain case."""
            if direct is None or self.access_log or self.expect_100_continue:
                return None
            if self.cycle is not None and not self.cycle.response_complete:
                return None  # pipelined behind a running request: uvicorn queues it
            url = self.url
            if not url.startswith(b"/") or b"?" in url or b"%" in url or not url.isascii():
                return None
            if self.parser.get_method() != b"POST" or self.parser.should_upgrade():
                return None
            return direct(url.decode("ascii"))

        def _start_direct(self, handler: Handler) -> None:
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            cycle = _DirectCycle(self, keep_alive)
            self.cycle = cycle  # type: ignore[assignment]  # duck-typed: the fields uvicorn reads
            task = self.loop.create_task(cycle.run(handler, dict(self.headers)))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

        def answer_direct(self, cycle: _DirectCycle, status: int, headers: list[tuple[bytes, bytes]], payload: bytes) -> None:  # fmt: skip
            """Write a direct cycle's answer in one piece, then go on as uvicorn does."""
            parts = [STATUS_LINE[status]]
            for name, value in [*self.server_state.default_headers, *headers]:
                parts += (name, b": ", value, b"\r\n")
            if not cycle.keep_alive:
                parts.append(b"connection: close\r\n")
            parts += (b"\r\n", payload)
            self.transport.write(b"".join(parts))
            cycle.response_complete = True
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()  # the next pipelined request, or the keep-alive timer

        # One timer per connection, re-armed when it fires, not one per request: a head
        # that begins or completes only moves a timestamp (a timer set and cancelled for
        # every request cost 3 µs of a one-row infer).
        def _arm(self) -> None:
            self._head_since = self.loop.time()
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(head_timeout, self._expired)

        def _disarm(self) -> None:
            self._head_since = None  # the timer, when it fires, finds no head due

        def _expired(self) -> None:
            self._head_timer = None
            if self._head_since is None:
                return  # between requests: the next head arms it again
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm()  # a pipelined head waits behind a running request: not its fault
                return
            left = self._head_since + head_timeout - self.loop.time()
            if left > 0:  # the head began after the timer was set
                self._head_timer = self.loop.call_later(left, self._expired)
                return
            if self._in_head and not self.transport.is_closing():
                self._refuse(408, f"the request head did not arrive within {head_timeout:g} s")

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers what httptools cannot parse (a bad method, request line or
            # header) in plain text; every tiffin answer is JSON
            if self._oversized:
                self._refuse(431, f"the request head is over {max_head} bytes")
                return
            self._refuse(400, f"malformed HTTP request: {msg}")

        def _refuse(self, status: int, message: str) -> None:
            self._disarm()
            body = orjson.dumps({"error": message})
            reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]  # fmt: skip
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, reason, len(body), body)
            )
            self.transport.close()

    return BoundedHttpToolsProtocol


class _DirectCycle:
    """One inference request answered without ASGI (see the module docstring).

    It carries the fields uvicorn's protocol reads and writes on its current cycle: the
    parser callbacks append to ``body`` and clear ``more_body``, ``message_event.set()``
    says something arrived (or the client left: ``disconnected``), ``shutdown`` clears
    ``keep_alive``, and a new request waits while ``response_complete`` is false.
    """

    __slots__ = ("_waiter", "body", "disconnected", "keep_alive", "more_body", "protocol", "response_complete")  # fmt: skip

    def __init__(self, protocol: Any, keep_alive: bool) -> None:
        self.protocol = protocol
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def message_event(self) -> _DirectCycle:
        return self

    def set(self) -> None:
        """Body bytes, the body's end, or a disconnect: wake ``receive`` if it waits."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self) -> MutableMapping[str, Any]:
        """The ASGI ``receive`` of this request: the body as it arrives, then its end.

        It waits only when nothing has arrived since the last call; a body that came
        with its head (a small request) is handed over at once.
        """
        flow = self.protocol.flow
        while not (self.body or not self.more_body or self.disconnected):
            flow.resume_reading()  # the parser pauses reading past uvicorn's high-water mark
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.disconnected:
            return {"type": "http.disconnect"}
        message = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        self.body = bytearray()
        if self.more_body:
            flow.resume_reading()
        return message

    async def run(self, handler: Handler, headers: dict[bytes, bytes]) -> None:
        try:
            status, answer_headers, payload = await handler(headers, self.receive)
        except Exception as exc:
            # The endpoints answer every error themselves; this is a bug in tiffin. As
            # uvicorn does for an app that raises: log it, answer 500, close.
            logging.getLogger("uvicorn.error").error("inference request failed", exc_info=exc)
            status, payload = 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})  # fmt: skip
            answer_headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]  # fmt: skip
            self.keep_alive = False
        except BaseException:  # cancelled: a server stopping past its grace period
            self.protocol.transport.close()
            raise
        if self.disconnected or self.protocol.transport.is_closing():
            return
        self.protocol.answer_direct(self, status, answer_headers, payload)
