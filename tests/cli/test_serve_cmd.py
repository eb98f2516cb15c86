"""``tiffin serve``: what is refused before any server starts. Serving itself is tested in
tests/serve."""

from __future__ import annotations

import pytest

from tests.cli._run import tiffin
from tiffin.cli.serve_cmd import _workers
from tiffin.errors import UsageError


def test_nothing_to_serve() -> None:
    proc = tiffin("serve")
    assert proc.returncode == 2 and "give package folders or --repository DIR" in proc.stderr


@pytest.mark.parametrize("value", ["0", "-1", "two", "²", "1.5", ""])
def test_bad_worker_counts(value: str) -> None:
    with pytest.raises(UsageError, match="is not a positive number or 'auto'"):
        _workers(value)


def test_worker_counts() -> None:
    assert _workers("3") == 3
    assert _workers("auto") >= 1


def test_option_ranges_are_checked(tmp_path: object) -> None:
    for args in (["--port", "70000"], ["--timeout", "0"], ["--queue-size", "0"]):
        proc = tiffin("serve", "pkg", *args)
        assert proc.returncode == 2 and "Invalid value" in proc.stderr, args
