"""The generated model card (README.md in the package), for people."""

from __future__ import annotations

from typing import Any

from .signature import Signature
from .tensorspec import TensorSpec


def _cell(value: object) -> str:
    """Text for one Markdown table cell: a '|' or a line break would end the cell or row."""
    return " ".join(str(value).split()).replace("\\", "\\\\").replace("|", "\\|")


def _name(value: str) -> str:
    """A name as inline code, with a fence longer than any backtick run inside it."""
    text = _cell(value)
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(specs: tuple[TensorSpec, ...]) -> list[str]:
    rows = ["| name | dtype | shape | nullable |", "|---|---|---|---|"]
    for s in specs:
        shape = "[" + ", ".join("any" if d == -1 else str(d) for d in s.shape) + "]"
        # A float takes NaN for a missing value whether or not the example had one.
        nullable = "yes" if s.nullable else ("NaN" if s.dtype.startswith("float") else "no")
        rows.append(f"| {_name(s.name)} | {s.dtype} | {shape} | {nullable} |")
    return rows


def render(
    name: str,
    version: str,
    flavor: str,
    signature: Signature,
    metadata: dict[str, Any],
    requirements: list[str],
) -> str:
    lines = [f"# {name} {version}", ""]
    description = metadata.get("description")
    lines += [str(description) if description else f"A {flavor} model packaged with tiffin.", ""]
    facts = [("flavor", flavor)]
    for key in ("authors", "license", "tags"):
        if key in metadata:
            value = metadata[key]
            facts.append(
                (key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
            )
    lines += [f"- **{k}**: {v}" for k, v in facts] + [""]
    lines += ["## Inputs", "", f"Kind: {signature.input_kind}.", "", *_table(signature.inputs), ""]
    if signature.outputs:
        lines += ["## Outputs", "", f"Kind: {signature.output_kind}.", ""]
        lines += [*_table(signature.outputs), ""]
    metrics = metadata.get("metrics")
    if isinstance(metrics, dict) and metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in sorted(metrics.items())] + [""]
    if requirements:
        lines += ["## Requirements", "", "```", *requirements, "```", ""]
    lines += [
        "## How to call it",
        "",
        "```python",
        "import tiffin",
        f'model = tiffin.load("{name}-{version}")',
        "model.predict(inputs)",
        "```",
        "",
        "```",
        f"tiffin predict {name}-{version} --input input.json",
        f"tiffin serve {name}-{version}",
        "```",
        "",
    ]
    return "\n".join(lines)
