"""``tiffin env``: build, lock again, or locate a package's environment."""

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
    from ..env.cache import ensure_environment

    started = time.perf_counter()
    python = ensure_environment(package)
    click.echo(str(python))
    click.echo(f"ready in {time.perf_counter() - started:.2f} s", err=True)


@env.command("lock")
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--python", help="Target Python version, e.g. 3.11 (default: the package's).")
@click.option("--platform", help="Target platform, e.g. linux/aarch64 (default: the package's).")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write the result here (default: in place).",
)
def lock(package: Path, python: str | None, platform: str | None, output: Path | None) -> None:
    """Lock PACKAGE's requirements again (hashes after an offline pack, or a new target)."""
    from ..env.lock import relock

    manifest = relock(package, dest=output, python=python, platform=platform)
    info = manifest.environment["lock"]
    click.echo(
        f"{output or package}: {info['status']} for Python {info['python']} on "
        f"{info['platform']} ({'hashed' if info['hashed'] else 'UNHASHED'}); "
        f"digest {manifest.digest}"
    )


@env.command("path")
def path() -> None:
    """Print the environment cache folder."""
    from ..env.cache import cache_root

    click.echo(str(cache_root()))
