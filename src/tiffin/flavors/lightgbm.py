"""LightGBM Boosters and the scikit-learn wrappers, saved as LightGBM's native model text.

The text (``model_to_string``, read back with ``Booster(model_str=...)``) is LightGBM's
own pickle-free format and the same for the same model; the training-only parameter
lines that can hold local paths or thread counts (``[data: ...]``, ``[num_threads:
...]``) are dropped. A wrapper's ``predict``/``predict_proba`` are rebuilt from the
booster: the class labels (``classes_``) are recorded in the runtime options, so labels
come back as the wrapper gave them, without pickle. For a model trained on a DataFrame
with pandas categorical columns, the example names those columns; their categories
stay in the model text (``pandas_categorical``), and plain string columns (JSON, a
server) are turned back into those categoricals before predicting.

A model file is recognised by its content (``tree`` then ``version=``), whatever its name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlavorError
from ..security.lightgbm_check import check_model_text
from ..security.sniff import ByteFormat
from . import LoadContext, SaveContext, method_caller, mro_modules

NAME = "lightgbm"
FRAMEWORKS = ("lightgbm", "numpy", "scipy")
BYTE_FORMATS = (
    ByteFormat(
        "lightgbm", "LightGBM model text", lambda head, name: head.startswith(b"tree\nversion=")
    ),
)
COST_FOLLOWS_INPUT_SIZE = True
FILE = "artifacts/model.txt"
METHODS = ("predict", "predict_proba", "predict_raw")


def detect(obj: Any) -> bool:
    return any(m == "lightgbm" or m.startswith("lightgbm.") for m in mro_modules(obj))


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
_VOLATILE = re.compile(
    r"^\[(num_threads|data|valid|machines|output_model|input_model|output_result|convert_model"
    r"|\w+_filename|\w+_file): .*\]$\n",
    re.M,
)


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    lgb = _lgb()
    options: dict[str, Any] = {"file": FILE, "format": "text", "method": ctx.method}
    if isinstance(model, (str, Path)):
        text = Path(model).read_text(encoding="utf-8")
        booster = _booster(lgb, text, str(model))
        _check_booster_method(ctx.method)
    elif isinstance(model, lgb.Booster):
        booster = model
        text = booster.model_to_string()
        _check_booster_method(ctx.method)
    else:
        booster = getattr(model, "booster_", None) if _fitted(model) else None
        if booster is None:
            raise FlavorError("the LightGBM model is not fitted", fix="call fit() before packing")
        if ctx.method not in METHODS:
            method_caller(model, ctx.method)
            raise FlavorError(
                f"method {ctx.method!r} is not supported for LightGBM wrappers",
                fix=f"use one of {', '.join(METHODS)}",
            )
        if ctx.method == "predict_proba" and getattr(model, "classes_", None) is None:
            method_caller(model, ctx.method)  # a regressor has none: the clear error
        text = booster.model_to_string()
        classes = getattr(model, "classes_", None)
        if classes is not None:
            options["classes"] = _labels(classes)
    categorical = _categorical_columns(booster, ctx.example)
    if categorical:
        options["categorical"] = categorical
    (ctx.artifacts / "model.txt").write_text(_VOLATILE.sub("", text), encoding="utf-8")
    return options


def _fitted(model: Any) -> bool:
    try:
        return getattr(model, "booster_", None) is not None
    except Exception:  # LightGBM raises NotFittedError from the property
        return False


def _check_booster_method(method: str) -> None:
    if method not in ("predict", "predict_raw"):
        raise FlavorError(
            f"method {method!r} is not available for a LightGBM Booster",
            fix="use method='predict' (probabilities for a classification objective) or "
            "'predict_raw', or pack the LGBMClassifier to get labels and predict_proba",
        )


def _labels(classes: Any) -> list[Any]:
    labels: list[Any] = np.asarray(classes).tolist()
    if not all(isinstance(v, (str, int, float, bool)) for v in labels):
        raise FlavorError(
            "the classifier's class labels are not plain strings or numbers",
            fix="fit it with string or numeric labels",
        )
    return labels


def _categorical_columns(booster: Any, example: Any) -> list[str]:
    """The DataFrame columns the model saw as pandas categoricals, in LightGBM's order."""
    cats = getattr(booster, "pandas_categorical", None) or []
    if not cats or type(example).__name__ != "DataFrame":
        return []
    columns = [str(c) for c in example.columns if str(example[c].dtype) == "category"]
    if len(columns) != len(cats):
        raise FlavorError(
            f"the model was trained with {len(cats)} pandas categorical column(s) but the "
            f"example has {len(columns)}",
            fix="give an example DataFrame with the same category columns as in training",
        )
    return columns


def _booster(lgb: Any, text: str, where: str) -> Any:
    check_model_text(text, where)  # LightGBM's reader crashes on what it cannot parse
    try:
        return lgb.Booster(model_str=text)
    except (lgb.basic.LightGBMError, ValueError) as exc:
        raise FlavorError(f"LightGBM could not load the model: {exc}", where=where) from None


class _Model:
    def __init__(
        self, booster: Any, method: str, classes: list[Any] | None, categorical: list[str]
    ) -> None:
        self.booster, self.method = booster, method
        self.classes = None if classes is None else np.asarray(classes)
        self.categorical = dict(zip(categorical, booster.pandas_categorical or []))

    def _frame(self, inputs: Any) -> Any:
        """String columns as the categoricals LightGBM was trained on (from JSON, a server)."""
        if not self.categorical or type(inputs).__name__ != "DataFrame":
            return inputs
        import pandas as pd

        cast = [c for c in self.categorical if str(inputs[c].dtype) != "category"]
        if not cast:
            return inputs
        frame = inputs.copy()
        for col in cast:
            frame[col] = pd.Categorical(frame[col], categories=self.categorical[col])
        return frame

    def predict(self, inputs: Any) -> Any:
        raw = self.method == "predict_raw"
        out = self.booster.predict(self._frame(inputs), raw_score=raw)
        if self.classes is None or raw:
            return out
        proba = out if out.ndim == 2 else np.column_stack([1.0 - out, out])
        if self.method == "predict_proba":
            return proba
        return self.classes[np.argmax(proba, axis=1)]


def load(ctx: LoadContext) -> Any:
    lgb = _lgb()
    path = ctx.file()
    # The verified bytes as they are, without newline translation: what is checked is
    # exactly what LightGBM reads.
    try:
        text = ctx.read_verified().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlavorError(
            f"the LightGBM model text is not UTF-8 (byte {exc.start})",
            where=str(path),
            fix="save the model again with LightGBM (Booster.save_model or model_to_string)",
        ) from None
    booster = _booster(lgb, text, str(path))
    classes = ctx.options.get("classes")
    categorical = [str(c) for c in ctx.options.get("categorical", [])]
    return _Model(booster, str(ctx.options.get("method", "predict")), classes, categorical)
