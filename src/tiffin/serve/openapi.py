"""An OpenAPI 3.1 document for the served models, generated from their signatures."""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ..signature import TensorSpec


def _tensor_schema(spec: TensorSpec) -> dict[str, Any]:
    item = {"type": "string"} if spec.v2_datatype == "BYTES" else (
        {"type": "boolean"} if spec.dtype == "bool" else {"type": "number" if spec.dtype.startswith("float") else "integer"}
    )  # fmt: skip
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"const": spec.name},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": len(spec.shape),
                "maxItems": len(spec.shape),
            },
            "datatype": {"const": spec.v2_datatype},
            "data": {"type": "array", "items": {"anyOf": [item, {"type": "array"}]}},
            "parameters": {"type": "object"},
        },
    }


def openapi_document(repository: Any) -> dict[str, Any]:
    error = {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    }
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": {"responses": {"200": {"description": "live"}}}},
        "/v2/health/ready": {
            "get": {
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}
            }
        },
        "/v2": {"get": {"responses": {"200": {"description": "server metadata"}}}},
    }
    for predictor in repository:
        sig = predictor.signature
        request = {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "inputs": {
                    "type": "array",
                    "items": {"oneOf": [_tensor_schema(s) for s in sig.inputs]},
                },
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"enum": [s.name for s in sig.outputs] or ["output"]}
                        },
                    },
                },
                "parameters": {"type": "object"},
            },
        }
        for base in (
            f"/v2/models/{predictor.name}",
            f"/v2/models/{predictor.name}/versions/{predictor.version}",
        ):
            paths[base] = {
                "get": {
                    "summary": f"metadata of {predictor.name}",
                    "responses": {
                        "200": {"description": "model metadata"},
                        "404": {"description": "unknown", "content": error},
                    },
                }
            }
            paths[base + "/infer"] = {
                "post": {
                    "summary": f"run {predictor.name} {predictor.version}",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": request}},
                    },
                    "responses": {
                        "200": {"description": "outputs"},
                        "400": {"description": "bad request", "content": error},
                        "404": {"description": "unknown model", "content": error},
                        "413": {"description": "body too large", "content": error},
                        "415": {"description": "unsupported content type", "content": error},
                        "503": {"description": "overloaded", "content": error},
                        "504": {"description": "timed out", "content": error},
                    },
                }
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "tiffin model server", "version": __version__},
        "paths": paths,
    }
