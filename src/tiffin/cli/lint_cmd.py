"""``tiffin lint``."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("package", type=click.Path(path_type=Path, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON.")
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too.")
def lint(package: Path, as_json: bool, strict: bool) -> None:
    """Check PACKAGE for the packaging anti-patterns."""
    from .._lint import as_json as to_json
    from .._lint import has_errors, summarize
    from .._lint import lint as run

    findings = run(package)
    if as_json:
        click.echo(to_json(findings))
    else:
        for f in findings:
            click.echo(f.render())
        s = summarize(findings)
        click.echo(
            f"{s['errors']} error(s), {s['warnings']} warning(s)" if findings else "no findings"
        )
    if has_errors(findings) or (strict and findings):
        sys.exit(10)
