"""``--key`` and ``--require-signed``: the signature policy, the same on every command that loads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def trust_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``keys`` (tuple of paths) and ``require_signed`` (True or None) to a command.

    None leaves the decision to ``TIFFIN_REQUIRE_SIGNED``; giving a key always checks.
    """
    fn = click.option(
        "--require-signed",
        is_flag=True,
        default=None,
        help="Refuse an unsigned package (or set TIFFIN_REQUIRE_SIGNED=1).",
    )(fn)
    return click.option(
        "--key",
        "keys",
        multiple=True,
        type=click.Path(path_type=Path),
        help="Trusted public key (repeatable): the package must be signed by one.",
    )(fn)
