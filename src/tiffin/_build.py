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
    [tool.tiffin.dynamic_axes]       # axes beyond the batch axis that take any size
    input = [1]

Every path is relative to the folder of the config file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from .errors import TiffinError, UsageError
from .package.manifest import validate_name, validate_version

# Each key and the TOML type it takes: "str", "bool", "table", "strings" (an array of
# strings), "paths" (a table of strings) or "axes" (a table of arrays of integers). A
# wrong type is named, never coerced: a TOML ``version = 1.10`` is the float 1.1, and
# ``code = "src"`` is not a list.
KEYS: dict[str, str] = {
    "name": "str", "version": "str", "source": "str", "factory": "str", "example": "str",
    "out": "str", "method": "str", "flavor": "str", "code": "strings", "artifacts": "paths",
    "requirements": "strings", "metadata": "table", "allow_pickle": "bool",
    "trusted_types": "strings", "batching": "table", "python": "str", "platform": "str",
    "strict": "bool", "dynamic_axes": "axes",
}  # fmt: skip
_TYPE_WORDS = {
    "str": "a string",
    "bool": "true or false",
    "table": "a table",
    "strings": "an array of strings",
    "paths": "a table of strings",
    "axes": "a table of arrays of integers",
}


def _is_int_list(value: Any) -> bool:
    # TOML true is a Python bool, which is an int: an axis must be a real integer.
    return isinstance(value, list) and all(type(v) is int for v in value)


def _check_types(table: dict[str, Any], where: str) -> None:
    for key, kind in KEYS.items():
        if key not in table:
            continue
        value = table[key]
        ok = {
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "table": isinstance(value, dict),
            "strings": isinstance(value, list) and all(isinstance(v, str) for v in value),
            "paths": isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
            "axes": isinstance(value, dict) and all(_is_int_list(v) for v in value.values()),
        }[kind]
        if kind == "axes" and isinstance(value, dict):
            bad = next((k for k, v in value.items() if not _is_int_list(v)), None)
            if bad is not None:
                axes = value[bad]
                odd = [a for a in axes if type(a) is not int] if isinstance(axes, list) else None
                found = (
                    f"it holds {type(odd[0]).__name__} {odd[0]!r}"
                    if odd
                    else f"it is {type(axes).__name__} {axes!r}"
                )
                raise UsageError(
                    f"{key}.{bad} must be an array of integers (axes); {found}",
                    where=where,
                    fix=f"e.g. {bad} = [1] under [tool.tiffin.{key}]",
                )
        if not ok:
            hint = {
                "str": f'e.g. {key} = "{value}"',
                "axes": f"e.g. [tool.tiffin.{key}] with input = [1]",
            }.get(kind, f"give {_TYPE_WORDS[kind]}")
            raise UsageError(
                f"{key!r} must be {_TYPE_WORDS[kind]}, not {type(value).__name__} {value!r}",
                where=where,
                fix=hint,
            )


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
    if not start.exists():
        raise UsageError(
            f"{start} does not exist", fix="give a folder, pyproject.toml or tiffin.toml"
        )
    candidates = [start] if start.is_file() else [start / "tiffin.toml", start / "pyproject.toml"]
    for path in candidates:
        if not path.is_file():
            continue
        data = _toml(path)
        if path.name == "pyproject.toml" or "tool" in data:
            tool = data.get("tool", {})
            table = tool.get("tiffin") if isinstance(tool, dict) else None
            if table is None:
                continue
            if not isinstance(table, dict):
                raise UsageError(
                    "tool.tiffin must be a table", where=str(path), fix="write it as [tool.tiffin]"
                )
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
        fn = getattr(module, func, None)
        if not callable(fn):
            raise UsageError(f"{func} is not a function in {path}", where="factory")
        return fn()
    except TiffinError:
        raise
    except Exception as exc:
        # The user's own code failed: say which factory and what it raised, not a traceback.
        raise TiffinError(
            f"the factory {spec} raised {type(exc).__name__}: {exc}",
            where=str(path),
            fix=f"run {path.name} yourself to see the full traceback",
        ) from exc
    finally:
        sys.path.remove(str(path.parent))


def build(config: str | os.PathLike[str] = ".", *, force: bool = False) -> Any:
    """Pack the model that a ``[tool.tiffin]`` table describes; returns the Package."""
    from ._pack import pack
    from .schema import datafiles

    path, table = find_config(Path(config))
    where = f"{path}: [tool.tiffin]" if path.name == "pyproject.toml" else str(path)
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise UsageError(
            f"unknown key(s) {', '.join(unknown)}", where=where, fix=f"known keys: {sorted(KEYS)}"
        )
    for key in ("name", "version"):
        if key not in table:
            raise UsageError(f"{key!r} is required", where=where)
    _check_types(table, where)
    validate_name(table["name"], UsageError)
    validate_version(table["version"], UsageError)
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
    # pack makes the missing parents of ``out`` and removes them again when it fails.
    out = base / str(table.get("out", f"dist/{name}-{version}"))
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
        dynamic_axes=table.get("dynamic_axes") or None,
        batching=table.get("batching"),
        python=table.get("python"),
        platform=table.get("platform"),
        strict=bool(table.get("strict", False)),
        force=force,
    )
