"""``tiffin env``: build or locate a package's environment."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.group()
def env() -> None:
    """The environment layer: build a package's environment from its lock."""


@env.command("build")
@click.argument("package", type=click.Path(path_type=Path))
def build(package: Path) -> None:
    """Build (or find in the cache) the environment of PACKAGE; print its Python."""
    from ..env.build import ensure_environment

    started = time.perf_counter()
    python = ensure_environment(package)
    click.echo(str(python))
    click.echo(f"ready in {time.perf_counter() - started:.2f} s", err=True)


@env.command("path")
def path() -> None:
    """Print the environment cache folder."""
    from ..env.build import cache_root

    click.echo(str(cache_root()))
