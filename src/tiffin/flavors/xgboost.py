"""XGBoost Boosters and the scikit-learn wrappers, saved in XGBoost's native UBJ format.

UBJ (binary JSON) is XGBoost's own pickle-free format; its bytes are the same for the
same model. A wrapper (XGBClassifier, XGBRegressor, XGBRanker, ...) is rebuilt at load
as the same class from its name: ``load_model`` restores what the wrapper needs (the
estimator type and number of classes that XGBoost keeps inside the model file), so
``predict`` gives labels and ``method="predict_proba"`` probabilities, without pickle.

A model file (``.ubj`` or ``.json``, recognised by its bytes) written by a wrapper's
``save_model`` records its estimator type and is reloaded as that wrapper; a plain
Booster file stays a Booster. A Booster predicts on a ``DMatrix`` built from the input
(a NumPy array or a pandas DataFrame). String columns of categorical features become
pandas categoricals, which XGBoost re-codes with the categories stored in the model.

XGBoost's own reader trusts the file: one forged count or child index kills the process.
Every file XGBoost is given here (a file being packed, what was just saved, a
package's verified bytes at load) is first read and checked by :mod:`tiffin.security.xgboost_check`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FlavorError
from ..security.sniff import ByteFormat
from ..security.xgboost_check import check_model_bytes
from . import LoadContext, SaveContext, method_caller, mro_modules

NAME = "xgboost"
FRAMEWORKS = ("xgboost", "numpy", "scipy")
BYTE_FORMATS = (
    ByteFormat(
        "json/ubjson", "JSON or UBJSON document", lambda head, name: head[:1] in (b"{", b"[")
    ),
)
COST_FOLLOWS_INPUT_SIZE = True
FILE = "artifacts/model.ubj"
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")
BOOSTER_METHODS = ("predict", "predict_margin")
# The class a wrapper-written model file is rebuilt as, by its recorded estimator type.
_BY_TYPE = {"classifier": "XGBClassifier", "regressor": "XGBRegressor", "ranker": "XGBRanker"}

# UBJSON: an object ("{"), then the first key's length marker (int8/uint8/int16/int32/
# int64) and the key. JSON: the document opens with the "learner" (or "version") key.
_UBJ_HEAD = re.compile(rb"^\{[iUIlL].{1,8}(learner|version)", re.S)
_JSON_HEAD = re.compile(rb'^\s*\{\s*"(learner|version)"\s*:')


def frameworks(options: Mapping[str, Any]) -> tuple[str, ...]:
    """A wrapper (XGBClassifier, ...) is rebuilt through XGBoost's scikit-learn module,
    which needs scikit-learn; a plain Booster does not."""
    return (*FRAMEWORKS, "scikit-learn") if options.get("wrapper") else FRAMEWORKS


def detect(obj: Any) -> bool:
    return any(m == "xgboost" or m.startswith("xgboost.") for m in mro_modules(obj))


def detect_file(path: Any) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(64)
    return bool(_UBJ_HEAD.match(head) or _JSON_HEAD.match(head))


def _xgb() -> Any:
    try:
        import xgboost
    except ImportError:
        raise FlavorError("xgboost is not installed", fix="pip install xgboost") from None
    return xgboost


def _file_wrapper(booster: Any) -> str | None:
    """The wrapper class a model file was written by, from its ``scikit_learn`` attribute."""
    raw = booster.attr("scikit_learn")
    if not raw:
        return None
    try:
        kind = json.loads(raw).get("_estimator_type")
    except (ValueError, AttributeError):
        return None
    return _BY_TYPE.get(kind)


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    xgb = _xgb()
    if isinstance(model, (str, Path)):
        model = _read_file(xgb, Path(model))
    wrapper = type(model).__name__ if type(model).__name__ in WRAPPERS else None
    if wrapper is None and not isinstance(model, xgb.Booster):
        raise FlavorError(
            f"unsupported XGBoost object {type(model).__name__}",
            fix=f"pack a Booster or one of {', '.join(WRAPPERS)}",
        )
    if wrapper:
        method_caller(model, ctx.method)
        if getattr(model, "_Booster", None) is None:
            raise FlavorError(f"the {wrapper} is not fitted", fix="call fit() before packing")
    elif ctx.method not in BOOSTER_METHODS:
        raise FlavorError(
            f"method {ctx.method!r} is not available for an XGBoost Booster",
            fix="use method='predict' (probabilities for a classification objective) or "
            "'predict_margin', or pack the XGBClassifier to get predict_proba",
        )
    target = ctx.artifacts / "model.ubj"
    model.save_model(str(target))
    check_model_bytes(target.read_bytes(), FILE)  # refused now, not at every load
    return {"file": FILE, "format": "ubj", "wrapper": wrapper, "method": ctx.method}


def _read_file(xgb: Any, path: Path) -> Any:
    """A model file as the object that wrote it: a wrapper if it records one, else a Booster."""
    # From the bytes, not the path: XGBoost guesses a file's format by its suffix.
    data = path.read_bytes()
    check_model_bytes(data, str(path))  # XGBoost's reader crashes on what it cannot parse
    raw = bytearray(data)
    booster = xgb.Booster()
    try:
        booster.load_model(raw)
        wrapper = _file_wrapper(booster)
        if wrapper is None:
            return booster
        model = getattr(xgb, wrapper)()
        model.load_model(raw)
    except (xgb.core.XGBoostError, ValueError) as exc:
        raise FlavorError(f"XGBoost cannot read the model file: {exc}", where=str(path)) from None
    return model


def _categorical_frame(inputs: Any, categorical: list[str]) -> Any:
    """String columns of categorical features as pandas categoricals (XGBoost re-codes them)."""
    if not categorical or type(inputs).__name__ != "DataFrame":
        return inputs
    import pandas as pd

    cast = [c for c in categorical if c in inputs.columns and inputs[c].dtype.kind in "OUS"]
    if not cast:
        return inputs
    frame = inputs.copy()
    for col in cast:
        frame[col] = pd.Categorical(frame[col])
    return frame


class _BoosterModel:
    def __init__(self, booster: Any, xgb: Any, method: str) -> None:
        self.booster, self.xgb = booster, xgb
        self.margin = method == "predict_margin"
        self.categorical = _categorical_features(booster)

    def predict(self, inputs: Any) -> Any:
        try:
            if not isinstance(inputs, self.xgb.DMatrix):
                inputs = _categorical_frame(inputs, self.categorical)
                inputs = self.xgb.DMatrix(inputs, enable_categorical=bool(self.categorical))
            return self.booster.predict(inputs, output_margin=self.margin)
        except (self.xgb.core.XGBoostError, ValueError) as exc:
            raise _predict_error(exc) from None


class _WrapperModel:
    def __init__(self, model: Any, xgb: Any, method: str) -> None:
        self.model, self.xgb = model, xgb
        self.call = method_caller(model, method)
        self.categorical = _categorical_features(model.get_booster())

    def predict(self, inputs: Any) -> Any:
        try:
            return self.call(_categorical_frame(inputs, self.categorical))
        except (self.xgb.core.XGBoostError, ValueError) as exc:
            raise _predict_error(exc) from None


def _predict_error(exc: Exception) -> FlavorError:
    """XGBoost's refusal of an input the model does not fit (its features or their types)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return FlavorError(
        f"XGBoost could not predict: {first}",
        fix="check the input against the package's signature (tiffin inspect)",
    )


