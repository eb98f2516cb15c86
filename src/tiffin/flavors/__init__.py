"""Flavors: one module per framework behind one small protocol.

A flavor module defines:

- ``NAME``: the flavor name recorded in the manifest (``runtime.flavor``)
- ``FRAMEWORKS``: distributions whose versions go into provenance (and, with the
  capture off, the requirements); optionally ``frameworks(options)`` when they depend on
  the saved model (a scikit-learn Pipeline holding an XGBoost step)
- ``detect(obj) -> bool``: is this in-memory model ours? (must not import the framework;
  look at ``type(obj).__module__`` and ``sys.modules`` instead)
- ``detect_file(path) -> bool``: is this model file ours? (by its bytes where possible)
- ``save(model, ctx: SaveContext) -> dict``: write artifacts under ``ctx.root``, return
  the runtime options that ``load`` needs
- ``load(ctx: LoadContext) -> LoadedModel``: an object with ``predict(inputs)`` (after the
  package has been verified)
- optionally ``refine_signature(model, signature) -> Signature``: the signature inferred
  from the example, corrected by what the format declares (ONNX: which dims are dynamic)
- optionally ``prepare_example(example, options) -> example``: the example in the dtypes
  the saved model takes (PyTorch: floating inputs in the module's dtype)
- optionally ``original(model, options) -> LoadedModel``: the in-memory model called the way
  the loaded one is; pack records its output and refuses a package that answers otherwise
  (without the hook, the object's ``method`` is called); ``REBUILD_FIX`` is the fix text
  for that refusal
- optionally ``BYTE_FORMATS``: the :class:`~tiffin.security.sniff.ByteFormat` s of its
  artifacts that the artifact sniffer accepts as carrying no code (with a deeper
  ``check`` of the whole file where the format can name other files or hold code)
- optionally ``COST_FOLLOWS_INPUT_SIZE = True``: predict costs what the input's size says
  (compiled estimators, graphs), so the server may run small calls on its event loop;
  without it every call goes to a thread (arbitrary Python can take any time)

Frameworks are imported only inside their flavor's ``save``/``load``, so adding one
touches only its own module, its test file, and one line of ``FLAVORS`` below
(docs/contributing.md, and the template in docs/flavor_template.py).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from ..errors import FlavorError, IntegrityError, UsageError
from ..package.layout import MANIFEST
from ..package.manifest import is_safe_relpath
from ..security.sniff import ByteFormat

# The registry, one line per flavor, in detection order: the gradient-boosting libraries'
# scikit-learn wrappers are also scikit-learn estimators, so they come first; custom
# (anything with load/predict) and pickle (anything at all) come last.
FLAVORS = (
    "xgboost",
    "lightgbm",
    "catboost",
    "torch",
    "onnx",
    "sklearn",
    "custom",
    "pickle",
)


class LoadedModel(Protocol):
    """What a flavor's load returns: the model, answering predict(inputs)."""

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
    digests: Mapping[str, str] = field(default_factory=dict)  # verified path -> sha256

    def file(self, key: str = "file") -> Path:
        """The package file a runtime option names; only a verified file of this package.

        A re-sealed manifest could otherwise point a flavor at ``/tmp/x`` or ``../x``,
        a file that no digest covers and the sniffer never saw.
        """
        rel = self.options.get(key)
        if not isinstance(rel, str):
            raise FlavorError(f"runtime option {key!r} is missing", where="tiffin.json: runtime")
        listed = rel in self.digests if self.digests else (self.path / rel).is_file()
        if not is_safe_relpath(rel) or not listed:
            raise IntegrityError(
                f"runtime option {key!r} names {rel!r}, which is not a file of this package",
                where=str(self.path / MANIFEST),
                fix="do not load it; a packed model names a file listed in its own manifest",
            )
        return self.path / rel

    def read_verified(self, key: str = "file") -> bytes:
        """The bytes of ``file(key)``, checked against the manifest as they are read.

        ``load`` verified every file before any flavor ran, but a file can be swapped on
        disk in between; deserializing these bytes, not the path, closes that window.
        """
        path = self.file(key)
        data = path.read_bytes()
        rel = path.relative_to(self.path).as_posix()
        if not self.digests:
            return data  # a folder being packed, not yet sealed: nothing to check against
        if hashlib.sha256(data).hexdigest() != self.digests[rel]:
            raise IntegrityError(
                f"{rel} changed after the package was verified",
                where=str(self.path),
                fix="something is writing to the package while it loads; load a private copy",
            )
        return data


def get(name: str) -> ModuleType:
    """The flavor module called ``name``."""
    if name not in FLAVORS:
        raise UsageError(f"unknown flavor {name!r}", fix=f"use one of {', '.join(FLAVORS)}")
    return importlib.import_module(f"{__name__}.{name}")


def installed() -> list[ModuleType]:
    """The flavor modules of this installation, in detection order."""
    return [
        get(name) for name in FLAVORS if importlib.util.find_spec(f"{__name__}.{name}") is not None
    ]


def byte_formats() -> tuple[ByteFormat, ...]:
    """Every format a flavor declares safe by its bytes (``BYTE_FORMATS``)."""
    return tuple(f for flavor in installed() for f in getattr(flavor, "BYTE_FORMATS", ()))


def frameworks_of(flavor: ModuleType, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The distributions a saved model needs: the flavor's ``frameworks(options)`` or ``FRAMEWORKS``."""
    hook = getattr(flavor, "frameworks", None)
    return tuple(hook(options)) if hook is not None else tuple(flavor.FRAMEWORKS)


def cost_follows_input_size(name: str) -> bool:
    """Whether the flavor's predict costs what its input's size says (``COST_FOLLOWS_INPUT_SIZE``)."""
    return bool(getattr(get(name), "COST_FOLLOWS_INPUT_SIZE", False))


def detect(model: Any) -> ModuleType:
    """The flavor for an in-memory model or a model file path."""
    is_path = isinstance(model, (str, Path))
    if not is_path:
        _refuse_without_safe_format(model)
    for flavor in installed():
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


# Frameworks whose models have no pickle-free format: the pickle flavor, last in the
# detection order, would otherwise take them and refuse with a hint that alone won't help.
_NO_SAFE_FORMAT = {
    "statsmodels": "statsmodels saves results only with pickle (results.save), and pickled "
    "results carry their training data and run code when loaded",
}


def _refuse_without_safe_format(model: Any) -> None:
    top = type_module(model).split(".")[0]
    if top in _NO_SAFE_FORMAT:
        raise FlavorError(
            f"{type(model).__qualname__} ({top}) has no safe format to save it in: "
            f"{_NO_SAFE_FORMAT[top]}",
            fix="save the fitted parameters (e.g. results.params) as JSON and pack a custom "
            "class with load/predict that computes predictions from them; only if you "
            "trust the object, pass flavor='pickle', allow_pickle=True",
        )


# Methods that change the model when called: a package serving ``fit_transform`` would
# refit itself on every request and answer from whatever batch came last.
_MUTATING = ("fit", "partial_fit", "set_", "_")


def method_caller(model: Any, method: str) -> Callable[[Any], Any]:
    if not isinstance(method, str) or method.startswith(_MUTATING):
        raise UsageError(
            f"method {method!r} changes the model or is private; a package only predicts",
            where="method",
            fix="use a prediction method: predict, predict_proba, decision_function, "
            "transform, ...",
        )
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
