"""The last resort: any other object, as a pickle, only with ``allow_pickle=True`` twice.

Saved with protocol 5; loaded only through the allow-list unpickler
(:mod:`tiffin.security.unpickler`). The model's class module is copied into ``code/``
so its own classes are allowed by place, not by name; anything else the pickle needs
must be declared with ``trusted_types=``.
"""

from __future__ import annotations

import pickle
import sys
import sysconfig
from pathlib import Path
from typing import Any

from ..errors import FlavorError, UnsafeArtifactError
from ..logic import namespace
from ..logic.sources import copy_code, local_modules
from ..security.unpickler import code_modules_of, safe_loads
from . import LoadContext, SaveContext, method_caller

NAME = "pickle"
FRAMEWORKS: tuple[str, ...] = ("numpy",)
FILE = "artifacts/model.pkl"
PROTOCOL = 5


def detect(obj: Any) -> bool:
    return True  # last in the detection order; pack refuses it without allow_pickle


def detect_file(path: Any) -> bool:
    return False  # a pickle file is never picked up by guessing


def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return [Path(paths[k]).resolve() for k in keys if k in paths]


def user_source(cls: type) -> Path | None:
    """The file, or top-level package folder, that defines ``cls`` in the user's own code.

    None for classes from the standard library or an installed distribution: copying
    those into ``code/`` would shadow the real ones at load time; they belong in the
    requirements (and, unless audited, in ``trusted_types=``).
    """
    top = cls.__module__.split(".")[0]
    if top == "__main__":
        raise FlavorError(
            f"{cls.__qualname__} is defined in __main__, which no other process can import",
            fix="define the model class in its own .py file and import it from there",
        )
    file = getattr(sys.modules.get(top), "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    if any(part in ("site-packages", "dist-packages") for part in path.parts) or any(
        path.is_relative_to(root) for root in _installed_roots()
    ):
        return None
    return path.parent if path.name == "__init__.py" else path


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    if not ctx.allow_pickle:
        raise UnsafeArtifactError("pickle needs allow_pickle=True", fix="pass allow_pickle=True")
    method_caller(model, ctx.method)
    source = user_source(type(model))
    if source is not None:
        siblings = local_modules(source) if source.is_file() else []
        copy_code([source, *siblings], ctx.code)
    try:
        data = pickle.dumps(model, protocol=PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise FlavorError(f"the model cannot be pickled: {exc}") from None
    (ctx.artifacts / "model.pkl").write_bytes(data)
    return {
        "file": FILE,
        "format": "pickle",
        "protocol": PROTOCOL,
        "method": ctx.method,
        "trusted_types": sorted(ctx.trusted_types),
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
        ctx.read_verified(),  # the verified bytes, not whatever the path holds by now
        code_modules=code_modules_of(ctx.path / "code"),
        trusted=ctx.options.get("trusted_types") or (),
        code_prefix=namespace.PREFIX,
    )
    return _Method(model, str(ctx.options.get("method", "predict")))


class _Method:
    def __init__(self, model: Any, method: str) -> None:
        self.model = model
        self.predict = method_caller(model, method)
