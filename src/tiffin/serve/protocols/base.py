"""What a wire protocol is to the server: one small interface, as an HTTP client's transport.

A protocol names the POST paths it answers inference on (``match``), turns a request body
into named arrays (``decode``) and the model's outputs into an answer (``encode``), adds
its other endpoints (``routes``) and its part of the OpenAPI document (``openapi_paths``).
The server does everything in between, the same way for every protocol: auth, admission,
the body limits, the signature check, batching, the deadline, the metrics, and moving a
large body's decode or encode off the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import orjson
from starlette.responses import Response
from starlette.routing import Route

from ..._load import Predictor
from ...schema.signature import Signature

Arrays = dict[str, np.ndarray]
Headers = list[tuple[bytes, bytes]]
# the model a path names: (name, version); a name of None means the only model served
Target = tuple[str | None, str | None]


class Served(Protocol):
    """What a protocol reads of a served model."""

    name: str
    version: str
    signature: Signature
    metadata: dict[str, Any]
    config: dict[str, Any]


class Host(Protocol):
    """What a protocol's routes read of the server."""

    @property
    def ready(self) -> bool: ...

    def model(self, name: str, version: str | None) -> Served: ...

    def authorize(self, headers: Mapping[bytes, bytes]) -> None: ...


class WireProtocol(ABC):
    """One wire protocol. A new one is a module holding a subclass, and a line in ``PROTOCOLS``."""

    #: the label of its inference endpoint in ``/metrics``
    endpoint: str
    #: Starlette path templates of its inference endpoints (other methods get 405 there)
    inference_paths: tuple[str, ...]
    #: whether its requests may be ``application/octet-stream``, not only JSON
    binary_ok: bool = False

    @abstractmethod
    def match(self, path: str) -> Target | None:
        """The model a POST to ``path`` (decoded, no query, no trailing slash) asks for.

        None: not an inference path of this protocol. Called for every POST on the
        direct lane, so it must cost no more than a string test and one match.
        """

    @abstractmethod
    def decode(self, body: bytes, headers: Mapping[bytes, bytes], model: Served) -> tuple[Arrays, Any]:  # fmt: skip
        """The body as named arrays, and what ``encode`` needs to know of the request.

        Raises ``BadRequest`` (400) for a body the protocol cannot take.
        """

    @abstractmethod
    def encode(self, outputs: Mapping[str, np.ndarray], request: Any, model: Served) -> tuple[bytes, Headers]:  # fmt: skip
        """The answer's payload and its headers (Content-Type among them, not Content-Length)."""

    def routes(self, host: Host) -> list[Route]:
        """Its endpoints other than inference (metadata, health)."""
        return []

    def openapi_paths(self, models: Sequence[Predictor], latest: Mapping[str, Predictor]) -> dict[str, Any]:  # fmt: skip
        """Its part of the OpenAPI document's ``paths``; ``latest``: the version that answers for a name."""
        return {}


JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:  # fmt: skip
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


# -- the OpenAPI pieces every protocol's part shares ------------------------------------

ERROR_ANSWER: dict[str, Any] = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
INFER_ERRORS = {
    "400": "malformed request, or inputs that break the signature",
    "401": "missing or wrong bearer token",
    "404": "no such model or version",
    "408": "the body arrived slower than --min-body-rate",
    "413": "body over the limit",
    "415": "unsupported Content-Type or Content-Encoding",
    "503": "overloaded, over the buffered-bytes budget, or shutting down (see Retry-After)",
    "504": "no answer within the timeout",
}


def operation(summary: str, *codes: str, secured: bool = False) -> dict[str, Any]:
    """An OpenAPI operation answering 200, or one of ``codes`` with ``{"error": ...}``.

    ``secured``: it needs the bearer token when the server has one; otherwise it is open.
    """
    responses: dict[str, Any] = {"200": {"description": "ok"}}
    for code in codes:
        responses[code] = {**ERROR_ANSWER, "description": INFER_ERRORS.get(code, "error")}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if not secured:
        op["security"] = []
    return op
