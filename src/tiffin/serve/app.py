"""The HTTP application: every wire protocol's endpoints (``protocols``), metrics, OpenAPI.

The inference endpoints are the hot path, so a small ASGI front answers a POST to one of
them from the raw scope (each protocol's ``match``, no request objects): at one row per
request, Starlette's routing, middleware and request wrappers cost more than the codec
and the model together. Every other endpoint is an ordinary Starlette route. Every
answer is JSON; every error is ``{"error": "..."}`` with its status; no bad request can
take the worker down (an unexpected exception is a 500 with its type and message).

Auth (``--token``): model metadata and config, inference, ``/invocations``, the OpenAPI
document and ``/metrics`` (its labels name every model and version) need
``Authorization: Bearer <token>``; the health endpoints (server live and ready, model
ready) and server metadata stay open for probes. ``--metrics-public`` opens ``/metrics``
again for scrapers that cannot send a token.

Memory: a request takes a slot of its model's ``--queue-size`` from the end of its head
to its answer, and every body byte held counts against one process-wide ``Budget``
(``--max-buffered-bytes``); see ``budget``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import SignatureError, TiffinError
from . import auth, limits
from .batching import Overloaded
from .budget import Budget
from .config import ServeConfig
from .deadlines import Deadlines
from .errors import BadRequest, HTTPError
from .http import Answer, Handler
from .metrics import CONTENT_TYPE, Metrics
from .model import ServedModel
from .openapi import openapi_document
from .protocols import PROTOCOLS, WireProtocol
from .protocols.base import JSON_HEADERS, Target, json_response
from .repository import Repository

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_T = TypeVar("_T")
OFFLOAD_BYTES = 1 << 20  # bodies and outputs this large are decoded off the event loop


def _nbytes(outputs: Mapping[str, Any]) -> int:
    size = 0
    for value in outputs.values():
        size += value.nbytes if isinstance(value, np.ndarray) else np.asarray(value).nbytes
    return size


def _signature_message(exc: SignatureError) -> str:
    """The signature's own message, with its fix, for a 400 answer."""
    return exc.message + (f" ({exc.fix})" if exc.fix else "")


def _error_status(exc: BaseException, timeout: float) -> HTTPError:
    """The HTTP answer for an exception raised while serving a request."""
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, BadRequest):
        return HTTPError(400, str(exc))
    if isinstance(exc, SignatureError):
        return HTTPError(400, _signature_message(exc))
    if isinstance(exc, Overloaded):
        return HTTPError(503, f"overloaded: {exc}", {"Retry-After": "1"})
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return HTTPError(504, f"no answer within the {timeout:g} s timeout")
    if isinstance(exc, TiffinError):
        return HTTPError(500, exc.message)
    return HTTPError(500, f"internal error: {type(exc).__name__}: {exc}")


