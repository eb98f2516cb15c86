"""The Open Inference Protocol (KServe V2), as Triton and Seldon MLServer speak it.

Endpoints: server health and metadata, model metadata, ready and Triton's model
configuration, and ``POST /v2/models/{name}[/versions/{version}]/infer``. The tensors of
an infer request and its response go through :mod:`.v2_codec` (JSON and the binary
tensor extension).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._load import Predictor
from ..._version import __version__
from ...schema.tensorspec import TensorSpec
from .. import limits
from .base import (
    ERROR_ANSWER,
    INFER_ERRORS,
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
from .v2_codec import decode_request, encode_response

_INFER = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
_BINARY = b"application/octet-stream"


class V2(WireProtocol):
    """The Open Inference Protocol: ``/v2`` endpoints, JSON and binary tensors."""

    endpoint = "infer"
    inference_paths = (
        "/v2/models/{name:str}/infer",
        "/v2/models/{name:str}/versions/{version:str}/infer",
    )
    binary_ok = True

    def match(self, path: str) -> Target | None:
        if not path.endswith("/infer"):
            return None
        found = _INFER.fullmatch(path)
        return None if found is None else (found["name"], found["version"])

    def decode(self, body: bytes, headers: Mapping[bytes, bytes], model: Served) -> tuple[Arrays, Any]:  # fmt: skip
        length = limits.header(headers, b"inference-header-content-length")
        json_len = None if length is None else limits.decimal(length, "Inference-Header-Content-Length")  # fmt: skip
        return decode_request(body, json_len)

    def encode(self, outputs: Mapping[str, np.ndarray], request: Any, model: Served) -> tuple[bytes, Headers]:  # fmt: skip
        payload, json_len = encode_response(outputs, request, model.name, model.version)
        if json_len is None:
            return payload, JSON_HEADERS
        return payload, [(b"content-type", _BINARY),
                         (b"inference-header-content-length", str(json_len).encode())]  # fmt: skip

    def routes(self, host: Host) -> list[Route]:
        """Health and server metadata (open, for probes), model metadata, config and ready."""

        async def live(request: Request) -> Response:
            return json_response({"live": True})

        async def server_ready(request: Request) -> Response:
            return json_response({"ready": host.ready}, 200 if host.ready else 503)

        async def server_metadata(request: Request) -> Response:
            body = {"name": "tiffin", "version": __version__, "extensions": ["binary_tensor_data"]}
            return json_response(body)

        def served(request: Request) -> Served:
            return host.model(request.path_params["name"], request.path_params.get("version"))

        async def model_metadata(request: Request) -> Response:
            host.authorize(dict(request.scope["headers"]))
            return json_response(served(request).metadata)

        async def model_config(request: Request) -> Response:
            host.authorize(dict(request.scope["headers"]))
            return json_response(served(request).config)

        async def model_ready(request: Request) -> Response:
            model = served(request)  # open, as health is: a 404 for a name it does not serve
            body = {"name": model.name, "version": model.version, "ready": host.ready}
            return json_response(body, 200 if host.ready else 503)

        model, versioned = "/v2/models/{name:str}", "/v2/models/{name:str}/versions/{version:str}"
        return [
            Route("/v2/health/live", live),
            Route("/v2/health/ready", server_ready),
            Route("/v2", server_metadata),
            Route(model, model_metadata),
            Route(versioned, model_metadata),
            Route(model + "/config", model_config),
            Route(versioned + "/config", model_config),
            Route(model + "/ready", model_ready),
            Route(versioned + "/ready", model_ready),
        ]

    def openapi_paths(self, models: Sequence[Predictor], latest: Mapping[str, Predictor]) -> dict[str, Any]:  # fmt: skip
        paths: dict[str, Any] = {
            "/v2/health/live": {"get": operation("liveness")},
            "/v2/health/ready": {"get": operation("readiness (503 while shutting down)", "503")},
            "/v2": {"get": operation("server metadata")},
        }
        for p in models:
            # the unversioned paths answer with the newest version, so they describe it
            bases = [f"/v2/models/{p.name}/versions/{p.version}"]
            if latest[p.name] is p:
                bases.insert(0, f"/v2/models/{p.name}")
            for base in bases:
                paths[base] = {"get": operation(f"metadata of {p.name}", "401", "404", secured=True)}  # fmt: skip
                paths[f"{base}/ready"] = {"get": operation(f"{p.name} ready", "404", "503")}
                config = operation(f"Triton model configuration of {p.name}", "401", "404", secured=True)  # fmt: skip
                paths[f"{base}/config"] = {"get": config}
                paths[f"{base}/infer"] = {"post": _infer_operation(p)}
        return paths


def _item(spec: TensorSpec) -> dict[str, Any]:
    if spec.v2_datatype == "BYTES":
        return {"type": "string"}
    if spec.v2_datatype == "BOOL":
        return {"type": "boolean"}
    return {"type": "number" if spec.v2_datatype.startswith("FP") else "integer"}


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    """One input tensor of the request: data nested or flat, or binary (binary_data_size)."""
    item = _item(spec)
    return {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"const": spec.name},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": len(spec.shape),
                "maxItems": len(spec.shape),
                "description": f"signature shape {list(spec.shape)} (-1: any size)",
            },
            "datatype": {"const": spec.v2_datatype},
            "data": {
                "description": "row-major values, flat or nested",
                "anyOf": [item, {"type": "array", "items": {"anyOf": [item, {"type": "array"}]}}],
            },
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
        },
    }


def request_schema(predictor: Predictor) -> dict[str, Any]:
    """JSON Schema of a V2 infer request for ``predictor``."""
    sig = predictor.signature
    names = [s.name for s in sig.outputs]
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {
                "type": "array",
                "minItems": len(sig.inputs),
                "maxItems": len(sig.inputs),
                "items": {"oneOf": [_tensor(s) for s in sig.inputs]},
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"enum": names} if names else {"type": "string"},
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data": {"type": "boolean"}},
                        },
                    },
                },
            },
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
        },
    }


def _response_schema(predictor: Predictor) -> dict[str, Any]:
    outputs = [
        {
            "type": "object",
            "properties": {
                "name": {"const": s.name},
                "datatype": {"const": s.v2_datatype},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "data": {"type": "array"},
            },
        }
        for s in predictor.signature.outputs
    ]
    return {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"const": predictor.name},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"oneOf": outputs} if outputs else {}},
        },
    }


def _infer_operation(p: Predictor) -> dict[str, Any]:
    return {
        "summary": f"run {p.name} {p.version} ({p.flavor})",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": request_schema(p)},
                "application/octet-stream": {
                    # a Media Type Object has no description (OpenAPI 3.1): it goes on the schema
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "binary tensor extension: a JSON header of "
                        "Inference-Header-Content-Length bytes, then tensor data",
                    },
                },
            },
        },
        "responses": {
            "200": {
                "description": "outputs",
                "content": {"application/json": {"schema": _response_schema(p)}},
            },
            **{c: {**ERROR_ANSWER, "description": d} for c, d in INFER_ERRORS.items()},
        },
    }
