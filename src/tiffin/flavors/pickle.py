"""The last resort: any other object, as a pickle, only with ``allow_pickle=True`` twice.

Saved with protocol 5; loaded only through the allow-list unpickler
(:mod:`tiffin.security.unpickler`). The model's class module is copied into ``code/``
so its own classes are allowed by place, not by name; anything else the pickle needs
must be declared with ``trusted_types=``.
"""

from __future__ import annotations

import inspect
import pickle
from typing import Any

from ..errors import UnsafeArtifactError
from ..security.unpickler import code_modules_of, safe_loads
from . import LoadContext, SaveContext, method_caller

NAME = "pickle"
FRAMEWORKS: tuple[str, ...] = ("numpy",)
FILE = "artifacts/model.pkl"


def detect(obj: Any) -> bool:
    return True  # last in the detection order; pack refuses it without allow_pickle


def detect_file(path: Any) -> bool:
    return False  # a pickle file is never picked up by guessing


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    if not ctx.allow_pickle:
        raise UnsafeArtifactError("pickle needs allow_pickle=True", fix="pass allow_pickle=True")
    method_caller(model, ctx.method)
    cls = type(model)
    module = inspect.getmodule(cls)
    source = getattr(module, "__file__", None)
    if (
        source
        and cls.__module__ not in ("__main__", "builtins")
        and not cls.__module__.startswith(("sklearn", "numpy"))
    ):
        from .custom import copy_code

        copy_code([__import__("pathlib").Path(source)], ctx.code)
    (ctx.artifacts / "model.pkl").write_bytes(pickle.dumps(model, protocol=5))
    return {
        "file": FILE,
        "format": "pickle",
        "method": ctx.method,
        "trusted_types": list(ctx.trusted_types),
    }


def load(ctx: LoadContext) -> Any:
    if not ctx.allow_pickle:
        raise UnsafeArtifactError(
            "this package holds a pickle, which can run code when loaded",
            where=str(ctx.file()),
            fix="load it with allow_pickle=True only if you trust its source (it still goes "
            "through the allow-list unpickler)",
        )
    model = safe_loads(
        ctx.file().read_bytes(),
        code_modules=code_modules_of(ctx.path / "code"),
        trusted=ctx.options.get("trusted_types") or (),
    )
    return _Method(model, str(ctx.options.get("method", "predict")))


class _Method:
    def __init__(self, model: Any, method: str) -> None:
        self.model = model
        self.predict = method_caller(model, method)
