"""An OpenAPI 3.1 document for the served models, generated from their signatures.

Each model version gets its metadata, ready and infer paths, with a request schema
whose inputs are the signature's (name, V2 datatype, rank, JSON item type) and a
response schema naming its outputs; ``/invocations`` appears when one model is served.
Served at ``GET /v2/openapi.json`` (and ``/openapi.json``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._version import __version__
from ..load import Predictor
from ..tensorspec import TensorSpec
from .repository import version_key

_ERROR = {
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
_INFER_ERRORS = {
    "400": "malformed request, or inputs that break the signature",
    "401": "missing or wrong bearer token",
    "404": "no such model or version",
    "408": "the body arrived slower than --min-body-rate",
    "413": "body over the limit",
    "415": "unsupported Content-Type or Content-Encoding",
    "503": "overloaded, over the buffered-bytes budget, or shutting down (see Retry-After)",
    "504": "no answer within the timeout",
}


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


def _simple(summary: str, *codes: str, secured: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "ok"}}
    for code in codes:
        responses[code] = {**_ERROR, "description": _INFER_ERRORS.get(code, "error")}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if not secured:
        op["security"] = []
    return op


def openapi_document(
    models: Iterable[Predictor], *, auth: bool = False, metrics_public: bool = False
) -> dict[str, Any]:
    """The whole document; ``auth`` adds the bearer scheme to the protected paths.

    ``/metrics`` is one of them unless ``metrics_public`` (``--metrics-public``).
    """
    models = list(models)
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": _simple("liveness")},
        "/v2/health/ready": {"get": _simple("readiness (503 while shutting down)", "503")},
        "/v2": {"get": _simple("server metadata")},
        "/metrics": {"get": _simple("Prometheus metrics", "401", secured=not metrics_public)},
    }
    latest: dict[str, Predictor] = {}
    for p in models:
        best = latest.get(p.name)
        if best is None or version_key(p.version) > version_key(best.version):
            latest[p.name] = p
    for p in models:
        # the unversioned paths answer with the newest version, so they describe it
        bases = [f"/v2/models/{p.name}/versions/{p.version}"]
        if latest[p.name] is p:
            bases.insert(0, f"/v2/models/{p.name}")
        for base in bases:
            paths[base] = {"get": _simple(f"metadata of {p.name}", "401", "404", secured=True)}
            paths[f"{base}/ready"] = {"get": _simple(f"{p.name} ready", "404", "503")}
            config = _simple(f"Triton model configuration of {p.name}", "401", "404", secured=True)
            paths[f"{base}/config"] = {"get": config}
            paths[f"{base}/infer"] = {
                "post": {
                    "summary": f"run {p.name} {p.version} ({p.flavor})",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": request_schema(p)},
                            "application/octet-stream": {
                                # a Media Type Object has no description (OpenAPI 3.1):
                                # it goes on the schema
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
                        **{c: {**_ERROR, "description": d} for c, d in _INFER_ERRORS.items()},
                    },
                }
            }
    if len({p.name for p in models}) == 1:
        paths["/invocations"] = {
            "post": {
                **_simple("MLflow scoring protocol", *_INFER_ERRORS, secured=True),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "minProperties": 1,
                                "maxProperties": 1,
                                "properties": {
                                    "dataframe_split": {"type": "object"},
                                    "dataframe_records": {"type": "array"},
                                    "instances": {},
                                    "inputs": {},
                                },
                            }
                        }
                    },
                },
            }
        }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "tiffin model server", "version": __version__},
        "paths": paths,
    }
    if auth:
        doc["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        doc["security"] = [{"bearer": []}]
    return doc
