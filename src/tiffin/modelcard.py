"""The generated model card (README.md in the package), for people."""

from __future__ import annotations

from typing import Any

from .signature import Signature, TensorSpec


def _table(specs: tuple[TensorSpec, ...]) -> list[str]:
    rows = ["| name | dtype | shape | nullable |", "|---|---|---|---|"]
    for s in specs:
        shape = "[" + ", ".join("any" if d == -1 else str(d) for d in s.shape) + "]"
        rows.append(f"| `{s.name}` | {s.dtype} | {shape} | {'yes' if s.nullable else 'no'} |")
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
        lines += [f"| {k} | {v} |" for k, v in sorted(metrics.items())] + [""]
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
