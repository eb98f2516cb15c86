"""Model-as-code: pack from a ``[tool.tiffin]`` table in pyproject.toml or a tiffin.toml.

Example ``pyproject.toml``::

    [tool.tiffin]
    name = "iris"
    version = "1.0.0"
    source = "model.skops"            # a model file, or "path/file.py:ClassName"
    # factory = "train.py:make_model" # or a function returning the model object
    example = "data/example.csv"
    out = "dist/iris-1.0.0"           # default: dist/{name}-{version}
    code = ["src/features.py"]
    requirements = ["scikit-learn==1.5.2"]
    [tool.tiffin.artifacts]
    vocab = "assets/vocab.txt"
    [tool.tiffin.metadata]
    description = "Iris classifier"

Every path is relative to the folder of the config file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError

KEYS = {
    "name", "version", "source", "factory", "example", "out", "method", "flavor", "code",
    "artifacts", "requirements", "metadata", "allow_pickle", "trusted_types", "batching",
    "python", "platform", "strict",
}  # fmt: skip


def _toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}", where=str(path)) from None


def find_config(start: Path) -> tuple[Path, dict[str, Any]]:
    """The ``[tool.tiffin]`` table (pyproject.toml) or the whole tiffin.toml in ``start``."""
    candidates = [start] if start.is_file() else [start / "tiffin.toml", start / "pyproject.toml"]
    for path in candidates:
        if not path.is_file():
            continue
        data = _toml(path)
        if path.name == "pyproject.toml" or "tool" in data:
            table = data.get("tool", {}).get("tiffin")
            if table is None:
                continue
            return path, table
        return path, data
    raise UsageError(
        f"no [tool.tiffin] table in pyproject.toml and no tiffin.toml in {start}",
        fix="add a [tool.tiffin] table naming at least name, version and source",
    )


def _call_factory(spec: str, base: Path) -> Any:
    file, _, func = spec.rpartition(":")
    path = (base / file).resolve()
    if not path.is_file() or not func.isidentifier():
        raise UsageError(f"factory {spec!r} is not 'file.py:function'", where="factory")
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.parent))
    try:
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    fn = getattr(module, func, None)
    if not callable(fn):
        raise UsageError(f"{func} is not a function in {path}", where="factory")
    return fn()


def build(config: str | os.PathLike[str] = ".", *, force: bool = False) -> Any:
    """Pack the model that a ``[tool.tiffin]`` table describes; returns the Package."""
    from . import datafiles
    from .pack import pack

    path, table = find_config(Path(config))
    where = f"{path}: [tool.tiffin]" if path.name == "pyproject.toml" else str(path)
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise UsageError(
            f"unknown key(s) {', '.join(unknown)}", where=where, fix=f"known keys: {sorted(KEYS)}"
        )
    for key in ("name", "version"):
        if key not in table:
            raise UsageError(f"{key!r} is required", where=where)
    if ("source" in table) == ("factory" in table):
        raise UsageError("give exactly one of 'source' or 'factory'", where=where)
    base = path.parent
    if "factory" in table:
        model: Any = _call_factory(str(table["factory"]), base)
    else:
        source = str(table["source"])
        model = str(base / source) if ":" in source else base / source
    name, version = str(table["name"]), str(table["version"])
    example = datafiles.read_example(base / table["example"]) if "example" in table else None
    out = base / str(table.get("out", f"dist/{name}-{version}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    return pack(
        model,
        out,
        name=name,
        version=version,
        example=example,
        method=str(table.get("method", "predict")),
        flavor=table.get("flavor"),
        code=[base / c for c in table.get("code", [])],
        artifacts={k: base / v for k, v in table.get("artifacts", {}).items()},
        requirements=table.get("requirements"),
        metadata=table.get("metadata"),
        allow_pickle=bool(table.get("allow_pickle", False)),
        trusted_types=tuple(table.get("trusted_types", ())),
        batching=table.get("batching"),
        python=table.get("python"),
        platform=table.get("platform"),
        strict=bool(table.get("strict", False)),
        force=force,
    )
