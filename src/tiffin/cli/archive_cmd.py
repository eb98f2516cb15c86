"""``tiffin archive`` and ``tiffin unpack``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("package", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Archive file to write (e.g. model.tiffin).",
)
@click.option("--no-compress", is_flag=True, help="Plain tar instead of tar + zstd.")
@click.option("--force", is_flag=True, help="Replace an existing archive file.")
def archive(package: Path, output: Path, no_compress: bool, force: bool) -> None:
    """Write PACKAGE as one reproducible archive file."""
    from ..package.archive import archive as write

    out = write(package, output, compression=None if no_compress else "zstd", force=force)
    click.echo(f"wrote {out} ({out.stat().st_size:,} bytes)")


@click.command()
@click.argument("archive_file", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--max-bytes", type=int, help="Stop reading past this many decompressed bytes.")
def unpack(archive_file: Path, dest: Path, max_bytes: int | None) -> None:
    """Unpack ARCHIVE_FILE into DEST (a new or empty folder), verified."""
    from ..package.archive import DEFAULT_MAX_BYTES
    from ..package.archive import unpack as read

    out = read(archive_file, dest, max_bytes=max_bytes or DEFAULT_MAX_BYTES)
    click.echo(f"unpacked {archive_file} -> {out}")
