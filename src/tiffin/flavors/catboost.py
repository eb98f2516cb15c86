"""CatBoost models (classifier, regressor, ranker), saved as CatBoost's own model JSON.

The JSON export holds everything a model with float and categorical features needs to
predict: the trees (symmetric or not), the float borders, the one-hot values and the
CTR tables that turn category strings into numbers, the class names and the bias. It
loads without pickle, and is the same bytes for the same model. Each load checks the
file (:mod:`tiffin.security.catboost_check`) before CatBoost's reader sees it, because that reader
trusts its input and crashes on a broken file.

The binary ``.cbm`` format is refused as input: it is a flatbuffer followed by CTR
tables in CatBoost's own serialization, and mutated ``.cbm`` files crash CatBoost's
reader (6 of 150 single-byte mutants killed the process by a signal). Checking that
format fully would mean re-implementing it; a model the user trusts is loaded by the
user (``model.load_model(path)``) and packed as an object, and tiffin stores JSON.
Models with text or embedding features cannot be exported to JSON and are refused.

``predict`` gives what the CatBoost class gives (class labels for a classifier: a
column of labels for multiclass models, as CatBoost returns them); ``method=
"predict_proba"`` gives class probabilities. Categorical features are the DataFrame
columns CatBoost was told about (``cat_features``); they arrive as strings (or
integers) through the signature and CatBoost hashes them itself. A model from
``catboost.train`` (a plain ``CatBoost`` object) predicts raw values, as it does in
CatBoost; a JSON file is rebuilt as the class its loss function implies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import FlavorError
from ..security.catboost_check import check_model_json
from ..security.sniff import ByteFormat
from . import LoadContext, SaveContext, mro_modules

NAME = "catboost"
FRAMEWORKS = ("catboost", "numpy", "pandas", "scipy")
BYTE_FORMATS = (ByteFormat("json", "JSON document", lambda head, name: head.lstrip()[:1] == b"{"),)
COST_FOLLOWS_INPUT_SIZE = True
FILE = "artifacts/model.json"
CLASSES = {
    "classifier": "CatBoostClassifier",
    "regressor": "CatBoostRegressor",
    "ranker": "CatBoostRanker",
    "model": "CatBoost",  # catboost.train's result
}
METHODS = {
    "classifier": ("predict", "predict_proba"),
    "regressor": ("predict",),
    "ranker": ("predict",),
    "model": ("predict",),
}
_CLASSIFY = {"Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll"}
_RANK = {
    "YetiRank", "YetiRankPairwise", "PairLogit", "PairLogitPairwise", "QueryRMSE",
    "QuerySoftMax", "QueryCrossEntropy", "StochasticFilter", "StochasticRank", "LambdaMart",
}  # fmt: skip
_CBM_MAGIC = b"CBM1"


def detect(obj: Any) -> bool:
    return any(m == "catboost" or m.startswith("catboost.") for m in mro_modules(obj))


def detect_file(path: Any) -> bool:
    """A CatBoost model file: JSON with CatBoost's top-level keys, or a ``.cbm`` file.

    ``.cbm`` is recognised only so that ``save`` can refuse it with the reason.
    """
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(_CBM_MAGIC):
        return True
    start = head.lstrip()
    return start[:1] == b"{" and any(
        start[1:].lstrip().startswith(k) for k in (b'"ctr_data"', b'"features_info"')
    )


def _cb() -> Any:
    try:
        import catboost
    except ImportError:
        raise FlavorError("catboost is not installed", fix="pip install catboost") from None
    return catboost


@contextlib.contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """``data`` in a file only this process writes: CatBoost reads JSON from a path only."""
    folder = tempfile.mkdtemp(prefix="tiffin-catboost-")
    try:
        path = os.path.join(folder, "model.json")
        with open(path, "wb") as fh:
            fh.write(data)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _kind_of(doc: dict[str, Any], where: str) -> str:
    """classifier, regressor or ranker, from the loss the model was trained with."""
    params = doc["model_info"].get("params") or {}
    loss = params.get("loss_function") if isinstance(params, dict) else None
    name = loss.get("type") if isinstance(loss, dict) else None
    if name in _CLASSIFY or "class_params" in doc["model_info"]:
        return "classifier"
    if name in _RANK:
        return "ranker"
    if name is None:
        raise FlavorError(
            "the CatBoost model JSON does not record its loss function",
            where=where,
            fix="export it with CatBoost 1.0 or newer (save_model(path, format='json'))",
        )
    return "regressor"


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    cb = _cb()
    if isinstance(model, (str, Path)):
        where = str(model)
        data = Path(model).read_bytes()
        if data.startswith(_CBM_MAGIC):
            raise FlavorError(
                "tiffin does not read CatBoost's binary .cbm format (its reader crashes on "
                "damaged files, and tiffin cannot check them first)",
                where=where,
                fix="if you trust the file, load it with CatBoost (m = CatBoostClassifier(); "
                "m.load_model(path)) and pack the object, or export it with "
                "save_model(path, format='json')",
            )
        kind = _kind_of(check_model_json(data, where), where)
    else:
        if not isinstance(model, cb.CatBoost):
            raise FlavorError(
                f"unsupported CatBoost object {type(model).__name__}",
                fix=f"pack one of {', '.join(CLASSES.values())} (or a CatBoost model)",
            )
        if not model.is_fitted():
            raise FlavorError("the CatBoost model is not fitted", fix="call fit() before packing")
        data = _export(cb, model)
        where = type(model).__name__
        doc = check_model_json(data, where)
        by_class = {v: k for k, v in CLASSES.items()}
        kind = by_class.get(type(model).__name__) or _kind_of(doc, where)
        if type(model).__name__ not in by_class:
            # a model from catboost.train: its predict gives raw values, and so must ours
            kind = "model"
    if ctx.method not in METHODS[kind]:
        raise FlavorError(
            f"method {ctx.method!r} is not available for a CatBoost {kind}",
            where="method",
            fix=f"use one of {', '.join(METHODS[kind])}",
        )
    (ctx.artifacts / "model.json").write_bytes(data)
    return {"file": FILE, "format": "json", "kind": kind, "method": ctx.method}


def _export(cb: Any, model: Any) -> bytes:
    folder = tempfile.mkdtemp(prefix="tiffin-catboost-")
    try:
        path = os.path.join(folder, "model.json")
        try:
            model.save_model(path, format="json")
        except cb.CatBoostError as exc:
            raise FlavorError(
                f"CatBoost cannot save this model as JSON: {exc}",
                fix="tiffin stores CatBoost models as JSON, which holds float and categorical "
                "features; retrain without text or embedding features",
            ) from None
        return Path(path).read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Model:
    def __init__(self, model: Any, method: str, error: type[Exception]) -> None:
        self.model, self.call, self.error = model, getattr(model, method), error

    def predict(self, inputs: Any) -> Any:
        try:
            return self.call(inputs)
        except self.error as exc:  # CatBoostError: the input or the model, in its words
            raise FlavorError(f"CatBoost could not predict: {exc}", where="predict") from None


def load(ctx: LoadContext) -> Any:
    cb = _cb()
    where = str(ctx.file())
    kind = ctx.options.get("kind")
    if kind not in CLASSES:
        raise FlavorError(
            f"unknown CatBoost model kind {kind!r}",
            where="tiffin.json: runtime.options.kind",
            fix=f"one of {', '.join(CLASSES)}",
        )
    method = str(ctx.options.get("method", "predict"))
    if method not in METHODS[kind]:
        raise FlavorError(
            f"method {method!r} is not available for a CatBoost {kind}",
            where="tiffin.json: runtime.options.method",
            fix=f"one of {', '.join(METHODS[kind])}",
        )
    data = ctx.read_verified()
    check_model_json(data, where)
    model = getattr(cb, CLASSES[kind])()
    try:
        with _private_file(data) as path:
            model.load_model(path, format="json")
        return _Model(model, method, cb.CatBoostError)
    except Exception as exc:  # CatBoostError, or a Python error from its wrapper
        raise FlavorError(f"CatBoost could not load the model: {exc}", where=where) from None
