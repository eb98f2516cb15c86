"""Custom models: any class with ``load(self, context)`` and ``predict(self, inputs)``.

The class's defining module (and any ``code=`` files) is copied into ``code/``; loading
imports it from the package, never from the packer's working directory. The modules
and packages the class file imports from its own folder (``import helpers`` with
``helpers.py`` beside it), and theirs in turn, are copied too: without them the package
would load only where the packer's folder happens to be importable.
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FlavorError, UsageError
from ..logic.namespace import import_from_package
from ..logic.sources import class_file, copy_code, local_modules, resolve_source
from ..package.manifest import is_safe_relpath
from . import LoadContext, SaveContext, method_caller

NAME = "custom"
FRAMEWORKS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Context:
    """What a custom model's ``load`` receives."""

    path: Path
    artifacts: Mapping[str, Path]


def detect(obj: Any) -> bool:
    cls = obj if inspect.isclass(obj) else type(obj)
    return callable(getattr(cls, "load", None)) and callable(getattr(cls, "predict", None))


def detect_file(path: Any) -> bool:
    text = str(path)
    return ":" in text and text.rsplit(":", 1)[0].endswith(".py")


_COMPRESSED = frozenset({".gz", ".bz2", ".xz", ".zst", ".lz4"})


def artifact_file_name(name: str, src: Path) -> str:
    """The file name an artifact gets in ``artifacts/``: its name, with the source's
    extension when the name has none (``params`` from ``params.json`` is
    ``params.json``), so readers that go by extension, and people, still know the format.
    """
    if src.is_dir() or Path(name).suffix:
        return name
    suffixes = src.suffixes
    keep = (
        suffixes[-2:]
        if len(suffixes) > 1 and suffixes[-1].lower() in _COMPRESSED
        else suffixes[-1:]
    )
    extension = "".join(keep)
    return name + extension if extension and is_safe_relpath(name + extension) else name


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    if isinstance(model, (str, Path)):
        file, cls_name = resolve_source(str(model))
    else:
        cls = model if inspect.isclass(model) else type(model)
        file, cls_name = class_file(cls), cls.__name__
    module = file.stem
    copy_code([file, *local_modules(file)], ctx.code)
    artifacts = ctx.options.get("artifacts") or {}
    recorded: dict[str, str] = {}
    for name, src in sorted(artifacts.items()):
        if not isinstance(name, str) or not is_safe_relpath(name) or "/" in name:
            raise UsageError(f"artifact name {name!r} is not a plain name", where="artifacts=")
        src = Path(src)
        if not src.exists():
            raise UsageError(f"artifact {name!r}: {src} does not exist", where="artifacts=")
        file_name = artifact_file_name(name, src)
        taken = next((k for k, v in recorded.items() if v == f"artifacts/{file_name}"), None)
        if taken is not None:
            raise UsageError(
                f"artifacts {taken!r} and {name!r} would both be stored as artifacts/{file_name}",
                where="artifacts=",
                fix="give them names that differ after their file extension",
            )
        dest = ctx.artifacts / file_name
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=False)
        else:
            shutil.copyfile(src, dest)
        recorded[name] = f"artifacts/{file_name}"
    return {"module": module, "class": cls_name, "artifacts": recorded, "method": ctx.method}


def load(ctx: LoadContext) -> Any:
    mod = import_from_package(ctx.path / "code", str(ctx.options["module"]))
    cls = getattr(mod, str(ctx.options["class"]), None)
    if cls is None:
        raise FlavorError(
            f"class {ctx.options['class']} not found in code/{ctx.options['module']}.py"
        )
    artifacts = {k: ctx.path / v for k, v in dict(ctx.options.get("artifacts", {})).items()}
    try:
        instance = cls()
    except Exception as exc:
        raise FlavorError(
            f"{cls.__name__}() failed: {exc!r}",
            where=f"code/{ctx.options['module']}.py",
            fix="a custom model class is built without arguments; read settings and "
            "weights in load(context) instead",
        ) from exc
    try:
        instance.load(Context(path=ctx.path, artifacts=artifacts))
    except Exception as exc:
        raise FlavorError(f"{cls.__name__}.load failed: {exc!r}", where=str(ctx.path)) from exc
    method = str(ctx.options.get("method") or "predict")
    return instance if method == "predict" else _Calls(instance, method)


class _Calls:
    """The model's chosen method (``method=`` at pack) answering as its ``predict``."""

    def __init__(self, model: Any, method: str) -> None:
        self.model = model
        self.predict = method_caller(model, method)
