"""The wire-protocol interface: the protocols do not overlap, and a new one is one class in a list.

``Echo`` below is a whole protocol written against ``WireProtocol`` alone; handed to the
server beside ``PROTOCOLS``, it is answered on the direct lane and through ASGI, its
other routes and its OpenAPI part are served, and its endpoint has its own metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import tiffin
from tiffin._load import Predictor
from tiffin.serve.app import App, Server
from tiffin.serve.config import ServeConfig
from tiffin.serve.errors import BadRequest
from tiffin.serve.protocols import PROTOCOLS
from tiffin.serve.protocols.base import (
    JSON_HEADERS,
    Arrays,
    Headers,
    Host,
    Served,
    Target,
    WireProtocol,
    json_response,
    operation,
)
from tiffin.serve.repository import Repository

PATHS = {
    "/v2/models/iris/infer": "infer",
    "/v2/models/iris/versions/1/infer": "infer",
    "/invocations": "invocations",
    "/v2/models/iris": None,
    "/v2/models/iris/ready": None,
    "/v2/health/live": None,
    "/metrics": None,
    "/v2/models/infer/versions": None,
}


@pytest.mark.parametrize("path", PATHS)
def test_each_inference_path_belongs_to_exactly_one_protocol(path: str) -> None:
    owners = [p.endpoint for p in PROTOCOLS if p.match(path) is not None]
    assert owners == ([PATHS[path]] if PATHS[path] else [])


def test_the_protocols_have_distinct_endpoints_and_paths() -> None:
    endpoints = [p.endpoint for p in PROTOCOLS]
    paths = [path for p in PROTOCOLS for path in p.inference_paths]
    assert len(set(endpoints)) == len(endpoints) == len(PROTOCOLS)
    assert len(set(paths)) == len(paths)


class Echo(WireProtocol):
    """POST /echo/{name} with {"rows": [[...]]}: {"echo": outputs as lists}."""

    endpoint = "echo"
    inference_paths = ("/echo/{name:str}",)

    def match(self, path: str) -> Target | None:
        name = path.removeprefix("/echo/")
        return (name, None) if name != path and "/" not in name else None

    def decode(self, body: bytes, headers: Mapping[bytes, bytes], model: Served) -> tuple[Arrays, Any]:  # fmt: skip
        rows = orjson.loads(body).get("rows")
        if not isinstance(rows, list):
            raise BadRequest("echo needs 'rows'")
        return {model.signature.inputs[0].name: np.array(rows, dtype=np.float64)}, len(rows)

    def encode(self, outputs: Mapping[str, np.ndarray], request: Any, model: Served) -> tuple[bytes, Headers]:  # fmt: skip
        body = {"rows": request, "echo": {k: np.asarray(v).tolist() for k, v in outputs.items()}}
        return orjson.dumps(body), JSON_HEADERS

    def routes(self, host: Host) -> list[Route]:
        async def hello(request: Request) -> Response:
            return json_response({"echo": True, "ready": host.ready})

        return [Route("/echo", hello)]

    def openapi_paths(self, models: Sequence[Predictor], latest: Mapping[str, Predictor]) -> dict[str, Any]:  # fmt: skip
        return {f"/echo/{name}": {"post": operation("echo", "400", secured=True)} for name in latest}  # fmt: skip


@pytest.fixture
def server(packages: dict[str, Path]) -> Any:
    repo = Repository()
    repo.add(tiffin.load(packages["iris"]))
    server = Server(repo, ServeConfig(), protocols=(*PROTOCOLS, Echo()))
    yield server
    server.executor.shutdown()
    server.codec_pool.shutdown()


ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
V2_REQUEST = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}


def test_a_new_protocol_is_answered_on_the_direct_lane(server: Server) -> None:
    handler = App(server).post_handler("/echo/iris")
    assert handler is not None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": orjson.dumps({"rows": ROWS}), "more_body": False}

    status, headers, payload = asyncio.run(handler({}, receive))
    assert status == 200, payload
    answer = orjson.loads(payload)
    assert answer["rows"] == 2 and len(next(iter(answer["echo"].values()))) == 2
    assert (b"content-length", str(len(payload)).encode()) in headers
    assert 'endpoint="echo"' in server.metrics.render().decode()


def test_a_new_protocol_is_served_through_asgi_with_its_routes_and_openapi(server: Server) -> None:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=App(server))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [
                await client.post("/echo/iris?q=1", json={"rows": ROWS}),  # a query: the ASGI front
                await client.post("/echo/iris", json={"nope": 1}),
                await client.post("/echo/nope", json={"rows": ROWS}),
                await client.get("/echo/iris"),
                await client.get("/echo"),
                await client.get("/openapi.json"),
                await client.post("/v2/models/iris/infer", json=V2_REQUEST),
            ]

    echoed, bad, unknown, wrong_method, hello, doc, v2 = asyncio.run(main())
    assert echoed.status_code == 200 and echoed.json()["rows"] == 2
    assert bad.status_code == 400 and bad.json() == {"error": "echo needs 'rows'"}
    assert unknown.status_code == 404 and "'nope' is not served" in unknown.json()["error"]
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert hello.json() == {"echo": True, "ready": True}
    assert "/echo/iris" in doc.json()["paths"] and "/v2/models/iris/infer" in doc.json()["paths"]
    assert v2.status_code == 200  # the protocols beside it are untouched


def test_a_protocol_not_in_the_list_is_not_served(packages: dict[str, Path]) -> None:
    repo = Repository()
    repo.add(tiffin.load(packages["iris"]))
    server = Server(repo, ServeConfig())
    try:
        assert App(server).post_handler("/echo/iris") is None
        assert "/echo/iris" not in server.openapi["paths"]
    finally:
        server.executor.shutdown()
        server.codec_pool.shutdown()
