"""Bearer tokens: the scheme case-insensitive, the token exact, every other form a 401."""

from __future__ import annotations

import pytest

from tiffin.serve import auth
from tiffin.serve.errors import HTTPError


def test_bearer_token() -> None:
    auth.check_token({}, None)  # no token configured: open
    auth.check_token({b"authorization": b"Bearer s3cret"}, "s3cret")
    # the scheme is case-insensitive (RFC 9110 11.1), the token is not
    auth.check_token({b"authorization": b"bearer s3cret"}, "s3cret")
    auth.check_token({b"authorization": b"BEARER s3cret"}, "s3cret")
    bad = (None, b"Bearer wrong", b"Bearer S3CRET", b"Basic s3cret", b"s3cret", b"Bearer s3cret ",
           b"Bearers3cret", b"Bearer  s3cret")  # fmt: skip
    for given in bad:
        headers = {} if given is None else {b"authorization": given}
        with pytest.raises(HTTPError) as err:
            auth.check_token(headers, "s3cret")
        assert err.value.status == 401 and err.value.headers == {"WWW-Authenticate": "Bearer"}
