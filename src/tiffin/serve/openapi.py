"""An OpenAPI 3.1 document for the served models, generated from their signatures.

The frame (info, the bearer scheme, ``/metrics``) is written here; each wire protocol adds
its own paths (``WireProtocol.openapi_paths``): V2 gives each model version its metadata,
ready, config and infer paths, with request and response schemas from the signature;
MLflow gives ``/invocations`` when one model is served. Served at ``GET /v2/openapi.json``
(and ``/openapi.json``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._load import Predictor
from .._version import __version__
from .protocols.base import WireProtocol, operation
from .repository import version_key


def openapi_document(
    models: Iterable[Predictor],
    protocols: Iterable[WireProtocol],
    *,
    auth: bool = False,
    metrics_public: bool = False,
) -> dict[str, Any]:
    """The whole document; ``auth`` adds the bearer scheme to the protected paths.

    ``/metrics`` is one of them unless ``metrics_public`` (``--metrics-public``).
    """
    models = list(models)
    latest: dict[str, Predictor] = {}
    for p in models:
        best = latest.get(p.name)
        if best is None or version_key(p.version) > version_key(best.version):
            latest[p.name] = p
    paths: dict[str, Any] = {
        "/metrics": {"get": operation("Prometheus metrics", "401", secured=not metrics_public)},
    }
    for protocol in protocols:
        paths.update(protocol.openapi_paths(models, latest))
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "tiffin model server", "version": __version__},
        "paths": paths,
    }
    if auth:
        doc["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        doc["security"] = [{"bearer": []}]
    return doc
