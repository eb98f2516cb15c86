"""LightGBM Boosters and the scikit-learn wrappers, saved as LightGBM's native model text.

A wrapper's ``predict``/``predict_proba`` are rebuilt from the booster: the class labels
(``classes_``) are recorded in the runtime options, so labels come back as the wrapper
gave them, without pickle.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlavorError
from . import LoadContext, SaveContext, method_caller, mro_modules

NAME = "lightgbm"
FRAMEWORKS = ("lightgbm", "numpy", "scipy")
FILE = "artifacts/model.txt"
METHODS = ("predict", "predict_proba", "predict_raw")


def detect(obj: Any) -> bool:
    return any(m.startswith("lightgbm") for m in mro_modules(obj))


def detect_file(path: Any) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(64)
    return head.startswith(b"tree\nversion=")


def _lgb() -> Any:
    try:
        import lightgbm
    except ImportError:
        raise FlavorError("lightgbm is not installed", fix="pip install lightgbm") from None
    return lightgbm


# LightGBM writes the training parameters at the end of the text, including paths
# and thread counts that differ between machines but not the model.
_VOLATILE = re.compile(r"^\[(num_threads|output_model|input_model|data|valid)\b.*$\n", re.M)


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    lgb = _lgb()
    options: dict[str, Any] = {"file": FILE, "format": "text", "method": ctx.method}
    if isinstance(model, (str, Path)):
        text = Path(model).read_text(encoding="utf-8")
    elif isinstance(model, lgb.Booster):
        text = model.model_to_string()
    else:
        booster = getattr(model, "booster_", None)
        if booster is None:
            raise FlavorError("the LightGBM model is not fitted", fix="call fit() before packing")
        if ctx.method not in METHODS:
            method_caller(model, ctx.method)
            raise FlavorError(f"method {ctx.method!r} is not supported for LightGBM wrappers")
        text = booster.model_to_string()
        classes = getattr(model, "classes_", None)
        if classes is not None:
            options["classes"] = np.asarray(classes).tolist()
    (ctx.artifacts / "model.txt").write_text(_VOLATILE.sub("", text), encoding="utf-8")
    return options


class _Model:
    def __init__(self, booster: Any, method: str, classes: list[Any] | None) -> None:
        self.booster, self.method = booster, method
        self.classes = None if classes is None else np.asarray(classes)

    def predict(self, inputs: Any) -> Any:
        raw = self.method == "predict_raw"
        out = self.booster.predict(inputs, raw_score=raw)
        if self.classes is None or raw:
            return out
        proba = out if out.ndim == 2 else np.column_stack([1.0 - out, out])
        if self.method == "predict_proba":
            return proba
        return self.classes[np.argmax(proba, axis=1)]


def load(ctx: LoadContext) -> Any:
    lgb = _lgb()
    path = ctx.file()
    try:
        booster = lgb.Booster(model_str=path.read_text(encoding="utf-8"))
    except lgb.basic.LightGBMError as exc:
        raise FlavorError(f"LightGBM could not load the model: {exc}", where=str(path)) from None
    classes = ctx.options.get("classes")
    return _Model(booster, str(ctx.options.get("method", "predict")), classes)
