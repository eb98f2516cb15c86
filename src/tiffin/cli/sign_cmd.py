"""``tiffin keygen`` and ``tiffin sign``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("private_key", type=click.Path(path_type=Path))
@click.option(
    "--public",
    "public_key",
    type=click.Path(path_type=Path),
    help="Public key file (default: PRIVATE_KEY with .pub).",
)
@click.option(
    "--algorithm",
    type=click.Choice(["ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"]),
    default="ed25519",
    show_default=True,
    help="Key kind; ECDSA keys also verify with OpenSSF `model_signing verify key`.",
)
def keygen(private_key: Path, public_key: Path | None, algorithm: str) -> None:
    """Make a key pair for signing packages."""
    from ..security.signing import keygen as make

    private, public = make(private_key, public_key, algorithm=algorithm)
    click.echo(
        f"private key {private} (keep it secret)\npublic key  {public} (give it to verifiers)"
    )


@click.command()
@click.argument("package", type=click.Path(path_type=Path))
@click.option(
    "--key",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Private key (PEM).",
)
def sign(package: Path, key: Path) -> None:
    """Sign PACKAGE (every file's sha256); writes tiffin.sig beside its manifest."""
    from ..security.signing import sign_package

    out = sign_package(package, key)
    click.echo(f"signed {package} -> {out}")
