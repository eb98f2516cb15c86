"""``tiffin verify``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .trust_options import trust_options


@click.command()
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--env", "env", type=click.Choice(["isolated", "current"]), default="isolated", show_default=True,
              help="Build the environment from the lock, or use the current interpreter.")  # fmt: skip
@trust_options
@click.option("--rtol", default=1e-6, show_default=True, help="Relative tolerance for floats.")
@click.option("--atol", default=1e-6, show_default=True, help="Absolute tolerance for floats.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    package: Path, env: str, keys: tuple[Path, ...], require_signed: bool | None,
    rtol: float, atol: float, as_json: bool,
) -> None:  # fmt: skip
    """Prove PACKAGE runs: integrity, a clean environment from its lock, replayed examples.

    Exits 0 when verified, 10 when a step failed (the report names it).
    """
    from .._verify import verify as run

    report = run(
        package, env=env, trusted_keys=list(keys) or None, require_signed=require_signed,
        rtol=rtol, atol=atol,
    )  # fmt: skip
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
    if not report.ok:
        sys.exit(10)
