"""The wire protocols the server speaks, each behind ``base.WireProtocol``.

A new protocol (an OpenAI-compatible one, say) is one module here holding a
``WireProtocol`` subclass, its test file, and one line in ``PROTOCOLS``; the server, its
routing and the OpenAPI document take every protocol from this list.
"""

from __future__ import annotations

from .base import WireProtocol
from .mlflow import MLflow
from .v2 import V2

PROTOCOLS: tuple[WireProtocol, ...] = (V2(), MLflow())

__all__ = ["PROTOCOLS", "WireProtocol"]