def _error_answer(exc: BaseException, timeout: float) -> Answer:
    """Status, headers and ``{"error": ...}`` body for a request that failed with ``exc``."""
    error = _error_status(exc, timeout)
    extra = JSON_HEADERS + [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    return error.status, extra, orjson.dumps({"error": error.message})


class Server:
    """The served models and the endpoints; ``create_app`` wraps it in ASGI."""

    def __init__(self, repository: Repository, config: ServeConfig, protocols: Sequence[WireProtocol] = PROTOCOLS) -> None:  # fmt: skip
        self.config = config
        self.protocols = tuple(protocols)
        self.metrics = Metrics()
        self.budget = Budget(config.max_buffered_bytes)
        self.budget.report = self.metrics.buffered_bytes(lambda: self.budget.used)
        self.unknown = self.metrics.for_model("", "")
        threads = config.threads or max(2, os.cpu_count() or 2)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tiffin-predict")
        self.codec_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiffin-codec")
        self.deadlines = Deadlines(config.timeout)
        self.models = {(p.name, p.version): ServedModel(p, config, self.executor, self.metrics) for p in repository}  # fmt: skip
        self.latest: dict[str, ServedModel] = {}
        for name, _ in self.models:
            best = repository.get(name)
            assert best is not None
            self.latest[name] = self.models[(name, best.version)]
        self.ready = True  # what readiness probes are told; false from SIGTERM on
        self.accepting = True  # whether inference is taken; false once the drain begins
        self.openapi = openapi_document(
            repository,
            self.protocols,
            auth=bool(config.token),
            metrics_public=config.metrics_public,
        )

    def model(self, name: str, version: str | None) -> ServedModel:
        # Names are dictionary keys: "../x" or "%2e%2e" is a key that is not there, and no
        # request ever reads a file.
        found = self.latest.get(name) if version is None else self.models.get((name, version))
        if found is None:
            what = f"model {name!r:.100}" + (f" version {version!r:.100}" if version else "")
            if self.config.token:  # model ready is open: do not list names to strangers
                raise HTTPError(404, f"{what} is not served here")
            served = ", ".join(sorted(self.latest)[:10])
            raise HTTPError(404, f"{what} is not served here (served: {served})")
        return found

    def only_model(self, protocol: WireProtocol) -> ServedModel:
        """The one model served, for a protocol whose paths name none (``/invocations``)."""
        if len(self.latest) != 1:
            where = " or ".join(protocol.inference_paths)
            raise HTTPError(400, f"{len(self.latest)} models are served; {where} needs exactly one (use /v2/models/<name>/infer)")  # fmt: skip
        return next(iter(self.latest.values()))

    def authorize(self, headers: Mapping[bytes, bytes]) -> None:
        """401 unless the request carries the bearer token (when the server has one)."""
        auth.check_token(headers, self.config.token)

    # -- the hot path ----------------------------------------------------------------
    # Each inference request is one coroutine from the request's headers and a body
    # channel to the whole answer (status, headers, payload). The ASGI front sends it;
    # tiffin's HTTP protocol (``http.py``) calls it directly and writes it, without the
    # ASGI scope and messages.
    async def answer(self, protocol: WireProtocol, target: Target, headers: dict[bytes, bytes], receive: Receive) -> Answer:  # fmt: skip
        """A POST to one of ``protocol``'s inference endpoints, for the model ``target`` names."""
        started = time.perf_counter()
        model: ServedModel | None = None
        try:
            auth.check_token(headers, self.config.token)
            name, version = target
            model = self.only_model(protocol) if name is None else self.model(name, version)
            if not self.accepting:
                raise HTTPError(503, "the server is shutting down", {"Retry-After": "1"})
            limits.check_content_type(headers, binary_ok=protocol.binary_ok)
            status = 200
            payload, extra = await self.deadlines.within(self._infer(protocol, model, receive, headers))  # fmt: skip
        except Exception as exc:  # every failure is an answer, never a dead worker
            status, extra, payload = _error_answer(exc, self.config.timeout)
        (model.metrics if model else self.unknown).answered(protocol.endpoint, status, time.perf_counter() - started)  # fmt: skip
        return status, [*extra, (b"content-length", str(len(payload)).encode())], payload

    async def _infer(self, protocol: WireProtocol, model: ServedModel, receive: Receive, headers: dict[bytes, bytes]) -> tuple[bytes, list[tuple[bytes, bytes]]]:  # fmt: skip
        model.admit()  # counted against the queue while the body arrives, not only after
        body = b""
        try:
            body = await limits.read_body(receive, headers, self.config.max_body, self.budget)
            # each codec step here, or on the codec thread when its data is large (_offload)
            if len(body) < OFFLOAD_BYTES:
                arrays, request = protocol.decode(body, headers, model)
            else:
                arrays, request = await self._offload(protocol.decode, body, headers, model)
            outputs = await model.infer(arrays)
            if _nbytes(outputs) < OFFLOAD_BYTES:
                return protocol.encode(outputs, request, model)
            return await self._offload(protocol.encode, outputs, request, model)
        finally:
            self.budget.give(len(body))  # read_body keeps the body's bytes taken; held to here
            model.leave()

    async def _offload(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a codec step on the codec thread: its data is large.

        Decoding a large JSON body takes seconds (about 8 s and 2 GB at its peak for
        57 MB); on the event loop no other request, not even a health probe, would be
        answered meanwhile, and --timeout could not fire. One codec thread also means at
        most one such peak at a time per worker. Small data stays on the loop: the hop
        costs more than the step.
        """
        return await asyncio.get_running_loop().run_in_executor(self.codec_pool, fn, *args)

    # -- everything else (Starlette) -------------------------------------------------
    def _auth(self, request: Request) -> None:
        self.authorize(dict(request.scope["headers"]))

    async def metrics_endpoint(self, request: Request) -> Response:
        if not self.config.metrics_public:
            self._auth(request)  # the labels name every served model and version
        return Response(self.metrics.render(), headers={"content-type": CONTENT_TYPE})

    async def openapi_endpoint(self, request: Request) -> Response:
        self._auth(request)
        return json_response(self.openapi)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return json_response({"error": exc.message}, exc.status, exc.headers)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    status = int(getattr(exc, "status_code", 404))
    detail = "no such endpoint" if status == 404 else str(getattr(exc, "detail", "error"))
    headers = getattr(exc, "headers", None)  # 405 carries Allow
    if status == 405 and headers and "Allow" in headers:
        detail += f"; use {headers['Allow']}"
    path = request.url.path
    where = path if len(path) <= 200 else path[:200] + "..."
    return json_response({"error": f"{request.method} {where}: {detail}"}, status, headers)


async def _post_only(request: Request) -> Response:
    # Inference paths are answered by the raw front for POST; these routes exist so that
    # any other method gets 405 with Allow: POST rather than 404.
    raise HTTPError(404, f"{request.method} {request.url.path[:200]}: no such endpoint")


async def _server_error(request: Request, exc: Exception) -> Response:
    return json_response({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)


class App:
    """The ASGI application: the inference endpoints first, Starlette for the rest."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.protocols = server.protocols
        routes = [route for protocol in server.protocols for route in protocol.routes(server)]
        routes += [Route(path, _post_only, methods=["POST"]) for protocol in server.protocols for path in protocol.inference_paths]  # fmt: skip
        routes += [
            Route("/metrics", server.metrics_endpoint),
            Route("/v2/openapi.json", server.openapi_endpoint),
            Route("/openapi.json", server.openapi_endpoint),
        ]
        handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
            HTTPError: _http_error,
            404: _starlette_error,
            405: _starlette_error,
            Exception: _server_error,
        }
        self.starlette = Starlette(routes=routes, exception_handlers=handlers)
        # A trailing slash is served as if absent (below), never redirected: a 307 has no
        # JSON body, and clients do not re-send a POST body after one.
        self.starlette.router.redirect_slashes = False
        self.state = self.starlette.state
        self.state.server = server

    def post_handler(self, path: str) -> Handler | None:
        """The inference endpoint a POST to ``path`` (decoded, no query) goes to, if any."""
        if len(path) > 1 and path.endswith("/"):  # served as if absent (see __init__)
            path = path.rstrip("/") or "/"
        for protocol in self.protocols:
            target = protocol.match(path)
            if target is not None:
                return partial(self.server.answer, protocol, target)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.post_handler(scope["path"])
            if handler is not None:
                status, headers, payload = await handler(dict(scope["headers"]), receive)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": payload})
                return
        if scope["type"] == "http" and len(scope["path"]) > 1 and scope["path"].endswith("/"):
            scope = {**scope, "path": scope["path"].rstrip("/") or "/"}
        await self.starlette(scope, receive, send)


def create_app(repository: Repository, config: ServeConfig | None = None) -> App:
    """The ASGI app serving every package in ``repository``."""
    return App(Server(repository, config or ServeConfig()))
