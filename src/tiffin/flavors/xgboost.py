"""XGBoost Boosters and the scikit-learn wrappers, saved in XGBoost's native UBJ format.

A wrapper (XGBClassifier, XGBRegressor, ...) is rebuilt from the booster file with its
class name; ``load_model`` restores the wrapper's own attributes (classes, objective)
that XGBoost keeps in the model file, so no pickle is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import FlavorError
from . import LoadContext, SaveContext, method_caller, mro_modules

NAME = "xgboost"
FRAMEWORKS = ("xgboost", "numpy", "scipy")
FILE = "artifacts/model.ubj"
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")


def detect(obj: Any) -> bool:
    return any(m.startswith("xgboost") for m in mro_modules(obj))


def detect_file(path: Any) -> bool:
    path = Path(path)
    if not path.is_file() or path.suffix not in (".ubj", ".json", ".xgb", ".model"):
        return False
    with open(path, "rb") as fh:
        head = fh.read(64)
    # UBJSON object start, or a JSON booster document.
    return head.startswith(b"{L") or head.startswith(b"{i") or b'"learner"' in head


def _xgb() -> Any:
    try:
        import xgboost
    except ImportError:
        raise FlavorError("xgboost is not installed", fix="pip install xgboost") from None
    return xgboost


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    xgb = _xgb()
    dest = ctx.artifacts / "model.ubj"
    if isinstance(model, (str, Path)):
        booster = xgb.Booster()
        booster.load_model(str(model))
        booster.save_model(str(dest))
        return {"file": FILE, "format": "ubj", "wrapper": None, "method": ctx.method}
    wrapper = type(model).__name__ if type(model).__name__ in WRAPPERS else None
    if wrapper is None and not isinstance(model, xgb.Booster):
        raise FlavorError(f"unsupported XGBoost object {type(model).__name__}")
    if wrapper:
        method_caller(model, ctx.method)
    model.save_model(str(dest))
    return {"file": FILE, "format": "ubj", "wrapper": wrapper, "method": ctx.method}


class _BoosterModel:
    def __init__(self, booster: Any, xgb: Any, method: str) -> None:
        self.booster, self.xgb, self.method = booster, xgb, method

    def predict(self, inputs: Any) -> Any:
        data = inputs if isinstance(inputs, self.xgb.DMatrix) else self.xgb.DMatrix(inputs)
        margin = self.method == "predict_margin"
        return self.booster.predict(data, output_margin=margin)


def load(ctx: LoadContext) -> Any:
    xgb = _xgb()
    path = str(ctx.file())
    wrapper = ctx.options.get("wrapper")
    method = str(ctx.options.get("method", "predict"))
    try:
        if wrapper:
            if wrapper not in WRAPPERS:
                raise FlavorError(f"unknown XGBoost wrapper {wrapper!r}", where="runtime.options")
            model = getattr(xgb, wrapper)()
            model.load_model(path)
            return _Method(model, method)
        booster = xgb.Booster()
        booster.load_model(path)
    except xgb.core.XGBoostError as exc:
        raise FlavorError(f"XGBoost could not load the model: {exc}", where=path) from None
    if "xgboost" not in sys.modules:  # pragma: no cover
        raise FlavorError("xgboost import failed")
    return _BoosterModel(booster, xgb, method)


class _Method:
    def __init__(self, model: Any, method: str) -> None:
        self.model = model
        self.predict = method_caller(model, method)