def _categorical_features(booster: Any) -> list[str]:
    names = booster.feature_names or []
    types = booster.feature_types or []
    return [n for n, t in zip(names, types) if t == "c"]


def load(ctx: LoadContext) -> Any:
    xgb = _xgb()
    path = str(ctx.file())
    # The verified bytes, checked, are what XGBoost reads: not the path, which could be
    # swapped in between, and whose suffix XGBoost would trust over the content.
    raw = ctx.read_verified()
    check_model_bytes(raw, path)
    wrapper = ctx.options.get("wrapper")
    method = str(ctx.options.get("method", "predict"))
    if wrapper is not None and wrapper not in WRAPPERS:
        raise FlavorError(
            f"unknown XGBoost wrapper {wrapper!r}",
            where="tiffin.json: runtime.options.wrapper",
            fix=f"one of {', '.join(WRAPPERS)}",
        )
    try:
        if wrapper:
            # The wrappers need scikit-learn, which XGBoost imports as if optional:
            # importing it here makes the environment capture pin it.
            import sklearn  # noqa: F401

            model = getattr(xgb, wrapper)()
            model.load_model(bytearray(raw))
            return _WrapperModel(model, xgb, method)
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
    except (xgb.core.XGBoostError, ValueError) as exc:
        raise FlavorError(f"XGBoost could not load the model: {exc}", where=path) from None
    return _BoosterModel(booster, xgb, method)
