"""TEMPLATE: copy to src/tiffin/flavors/<name>.py and fill in (docs/contributing.md).

This file is a complete, working flavor for a made-up framework, ``tinylinear``, whose
models are ``tinylinear.LinearModel(coef, intercept)`` objects with ``predict(X)``. It
is run as it stands by tests/flavors/test_template.py, which copies it into a copy of
the source tree and adds its one line to the registry, exactly as the checklist says.
Replace every ``tinylinear`` part with your framework's; keep the shape.

The format: a header ``TINYLIN1``, the number of weights (little-endian uint32), then
the weights and the intercept as little-endian float64. A real flavor uses its
framework's own pickle-free format; the rule that matters is the same: the bytes are
checked by tiffin before the framework's reader sees them.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from ..errors import FlavorError
from ..security.sniff import ByteFormat
from . import LoadContext, SaveContext, method_caller, mro_modules

# The name recorded in the manifest, and the distributions whose versions are pinned
# and recorded in provenance (the framework first).
NAME = "tinylinear"
FRAMEWORKS = ("tinylinear", "numpy")
FILE = "artifacts/model.tinylin"
MAGIC = b"TINYLIN1"


def _problem(path: Path) -> str | None:
    """What is wrong with the file's structure, or None; read before any framework code."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12 or not head.startswith(MAGIC):
        return "it does not start with a TINYLIN1 header"
    (n,) = struct.unpack("<I", head[8:12])
    if size != 12 + 8 * (n + 1):
        return f"its header says {n} weights, and its size says otherwise ({size} bytes)"
    return None


# The formats of this flavor's artifacts that the artifact sniffer accepts as carrying no
# code, with the structural check it runs on the whole file (at pack, load and lint).
BYTE_FORMATS = (
    ByteFormat(
        "tinylinear", "tinylinear weights", lambda head, name: head.startswith(MAGIC),
        check=_problem, fix="pack the model again from the framework's object",
    ),
)  # fmt: skip
# Predict costs what the input's size says, so the server may run small calls inline.
COST_FOLLOWS_INPUT_SIZE = True


def detect(obj: Any) -> bool:
    """Is this in-memory object ours? By its type's module: never import the framework here."""
    return any(m == "tinylinear" or m.startswith("tinylinear.") for m in mro_modules(obj))


def detect_file(path: Any) -> bool:
    """Is this model file ours? By its bytes, never by its name alone."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def _framework() -> Any:
    try:
        import tinylinear
    except ImportError:
        raise FlavorError("tinylinear is not installed", fix="pip install tinylinear") from None
    return tinylinear


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    """Write the artifacts under ``ctx.artifacts``; return what ``load`` needs."""
    if isinstance(model, (str, Path)):  # a model file: checked, then copied as it is
        problem = _problem(Path(model))
        if problem:
            raise FlavorError(f"{model} is not a tinylinear model: {problem}", where=str(model))
        data = Path(model).read_bytes()
    else:
        method_caller(model, ctx.method)  # a method the model has and that only predicts
        coef = [float(c) for c in model.coef]
        data = MAGIC + struct.pack(f"<I{len(coef) + 1}d", len(coef), *coef, float(model.intercept))
    (ctx.artifacts / "model.tinylin").write_bytes(data)
    return {"file": FILE, "method": ctx.method}


def load(ctx: LoadContext) -> Any:
    """The model, rebuilt from the verified package: an object with ``predict(inputs)``."""
    framework = _framework()
    data = ctx.read_verified("file")  # the bytes, checked against the manifest as read
    (n,) = struct.unpack("<I", data[8:12])
    values = struct.unpack(f"<{n + 1}d", data[12:])
    model = framework.LinearModel(list(values[:n]), values[n])
    method = str(ctx.options.get("method", "predict"))
    return model if method == "predict" else _Calls(model, method)


class _Calls:
    """The method chosen at pack, answering as ``predict``."""

    def __init__(self, model: Any, method: str) -> None:
        self.predict = method_caller(model, method)
