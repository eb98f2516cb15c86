"""Flavors: one module per framework behind one small protocol.

A flavor module defines:

- ``NAME``: the flavor name recorded in the manifest (``runtime.flavor``)
- ``FRAMEWORKS``: distributions whose versions go into provenance
- ``detect(obj) -> bool``: is this in-memory model ours? (must not import the framework;
  look at ``type(obj).__module__`` and ``sys.modules`` instead)
- ``detect_file(path) -> bool``: is this model file ours? (by its bytes where possible)
- ``save(model, ctx: SaveContext) -> dict``: write artifacts under ``ctx.root``, return
  the runtime options that ``load`` needs
- ``load(ctx: LoadContext) -> Model``: an object with ``predict(inputs)`` (after the
  package has been verified)

Frameworks are imported only inside their flavor's ``save``/``load``, so adding one
touches only its own module (and the name below).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from ..errors import FlavorError, UsageError

# Detection order matters: XGBoost and LightGBM sklearn wrappers are also sklearn
# estimators, so they are tried first; pickle is the explicit last resort.
FLAVORS = ("xgboost", "lightgbm", "torch", "onnx", "sklearn", "custom", "pickle")


class Model(Protocol):
    def predict(self, inputs: Any) -> Any: ...


@dataclass
class SaveContext:
    """What a flavor's ``save`` gets besides the model."""

    root: Path  # the package folder being written (a temporary folder)
    method: str = "predict"
    example: Any = None
    allow_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def artifacts(self) -> Path:
        path = self.root / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def code(self) -> Path:
        path = self.root / "code"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class LoadContext:
    """What a flavor's ``load`` gets: the verified package folder and its runtime options."""

    path: Path
    options: Mapping[str, Any]
    allow_pickle: bool = False
    artifacts: Mapping[str, Path] = field(default_factory=dict)

    def file(self, key: str = "file") -> Path:
        rel = self.options.get(key)
        if not isinstance(rel, str):
            raise FlavorError(f"runtime option {key!r} is missing", where="tiffin.json: runtime")
        return self.path / rel


def get(name: str) -> ModuleType:
    """The flavor module called ``name``."""
    if name not in FLAVORS:
        raise UsageError(f"unknown flavor {name!r}", fix=f"use one of {', '.join(FLAVORS)}")
    return importlib.import_module(f"{__name__}.{name}")


def detect(model: Any) -> ModuleType:
    """The flavor for an in-memory model or a model file path."""
    is_path = isinstance(model, (str, Path))
    for name in FLAVORS:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            continue  # a flavor left out of this installation
        flavor = get(name)
        check: Callable[[Any], bool] = flavor.detect_file if is_path else flavor.detect
        if check(model):
            return flavor
    what = (
        f"file {model}"
        if is_path
        else f"object of type {type(model).__module__}.{type(model).__qualname__}"
    )
    raise FlavorError(
        f"no flavor recognises the {what}",
        fix="pass flavor=... explicitly, wrap it in a class with load/predict (custom flavor), "
        "or allow_pickle=True as a last resort",
    )


def method_caller(model: Any, method: str) -> Callable[[Any], Any]:
    fn = getattr(model, method, None)
    if not callable(fn):
        raise FlavorError(
            f"{type(model).__name__} has no method {method!r}",
            fix="pass method= one of the model's prediction methods (predict, predict_proba, ...)",
        )
    return fn  # type: ignore[no-any-return]


def type_module(obj: Any) -> str:
    return type(obj).__module__ or ""


def mro_modules(obj: Any) -> list[str]:
    return [c.__module__ or "" for c in type(obj).__mro__]
