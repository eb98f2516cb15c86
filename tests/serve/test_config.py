"""``ServeConfig``: the options are checked together, with a fix that names the flags."""

from __future__ import annotations

import pytest

from tiffin.errors import UsageError
from tiffin.serve.budget import DEFAULT_BUDGET
from tiffin.serve.config import ServeConfig


def test_the_defaults_are_consistent() -> None:
    config = ServeConfig()
    assert config.max_buffered_bytes == DEFAULT_BUDGET >= config.max_body
    assert config.token is None and not config.metrics_public


def test_a_budget_equal_to_the_body_limit_is_allowed() -> None:
    assert ServeConfig(max_body=1000, max_buffered_bytes=1000).max_buffered_bytes == 1000


def test_a_budget_below_the_body_limit_is_refused_with_both_flags_named() -> None:
    with pytest.raises(UsageError) as info:
        ServeConfig(max_body=2000, max_buffered_bytes=1999)
    error = info.value
    assert "--max-buffered-bytes 1999" in error.message and "--max-body 2000" in error.message
    assert error.fix is not None and "at least 2000" in error.fix
