"""``tiffin inspect``: what is inside a package, verified, with nothing deserialized."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join("*" if d == -1 else str(d) for d in shape) + "]"


@click.command()
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print manifest and signature as JSON.")
@click.option("--why", is_flag=True, help="Show which imported modules needed each requirement.")
@click.option("--files", "show_files", is_flag=True, help="List every file with its sha256.")
def inspect(package: Path, as_json: bool, why: bool, show_files: bool) -> None:
    """Show the metadata, signature, files and dependencies of PACKAGE."""
    from .._load import read_signature
    from ..package.integrity import verify_tree

    manifest = verify_tree(package)
    signature = read_signature(package)
    if as_json:
        click.echo(
            json.dumps({"manifest": manifest.to_dict(), "signature": signature.to_dict()}, indent=2)
        )
        return
    env: dict[str, Any] = manifest.environment
    lines = [
        f"{manifest.name} {manifest.version}",
        f"  digest    {manifest.digest}",
        f"  flavor    {manifest.flavor}",
        f"  python    {env.get('python', '?')} on {env.get('platform', '?')}",
    ]
    if env.get("accelerator"):
        lines.append(f"  accel     {env['accelerator']}")
    desc = manifest.metadata.get("description")
    if desc:
        lines.append(f"  about     {desc}")
    lines.append(
        f"  files     {len(manifest.files)} ({sum(f.size for f in manifest.files):,} bytes)"
    )
    width = max([24, *(len(s.name) for s in (*signature.inputs, *signature.outputs))])
    lines.append(f"inputs ({signature.input_kind}):")
    lines += [
        f"  {s.name:<{width}} {s.dtype:<10} {_shape(list(s.shape))}{'  nullable' if s.nullable else ''}"
        for s in signature.inputs
    ]
    if signature.outputs:
        lines.append(f"outputs ({signature.output_kind}):")
        lines += [
            f"  {s.name:<{width}} {s.dtype:<10} {_shape(list(s.shape))}" for s in signature.outputs
        ]
    reqs = env.get("requirements", [])
    lines.append(f"requirements ({len(reqs)}):")
    reasons = env.get("why", {}) if isinstance(env.get("why"), dict) else {}
    for req in reqs:
        line = f"  {req}"
        if why:
            key = str(req).split("==")[0].split("[")[0].strip().lower()
            mods = reasons.get(key) or reasons.get(str(req)) or []
            line += f"  <- {', '.join(map(str, mods))}" if mods else "  <- (declared)"
        lines.append(line)
    if why:
        lines += _env_notes(env)
    if show_files:
        lines.append("files:")
        lines += [
            f"  {f.sha256[:12]}  {f.size:>10,}  {f.layer:<11} {f.path}" for f in manifest.files
        ]
    click.echo("\n".join(lines))


def _env_notes(env: dict[str, Any]) -> list[str]:
    """What --why adds below the requirements: your changes to the inferred list, the lock."""
    notes = []
    diff = env.get("difference")
    diff = diff if isinstance(diff, dict) else {}
    for key, label in (("added", "added by you"), ("dropped", "dropped by you"), ("changed", "changed by you")):  # fmt: skip
        items = diff.get(key) or []
        if items:
            notes.append(f"  {label}: {', '.join(map(str, items))}")
    for mod in env.get("unresolved") or []:
        notes.append(f"  unresolved import: {mod} (no installed distribution provides it)")
    lock = env.get("lock")
    lock = lock if isinstance(lock, dict) else {}
    if lock.get("status") == "skipped":
        notes.append("lock: none (packed with TIFFIN_ENV_CAPTURE=off; `tiffin env lock PKG`)")
    elif lock:
        hashed = "hashed" if lock.get("hashed") else "UNHASHED (`tiffin env lock PKG`)"
        target = f"Python {env.get('python', '?')} on {env.get('platform', '?')}"
        notes.append(f"lock: {hashed}, by {lock.get('tool', '?')}, for {target}")
        omitted = lock.get("omitted") or []
        if omitted:
            notes.append(f"  left out of the lock: {', '.join(map(str, omitted))}")
    return notes
