"""``HTTPError``: an answer other than 200, raised anywhere in the server and answered as
``{"error": message}`` with its status and headers."""

from __future__ import annotations

from collections.abc import Mapping


class HTTPError(Exception):
    """An answer other than 200: the status, the message for ``{"error": ...}``, headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
