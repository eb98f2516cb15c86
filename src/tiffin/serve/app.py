"""The HTTP application: V2 REST endpoints, MLflow's ``/invocations``, metrics, OpenAPI.

The two inference endpoints are the hot path, so a small ASGI front answers them from
the raw scope (one regular expression, no request objects): at one row per request,
Starlette's routing, middleware and request wrappers cost more than the codec and the
model together. Every other endpoint is an ordinary Starlette route. Every answer is
JSON; every error is ``{"error": "..."}`` with its status; no bad request can take the
worker down (an unexpected exception is a 500 with its type and message).

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
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._version import __version__
from ..errors import SignatureError, TiffinError
from . import auth, codec, limits
from .batching import Overloaded
from .budget import Budget
from .config import ServeConfig
from .deadlines import Deadlines
from .errors import HTTPError
from .metrics import CONTENT_TYPE, Metrics
from .model import Model
from .openapi import openapi_document
from .protocol import Answer, Handler
from .repository import Repository

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_INFER = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
_JSON = [(b"content-type", b"application/json")]
_T = TypeVar("_T")
OFFLOAD_BYTES = 1 << 20  # bodies and outputs this large are decoded off the event loop


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _nbytes(outputs: Mapping[str, Any]) -> int:
    size = 0
    for value in outputs.values():
        size += value.nbytes if isinstance(value, np.ndarray) else np.asarray(value).nbytes
    return size


def _error_status(exc: BaseException, timeout: float) -> HTTPError:
    """The HTTP answer for an exception raised while serving a request."""
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, codec.BadRequest):
        return HTTPError(400, str(exc))
    if isinstance(exc, SignatureError):
        return HTTPError(400, codec.signature_message(exc))
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
    extra = _JSON + [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    return error.status, extra, orjson.dumps({"error": error.message})


class Server:
    """The served models and the endpoints; ``create_app`` wraps it in ASGI."""

    def __init__(self, repository: Repository, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.budget = Budget(config.max_buffered_bytes)
        self.budget.report = self.metrics.buffered_bytes(lambda: self.budget.used)
        self.unknown = self.metrics.for_model("", "")
        threads = config.threads or max(2, os.cpu_count() or 2)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tiffin-predict")
        self.codec_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiffin-codec")
        self.deadlines = Deadlines(config.timeout)
        self.models = {(p.name, p.version): Model(p, config, self.executor, self.metrics) for p in repository}  # fmt: skip
        self.latest: dict[str, Model] = {}
        for name, _ in self.models:
            best = repository.get(name)
            assert best is not None
            self.latest[name] = self.models[(name, best.version)]
        self.ready = True  # what readiness probes are told; false from SIGTERM on
        self.accepting = True  # whether inference is taken; false once the drain begins
        self.openapi = openapi_document(
            repository, auth=bool(config.token), metrics_public=config.metrics_public
        )

    def model(self, name: str, version: str | None) -> Model:
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

    # -- the hot path ----------------------------------------------------------------
    # Each inference endpoint is one coroutine from the request's headers and a body
    # channel to the whole answer (status, headers, payload). The ASGI front sends it;
    # tiffin's HTTP protocol (``protocol.py``) calls it directly and writes it, without
    # the ASGI scope and messages.
    async def answer_infer(self, headers: dict[bytes, bytes], receive: Receive, name: str, version: str | None) -> Answer:  # fmt: skip
        """``POST /v2/models/{name}[/versions/{version}]/infer``."""
        started = time.perf_counter()
        model: Model | None = None
        try:
            auth.check_token(headers, self.config.token)
            model = self.model(name, version)
            if not self.accepting:
                raise HTTPError(503, "the server is shutting down", {"Retry-After": "1"})
            limits.check_content_type(headers, binary_ok=True)
            payload, json_len = await self.deadlines.within(self._infer(model, receive, headers))
            status = 200
            if json_len is None:
                extra = _JSON
            else:
                extra = [(b"content-type", b"application/octet-stream"),
                         (b"inference-header-content-length", str(json_len).encode())]  # fmt: skip
        except Exception as exc:  # every failure is an answer, never a dead worker
            status, extra, payload = _error_answer(exc, self.config.timeout)
        (model.metrics if model else self.unknown).answered("infer", status, time.perf_counter() - started)  # fmt: skip
        return status, [*extra, (b"content-length", str(len(payload)).encode())], payload

    async def _infer(self, model: Model, receive: Receive, headers: dict[bytes, bytes]) -> tuple[bytes, int | None]:  # fmt: skip
        model.admit()  # counted against the queue while the body arrives, not only after
        body = b""
        try:
            body = await limits.read_body(receive, headers, self.config.max_body, self.budget)
            length = limits.header(headers, b"inference-header-content-length")
            json_len = None if length is None else limits.decimal(length, "Inference-Header-Content-Length")  # fmt: skip
            # each codec step here, or on the codec thread when its data is large (_offload)
            if len(body) < OFFLOAD_BYTES:
                arrays, request = codec.decode_request(body, json_len)
            else:
                arrays, request = await self._offload(codec.decode_request, body, json_len)
            outputs = await model.infer(arrays)
            if _nbytes(outputs) < OFFLOAD_BYTES:
                return codec.encode_response(outputs, request, model.name, model.version)
            return await self._offload(codec.encode_response, outputs, request, model.name, model.version)  # fmt: skip
        finally:
            self.budget.give(len(body))  # read_body keeps the body's bytes taken; held to here
            model.leave()

    async def _offload(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a codec step on the codec thread: its data is large.

        Measured here: a 57 MB JSON body took 8 s to decode (and 2 GB at its peak); on the
        event loop that is 8 s in which no other request, not even a health probe, is
        answered, and --timeout cannot fire. One codec thread also means at most one
        such peak at a time per worker. Small data stays on the loop: the hop costs more
        than the step.
        """
        return await asyncio.get_running_loop().run_in_executor(self.codec_pool, fn, *args)

    async def answer_invocations(self, headers: dict[bytes, bytes], receive: Receive) -> Answer:
        """``POST /invocations``: MLflow's scoring protocol, so MLflow clients switch unchanged."""
        started = time.perf_counter()
        model: Model | None = None
        try:
            auth.check_token(headers, self.config.token)
            if len(self.latest) != 1:
                raise HTTPError(400, f"{len(self.latest)} models are served; /invocations needs exactly one (use /v2/models/<name>/infer)")  # fmt: skip
            model = next(iter(self.latest.values()))
            if not self.accepting:
                raise HTTPError(503, "the server is shutting down", {"Retry-After": "1"})
            limits.check_content_type(headers, binary_ok=False)
            payload = await self.deadlines.within(self._invoke(model, receive, headers))
            status, extra = 200, _JSON
        except Exception as exc:
            status, extra, payload = _error_answer(exc, self.config.timeout)
        (model.metrics if model else self.unknown).answered("invocations", status, time.perf_counter() - started)  # fmt: skip
        return status, [*extra, (b"content-length", str(len(payload)).encode())], payload

    async def _invoke(self, model: Model, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        from .mlflow_format import decode_invocation, encode_predictions

        model.admit()
        body = b""
        try:
            body = await limits.read_body(receive, headers, self.config.max_body, self.budget)
            if len(body) < OFFLOAD_BYTES:
                arrays = decode_invocation(body, model.signature)
            else:
                arrays = await self._offload(decode_invocation, body, model.signature)
            outputs = await model.infer(arrays)
            if _nbytes(outputs) < OFFLOAD_BYTES:
                return encode_predictions(outputs, model.signature)
            return await self._offload(encode_predictions, outputs, model.signature)
        finally:
            self.budget.give(len(body))
            model.leave()

    # -- everything else (Starlette) -------------------------------------------------
    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def server_ready(self, request: Request) -> Response:
        return json_response({"ready": self.ready}, 200 if self.ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(
            {"name": "tiffin", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    def _auth(self, request: Request) -> None:
        auth.check_token(dict(request.scope["headers"]), self.config.token)

    async def model_metadata(self, request: Request) -> Response:
        self._auth(request)
        model = self.model(request.path_params["name"], request.path_params.get("version"))
        return json_response(model.metadata)

    async def model_config(self, request: Request) -> Response:
        self._auth(request)
        model = self.model(request.path_params["name"], request.path_params.get("version"))
        return json_response(model.config)

    async def model_ready(self, request: Request) -> Response:
        model = self.model(request.path_params["name"], request.path_params.get("version"))
        body = {"name": model.name, "version": model.version, "ready": self.ready}
        return json_response(body, 200 if self.ready else 503)

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
        model, versioned = "/v2/models/{name:str}", "/v2/models/{name:str}/versions/{version:str}"
        s = server
        routes = [
            Route("/v2/health/live", s.live),
            Route("/v2/health/ready", s.server_ready),
            Route("/v2", s.server_metadata),
            Route(model, s.model_metadata),
            Route(versioned, s.model_metadata),
            Route(model + "/config", s.model_config),
            Route(versioned + "/config", s.model_config),
            Route(model + "/ready", s.model_ready),
            Route(versioned + "/ready", s.model_ready),
            Route(model + "/infer", _post_only, methods=["POST"]),
            Route(versioned + "/infer", _post_only, methods=["POST"]),
            Route("/invocations", _post_only, methods=["POST"]),
            Route("/metrics", s.metrics_endpoint),
            Route("/v2/openapi.json", s.openapi_endpoint),
            Route("/openapi.json", s.openapi_endpoint),
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
        if path.endswith("/infer"):
            found = _INFER.fullmatch(path)
            if found:
                name, version, server = found["name"], found["version"], self.server
                return lambda headers, receive: server.answer_infer(headers, receive, name, version)
        elif path == "/invocations":
            return self.server.answer_invocations
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
