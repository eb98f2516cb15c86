"""``tiffin predict``: run a package on an input file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .trust_options import trust_options


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    )  # fmt: skip


@click.command()
@click.argument("package", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "-i",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Input file: .json, .csv, .parquet or .npy.",
)
@click.option(
    "--output",
    "-o",
    "output_path",
    type=click.Path(path_type=Path),
    help="Output file (.json, .csv, .parquet, .npy); stdout JSON if omitted.",
)
@click.option("--format", "fmt", help="Input format when the extension does not tell.")
@click.option("--batch-size", default=10_000, show_default=True, help="Rows per predict call.")
@click.option(
    "--isolated", is_flag=True, help="Run in the package's own environment (built from its lock)."
)
@click.option(
    "--allow-pickle", is_flag=True, help="Allow a pickle-flavor package (allow-listed types only)."
)
@click.option("--no-progress", is_flag=True, help="Never show a progress bar.")
@trust_options
def predict(
    package: Path, input_path: Path, output_path: Path | None, fmt: str | None,
    batch_size: int, isolated: bool, allow_pickle: bool, no_progress: bool,
    keys: tuple[Path, ...], require_signed: bool | None,
) -> None:  # fmt: skip
    """Run PACKAGE on the rows of an input file."""
    from ..errors import UsageError
    from ..schema import datafiles

    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1", where="--batch-size")
    if isolated:
        from ..isolated.predict import run_isolated

        run_isolated(
            package, input_path, output_path, fmt=fmt, trusted_keys=list(keys) or None,
            require_signed=require_signed,
        )  # fmt: skip
        return
    from .._load import load

    if output_path is not None:
        datafiles.check_output_path(output_path)  # before loading and predicting, not after
    model = load(
        package, allow_pickle=allow_pickle, trusted_keys=list(keys) or None,
        require_signed=require_signed,
    )  # fmt: skip
    inputs = datafiles.read_input(input_path, model.signature, fmt)
    total = datafiles.rows(inputs) if model.signature.batchable else 0
    if model.signature.batchable and total == 0:
        model.signature.validate(inputs)  # the columns must still be the right ones
        output = datafiles.empty_output(model.signature)
    elif total <= batch_size:
        output = model.predict(inputs)
    else:
        show = not no_progress and sys.stderr.isatty()
        progress = _progress(total, show)
        parts = []
        if progress is None:
            parts = [model.predict(chunk) for chunk in datafiles.batches(inputs, batch_size)]
        else:
            with progress:
                task = progress.add_task("predicting", total=total)
                for chunk in datafiles.batches(inputs, batch_size):
                    parts.append(model.predict(chunk))
                    progress.advance(task, datafiles.rows(chunk))
        output = datafiles.concat(parts)
    body = datafiles.write_output(output, output_path)
    if body is not None:
        sys.stdout.buffer.write(body)
