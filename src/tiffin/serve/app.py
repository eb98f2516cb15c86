"""The Starlette application: V2 REST endpoints, /invocations, /metrics, limits, auth.

Every handler ends in a JSON body; a bad request is a 4xx, never a dead worker.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._version import __version__
from ..errors import SignatureError, TiffinError
from ..load import Predictor
from . import codec
from .batching import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS, Batcher, Overloaded
from .metrics import Metrics
from .openapi import openapi_document
from .repository import Repository

JSON_TYPES = ("application/json",)
BINARY_TYPES = ("application/octet-stream", "application/vnd.kserve.binary")


@dataclass
class ServeConfig:
    max_body: int = 64 << 20
    timeout: float = 30.0
    queue_size: int = 256
    batching: bool = True
    max_batch_size: int | None = None
    max_latency_ms: float | None = None
    token: str | None = None
    threads: int | None = None


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


class Model:
    """One served package, with its batcher and in-flight accounting."""

    def __init__(
        self,
        predictor: Predictor,
        config: ServeConfig,
        executor: ThreadPoolExecutor,
        metrics: Metrics,
    ) -> None:
        self.predictor = predictor
        self.name, self.version = predictor.name, predictor.version
        self.metadata = predictor.signature.to_v2_metadata(
            self.name, self.version, f"tiffin_{predictor.flavor}"
        )
        self.executor = executor
        self.metrics = metrics
        self.labels = (self.name, self.version)
        self.queue_size = config.queue_size
        self.in_flight = 0
        batching = dict(predictor.manifest.runtime.get("batching") or {})
        self.batcher: Batcher | None = None
        if config.batching and predictor.signature.batchable and batching.get("enabled", True):
            self.batcher = Batcher(
                predictor.predict_named,
                executor,
                max_batch_size=int(
                    config.max_batch_size or batching.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
                ),
                max_latency_ms=float(
                    config.max_latency_ms or batching.get("max_latency_ms", DEFAULT_MAX_LATENCY_MS)
                ),
                queue_size=config.queue_size,
                on_batch=self._observe_batch,
            )

    def _observe_batch(self, requests: int, rows: int) -> None:
        self.metrics.batch_requests.labels(*self.labels).observe(requests)
        self.metrics.batch_rows.labels(*self.labels).observe(rows)

    async def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.in_flight >= self.queue_size:
            raise Overloaded("too many requests in flight for this model")
        self.in_flight += 1
        self.metrics.queue_depth.labels(*self.labels).set(self.in_flight)
        try:
            # Enforce the signature before queueing, so one bad request never joins a batch.
            self.predictor.signature.from_named_arrays(arrays)
            if self.batcher is not None:
                return await self.batcher.submit(arrays)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self.predictor.predict_named, arrays)
        finally:
            self.in_flight -= 1
            self.metrics.queue_depth.labels(*self.labels).set(self.in_flight)


class Server:
    def __init__(self, repository: Repository, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        threads = config.threads or max(2, os.cpu_count() or 2)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tiffin-predict")
        self.models = {
            (p.name, p.version): Model(p, config, self.executor, self.metrics) for p in repository
        }
        self.latest = {}
        for name, _version in self.models:
            best = repository.get(name)
            assert best is not None
            self.latest[name] = self.models[(name, best.version)]
        self.ready = True
        self.openapi = openapi_document(repository)

    def model(self, name: str, version: str | None) -> Model:
        found = self.latest.get(name) if version is None else self.models.get((name, version))
        if found is None:
            what = f"model {name!r}" + (f" version {version!r}" if version else "")
            raise HTTPError(404, f"{what} is not served here")
        return found

    # -- request plumbing ----------------------------------------------------------
    def check_auth(self, request: Request) -> None:
        if not self.config.token:
            return
        given = request.headers.get("authorization", "")
        expected = f"Bearer {self.config.token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    async def read_body(self, request: Request, *, binary_ok: bool) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype not in JSON_TYPES and not (binary_ok and ctype in BINARY_TYPES):
            raise HTTPError(415, f"unsupported Content-Type {ctype!r}; send application/json")
        limit = self.config.max_body
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise HTTPError(400, "bad Content-Length")
            if int(length) > limit:
                raise HTTPError(413, f"the body is {length} bytes; the limit is {limit}")
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding not in ("identity", "gzip", "deflate"):
            raise HTTPError(415, f"unsupported Content-Encoding {encoding!r}")
        inflater = (
            zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            if encoding != "identity"
            else None
        )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            if inflater is not None:
                try:
                    chunk = inflater.decompress(chunk, limit + 1 - size)
                except zlib.error as exc:
                    raise HTTPError(400, f"the body is not valid {encoding}: {exc}") from None
                if inflater.unconsumed_tail:
                    raise HTTPError(413, f"the body expands past the limit of {limit} bytes")
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- endpoints -------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def server_ready(self, request: Request) -> Response:
        return json_response({"ready": self.ready}, 200 if self.ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(
            {"name": "tiffin", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def model_metadata(self, request: Request) -> Response:
        self.check_auth(request)
        model = self.model(request.path_params["name"], request.path_params.get("version"))
        return json_response(model.metadata)

    async def model_ready(self, request: Request) -> Response:
        model = self.model(request.path_params["name"], request.path_params.get("version"))
        return json_response({"name": model.name, "ready": self.ready}, 200 if self.ready else 503)

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        model: Model | None = None
        try:
            self.check_auth(request)
            model = self.model(request.path_params["name"], request.path_params.get("version"))
            if not self.ready:
                raise HTTPError(503, "the server is shutting down", {"Retry-After": "1"})
            body = await self.read_body(request, binary_ok=True)
            header = request.headers.get("inference-header-content-length")
            if header is not None and not header.isdigit():
                raise HTTPError(400, "bad Inference-Header-Content-Length")
            try:
                arrays, parsed = codec.decode_request(body, int(header) if header else None)
                outputs = await asyncio.wait_for(model.infer(arrays), self.config.timeout)
                payload, json_len = codec.encode_response(
                    outputs, parsed, model.name, model.version
                )
            except codec.BadRequest as exc:
                raise HTTPError(400, str(exc)) from None
            except SignatureError as exc:
                raise HTTPError(400, codec.check_signature_error(exc)) from None
            except Overloaded as exc:
                raise HTTPError(503, f"overloaded: {exc}", {"Retry-After": "1"}) from None
            except asyncio.TimeoutError:
                raise HTTPError(
                    504, f"inference took longer than {self.config.timeout} s"
                ) from None
            except TiffinError as exc:
                raise HTTPError(500, exc.message) from None
            headers = {}
            media = "application/json"
            if json_len is not None:
                headers["Inference-Header-Content-Length"] = str(json_len)
                media = "application/octet-stream"
            self._count(model, "infer", 200, started)
            return Response(payload, media_type=media, headers=headers)
        except HTTPError as exc:
            self._count(model, "infer", exc.status, started)
            raise

    async def invocations(self, request: Request) -> Response:
        """MLflow's scoring protocol, so MLflow clients switch without changes."""
        started = time.perf_counter()
        model: Model | None = None
        try:
            self.check_auth(request)
            if len(self.latest) != 1:
                raise HTTPError(400, "several models are served; use /v2/models/{name}/infer")
            model = next(iter(self.latest.values()))
            body = await self.read_body(request, binary_ok=False)
            try:
                from .mlflow_format import decode_invocation, encode_predictions

                inputs = decode_invocation(body, model.predictor.signature)
                loop = asyncio.get_running_loop()
                output = await asyncio.wait_for(
                    loop.run_in_executor(self.executor, model.predictor.predict, inputs),
                    self.config.timeout,
                )
            except codec.BadRequest as exc:
                raise HTTPError(400, str(exc)) from None
            except SignatureError as exc:
                raise HTTPError(400, codec.check_signature_error(exc)) from None
            except asyncio.TimeoutError:
                raise HTTPError(
                    504, f"inference took longer than {self.config.timeout} s"
                ) from None
            except TiffinError as exc:
                raise HTTPError(500, exc.message) from None
            self._count(model, "invocations", 200, started)
            return Response(encode_predictions(output), media_type="application/json")
        except HTTPError as exc:
            self._count(model, "invocations", exc.status, started)
            raise

    def _count(self, model: Model | None, endpoint: str, code: int, started: float) -> None:
        name, version = model.labels if model else ("", "")
        self.metrics.requests.labels(name, version, endpoint, str(code)).inc()
        if code >= 400:
            self.metrics.errors.labels(name, version, str(code)).inc()
        else:
            self.metrics.latency.labels(name, version).observe(time.perf_counter() - started)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi_endpoint(self, request: Request) -> Response:
        return json_response(self.openapi)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return json_response({"error": exc.message}, exc.status, exc.headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    return json_response(
        {"error": f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'not found')}"},
        status,
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    return json_response({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)


def create_app(repository: Repository, config: ServeConfig | None = None) -> Starlette:
    server = Server(repository, config or ServeConfig())
    model = "/v2/models/{name:str}"
    versioned = model + "/versions/{version:str}"
    routes = [
        Route("/v2/health/live", server.live),
        Route("/v2/health/ready", server.server_ready),
        Route("/v2", server.server_metadata),
        Route(model, server.model_metadata),
        Route(versioned, server.model_metadata),
        Route(model + "/ready", server.model_ready),
        Route(versioned + "/ready", server.model_ready),
        Route(model + "/infer", server.infer, methods=["POST"]),
        Route(versioned + "/infer", server.infer, methods=["POST"]),
        Route("/invocations", server.invocations, methods=["POST"]),
        Route("/metrics", server.metrics_endpoint),
        Route("/v2/openapi.json", server.openapi_endpoint),
        Route("/openapi.json", server.openapi_endpoint),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPError: _http_error,
            404: _not_found,
            405: _not_found,
            Exception: _server_error,
        },
    )
    app.state.server = server
    return app
