"""The errors a request can be answered with, as ``{"error": message}``.

``HTTPError`` carries its own status and headers and may be raised anywhere in the server;
``BadRequest`` is a wire protocol's word for a body it cannot take (a 400).
"""

from __future__ import annotations

from collections.abc import Mapping


class HTTPError(Exception):
    """An answer other than 200: the status, the message for ``{"error": ...}``, headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(Exception):
    """A malformed request (its body, or inputs that no model could take): a 400 with this message."""
