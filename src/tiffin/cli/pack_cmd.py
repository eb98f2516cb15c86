"""``tiffin pack`` and ``tiffin build``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {value!r} is not NAME=PATH", where=option)
        out[key] = path
    return out


def _dynamic_axes(values: tuple[str, ...]) -> dict[str, list[int]]:
    """``NAME=AXIS[,AXIS]`` options as pack's ``dynamic_axes``; a repeated name adds axes."""
    out: dict[str, list[int]] = {}
    for value in values:
        name, sep, text = value.partition("=")
        name = name.strip()
        parts = [p.strip() for p in text.split(",")]
        if not sep or not name or not all(re.fullmatch(r"-?[0-9]+", p) for p in parts):
            raise UsageError(
                f"--dynamic-axes {value!r} is not NAME=AXIS[,AXIS] with whole-number axes",
                where="--dynamic-axes",
                fix="e.g. --dynamic-axes input=1 or --dynamic-axes tokens=1,2",
            )
        axes = out.setdefault(name, [])
        axes.extend(a for a in map(int, parts) if a not in axes)
    return out


def _metadata(value: str | None, description: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if value:
        text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
        try:
            meta = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"--metadata is not JSON or a JSON file: {exc}", where="--metadata"
            ) from None
        if not isinstance(meta, dict):
            raise UsageError("--metadata must be a JSON object", where="--metadata")
    if description:
        meta["description"] = description
    return meta


def _report(pkg: Any, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(pkg.path),
                    "name": pkg.name,
                    "version": pkg.version,
                    "digest": pkg.digest,
                }
            )
        )
    else:
        click.echo(f"packed {pkg.name} {pkg.version} -> {pkg.path}")
        click.echo(f"digest {pkg.digest}")


@click.command()
@click.argument("model")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Package name (lowercase).")
@click.option("--version", "version", required=True, help="Fixed package version, e.g. 1.2.0.")
@click.option(
    "--example",
    type=click.Path(path_type=Path),
    help="Example input: .json, .csv, .parquet or .npy.",
)
@click.option("--method", default="predict", show_default=True, help="Prediction method to call.")
@click.option("--flavor", help="Override flavor detection.")
@click.option(
    "--code",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Extra source file or folder (repeatable).",
)
@click.option(
    "--artifact",
    multiple=True,
    metavar="NAME=PATH",
    help="Artifact for custom models (repeatable).",
)
@click.option(
    "--requirement",
    "-r",
    "requirements",
    multiple=True,
    help="Pinned requirement (repeatable): replaces the inferred list; '+name==1.0' extends it.",
)
@click.option(
    "--metadata", help="JSON object or JSON file: description, authors, license, metrics, tags."
)
@click.option("--description", help="One-line description for the model card.")
@click.option("--python", help="Target Python version for the lock, e.g. 3.11.")
@click.option("--platform", help="Target platform for the lock, e.g. linux/x86_64.")
@click.option(
    "--allow-pickle", is_flag=True, help="Allow pickle as a last resort (refused by default)."
)
@click.option(
    "--trusted-type",
    "trusted_types",
    multiple=True,
    help="Extra audited type to trust (module.Qualname).",
)
@click.option(
    "--dynamic-axes",
    "dynamic_axes",
    multiple=True,
    metavar="NAME=AXIS[,AXIS]",
    help="Axes of an input or output, beyond the batch axis, that take any size (repeatable).",
)
@click.option("--strict", is_flag=True, help="Fail on any lint finding.")
@click.option("--force", is_flag=True, help="Replace an existing package at DEST atomically.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pack(
    model: str, dest: Path, name: str, version: str, example: Path | None, method: str,
    flavor: str | None, code: tuple[Path, ...], artifact: tuple[str, ...],
    requirements: tuple[str, ...], metadata: str | None, description: str | None,
    python: str | None, platform: str | None, allow_pickle: bool, trusted_types: tuple[str, ...],
    dynamic_axes: tuple[str, ...], strict: bool, force: bool, as_json: bool,
) -> None:  # fmt: skip
    """Pack MODEL (a model file or path/file.py:Class) into a package folder DEST."""
    from .._pack import pack as do_pack
    from ..schema import datafiles

    pkg = do_pack(
        model,
        dest,
        name=name,
        version=version,
        example=datafiles.read_example(example) if example else None,
        method=method,
        flavor=flavor,
        code=list(code) or None,
        artifacts=_pairs(artifact, "--artifact") or None,
        requirements=list(requirements) or None,
        metadata=_metadata(metadata, description),
        python=python,
        platform=platform,
        allow_pickle=allow_pickle,
        trusted_types=trusted_types,
        dynamic_axes=_dynamic_axes(dynamic_axes) or None,
        strict=strict,
        force=force,
    )
    _report(pkg, as_json)


@click.command()
@click.argument("config", default=".", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing package atomically.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(config: Path, force: bool, as_json: bool) -> None:
    """Pack from the [tool.tiffin] table of CONFIG (a folder, pyproject.toml or tiffin.toml)."""
    from .._build import build as do_build

    _report(do_build(config, force=force), as_json)
