"""The ``tiffin`` command line: parses, calls the library, renders. No logic of its own.

Each verb lives in its own module and is imported only when it runs, so ``tiffin
--help`` stays fast. Results go to stdout, progress and diagnostics to stderr.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

try:
    import click
except ImportError:  # pragma: no cover - the cli extra is missing
    sys.stderr.write("error: the tiffin command needs click: pip install 'tiffin[cli]'\n")
    raise SystemExit(2) from None

from ..errors import EXIT_CODES, TiffinError

# verb -> "module:attribute"; modules are imported lazily.
COMMANDS: dict[str, str] = {
    "pack": "tiffin.cli.pack_cmd:pack",
    "build": "tiffin.cli.pack_cmd:build",
    "inspect": "tiffin.cli.inspect_cmd:inspect",
    "predict": "tiffin.cli.predict_cmd:predict",
    "verify": "tiffin.cli.verify_cmd:verify",
    "lint": "tiffin.cli.lint_cmd:lint",
    "env": "tiffin.cli.env_cmd:env",
    "serve": "tiffin.cli.serve_cmd:serve",
    "keygen": "tiffin.cli.sign_cmd:keygen",
    "sign": "tiffin.cli.sign_cmd:sign",
    "archive": "tiffin.cli.archive_cmd:archive",
    "unpack": "tiffin.cli.archive_cmd:unpack",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._available(name))

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not self._available(name):
            return None
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


EXIT_CODE_HELP = "\n".join(f"  {code:>3}  {name}" for name, code in EXIT_CODES.items())


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="\b\nExit codes:\n" + EXIT_CODE_HELP,
)
@click.version_option(package_name="tiffin")
def cli() -> None:
    """tiffin: sealed, versioned, content-addressed model packages."""


def fail(exc: TiffinError) -> None:
    """Print a TiffinError the way click prints its own errors, then exit with its code."""
    color = None if not os.environ.get("NO_COLOR") else False
    click.secho(f"error: {exc.message}", fg="red", err=True, color=color)
    if exc.where:
        click.echo(f"  where: {exc.where}", err=True)
    if exc.fix:
        click.echo(f"  fix: {exc.fix}", err=True)
    sys.exit(exc.exit_code)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``tiffin`` console script."""
    try:
        return cli.main(args=argv, prog_name="tiffin", standalone_mode=True)
    except TiffinError as exc:
        fail(exc)
