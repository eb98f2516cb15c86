"""scikit-learn estimators and Pipelines, saved with skops (no pickle).

Two things matter here:

- Only audited types are trusted at load: skops lists every type in the file that is
  not on its own safe list, and tiffin accepts those only when they are *defined* in
  scikit-learn, NumPy or SciPy (the audited families), plus types the packer declared.
  Anything else is refused and named before skops builds a single object.
- ``import skops.io`` builds its default trust list by walking every scikit-learn
  module (``sklearn.utils.all_estimators``): seconds of imports, and with torch
  installed it imports torch through scikit-learn's array-API shim (so MLflow lists
  torch for every scikit-learn model). tiffin does not need that list, because it
  audits every type itself, so for the length of that one import ``all_estimators``
  answers with nothing. skops then reports scikit-learn estimators as untrusted too,
  and tiffin's own audit decides, importing only the modules the file names.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import FlavorError, ManifestError, UnsafeArtifactError
from . import LoadContext, SaveContext, method_caller, mro_modules

NAME = "sklearn"
FRAMEWORKS = ("scikit-learn", "skops", "numpy", "scipy")
FILE = "artifacts/model.skops"
AUDITED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "scipy.special.")
AUDITED_TYPES = frozenset({"builtins.slice", "collections.OrderedDict", "collections.defaultdict"})
# functools.partial binds leading arguments, which a FunctionTransformer alone cannot
# (it calls func(X, **kw_args)): partial(numpy.savetxt, "/some/path") would write files.
# So it is trusted only around the functions scikit-learn itself wraps in one:
# HistGradientBoosting on a DataFrame with category columns (the default
# categorical_features="from_dtype") holds partial(check_array, dtype=..., ...).
PARTIAL_FUNCTIONS = frozenset({"sklearn.utils.validation.check_array"})
# Inside the audited packages, what reads or writes files, compiles or runs code: a
# FunctionTransformer could call it on the request (numpy.testing's runstring is exec).
DENIED_MODULES = (
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.format",
    "numpy.lib._npyio_impl", "numpy.lib.npyio", "numpy.lib._datasource", "sklearn.datasets",
    "sklearn.utils._testing", "sklearn.externals",
)  # fmt: skip
# Re-exported under "numpy" (array_function_dispatch sets __module__), found by identity.
DENIED_NUMPY = (
    "load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "fromregex", "memmap",
)  # fmt: skip
# Attributes that hold a memory address (``id()``) cached for the fitting process only:
# the vectorizers keep ``id(self.stop_words)`` to skip re-validating stop words. A loaded
# model never has the same ids, so the value is dropped (None: validated again when used,
# exactly as after any reload) and the same model always gives the same bytes.
VOLATILE_ATTRIBUTES = frozenset({"_stop_words_id"})


def skops_io() -> ModuleType:
    """``skops.io``, imported without walking every scikit-learn module (see above)."""
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    try:
        import sklearn.utils

        real = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = lambda *args, **kwargs: []
        try:
            import skops.io as sio
        finally:
            sklearn.utils.all_estimators = real
    except ImportError as exc:
        raise FlavorError(
            f"skops is needed for scikit-learn models: {exc}", fix="pip install 'tiffin[sklearn]'"
        ) from None
    return sio  # type: ignore[no-any-return]


def detect(obj: Any) -> bool:
    return any(m.startswith("sklearn.") for m in mro_modules(obj))


def detect_file(path: Any) -> bool:
    path = Path(path)
    if path.suffix != ".skops" or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"  # skops files are zip archives


def _defined_in_audited_module(typename: str) -> bool:
    """True when ``typename`` names an object *defined* in an audited package.

    A name under ``sklearn.`` can be a re-export (``sklearn.x._base.rmtree`` is
    ``shutil.rmtree``); the prefix alone would let such a function into a
    FunctionTransformer. So the object is resolved and its own ``__module__`` checked.
    """
    if not typename.startswith(AUDITED_PREFIXES):
        return False
    module_name, _, attr = typename.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return False
    home = getattr(obj, "__module__", None)
    if not isinstance(home, str) or _denied(obj, home, module_name):
        return False
    return home.startswith(tuple(p.rstrip(".") for p in AUDITED_PREFIXES))


def _denied(obj: Any, home: str, module_name: str) -> bool:
    import numpy as np

    if any(m == d or m.startswith(d + ".") for m in (home, module_name) for d in DENIED_MODULES):
        return True
    return any(obj is getattr(np, name, None) for name in DENIED_NUMPY)


def _partials(data: bytes) -> list[str]:
    """The functions that the skops file's functools.partial nodes wrap."""
    import io
    import json
    import zipfile

    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("__loader__") == "PartialNode":
                func = (node.get("content") or {}).get("func") or {}
                found.append(f"{func.get('__module__')}.{func.get('__class__')}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        walk(json.loads(archive.read("schema.json")))
    return found


def _audit(untrusted: Sequence[str], declared: Sequence[str], where: str, data: bytes) -> list[str]:
    def trusted(t: str) -> bool:
        if t == "functools.partial":
            return all(f in PARTIAL_FUNCTIONS for f in _partials(data))
        return t in AUDITED_TYPES or t in declared or _defined_in_audited_module(t)

    refused = [t for t in untrusted if not trusted(t)]
    if refused:
        raise UnsafeArtifactError(
            f"skops file holds type(s) outside the audited set: {', '.join(refused)}",
            where=where,
            fix="only scikit-learn, NumPy and SciPy types are trusted; declare others at pack "
            "time with trusted_types=[...] if you have audited them",
        )
    return list(untrusted)


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    sio = skops_io()
    if isinstance(model, (str, Path)):
        data = Path(model).read_bytes()
    else:
        method_caller(model, ctx.method)
        try:
            data = sio.dumps(model, compression=8)
        except Exception as exc:  # skops raises many types for unsupported objects
            raise FlavorError(
                f"skops cannot save this model: {exc}",
                fix="models holding non-scikit-learn objects need the custom flavor, or "
                "allow_pickle=True",
            ) from exc
    untrusted = _audit(sio.get_untrusted_types(data=data), ctx.trusted_types, "skops model", data)
    # A declared type from the user's own module (a FunctionTransformer's function, a
    # custom estimator) is rebuilt by importing that module at load: ship it in code/.
    from .custom import copy_code, module_sources

    declared = [t for t in untrusted if t in ctx.trusted_types]
    sources = module_sources(declared)
    if sources:
        copy_code(sources, ctx.code)
    _reproducible_zip(ctx.root / FILE, data)
    return {
        "file": FILE,
        "format": "skops",
        "method": ctx.method,
        "trusted_types": list(ctx.trusted_types),
    }


def _renumber(node: Any, ids: dict[int, int]) -> Any:
    """Replace skops's memory-address ids (``id(obj)``) with first-seen order numbers."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "__id__" and isinstance(value, int):
                out[key] = ids.setdefault(value, len(ids) + 1)
            elif key in VOLATILE_ATTRIBUTES and isinstance(value, dict) and "content" in value:
                out[key] = _renumber({**value, "content": "null"}, ids)
            elif key == "file" and isinstance(value, str) and value.split(".")[0].isdigit():
                stem, _, ext = value.partition(".")
                out[key] = f"{ids.setdefault(int(stem), len(ids) + 1)}.{ext}"
            else:
                out[key] = _renumber(value, ids)
        return out
    if isinstance(node, list):
        return [_renumber(v, ids) for v in node]
    return node


def _reproducible_zip(dest: Path, data: bytes) -> None:
    """Rewrite a skops file so the same model always gives the same bytes.

    skops names objects and array files by ``id()``, a memory address that changes
    from run to run, and stamps zip entries with the current time. Ids are renumbered
    in document order, entries sorted, and times fixed to 1980-01-01.
    """
    import io
    import json
    import zipfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        ids: dict[int, int] = {}
        schema = _renumber(json.loads(src.read("schema.json")), ids)
        members = {"schema.json": json.dumps(schema, indent=2).encode()}
        for name in src.namelist():
            if name == "schema.json":
                continue
            stem, _, ext = name.partition(".")
            renamed = f"{ids[int(stem)]}.{ext}" if stem.isdigit() and int(stem) in ids else name
            members[renamed] = src.read(name)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as out:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            out.writestr(info, members[name])


def load(ctx: LoadContext) -> Any:
    sio = skops_io()
    path = ctx.file()
    data = ctx.read_verified()  # the verified bytes, not the path: no swap in between
    declared = ctx.options.get("trusted_types") or []
    if not isinstance(declared, list) or not all(isinstance(t, str) for t in declared):
        # a string would match every substring of itself in `in` tests
        raise ManifestError(
            "runtime option 'trusted_types' must be a list of type names",
            where="tiffin.json: runtime.options.trusted_types",
        )
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:  # not a skops zip: refused before anything is built
        raise FlavorError(
            f"{path.name} is not a readable skops file: {exc}", where=str(path)
        ) from exc
    untrusted = _audit(found, declared, str(path), data)
    try:
        model = sio.loads(data, trusted=untrusted)
    except Exception as exc:
        raise FlavorError(f"skops could not load the model: {exc}", where=str(path)) from exc
    return _Method(model, str(ctx.options.get("method", "predict")))


class _Method:
    """Calls the packed method (predict, predict_proba, transform, ...)."""

    def __init__(self, model: Any, method: str) -> None:
        self.model = model
        self.predict = method_caller(model, method)
