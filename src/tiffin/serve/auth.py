"""Bearer-token authentication: ``Authorization: Bearer <token>``, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from .errors import HTTPError


def check_token(headers: Mapping[bytes, bytes], token: str | None) -> None:
    """401 unless ``Authorization: Bearer <token>`` matches (when a token is set)."""
    if not token:
        return
    given = headers.get(b"authorization", b"")
    scheme, _, credentials = given.partition(b" ")
    # The scheme is case-insensitive (RFC 9110 11.1); the token is compared in constant time.
    if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials, token.encode()):
        raise HTTPError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
