"""scikit-learn estimators and Pipelines, saved with skops (no pickle).

Three things matter here:

- Only types on tiffin's closed list load (:mod:`tiffin.security.trusted_types`), each
  judged by what skops would do with it (:mod:`tiffin.security.skops_audit`), from the
  file's JSON, before skops imports or builds anything. ``trusted_types=`` at pack time
  extends the list for that package only.
- State that C code indexes unchecked (a decision tree's nodes, HistGradientBoosting's
  predictors, a spline's knots) is checked before that code sees it
  (:mod:`tiffin.security.native_trees`): a ``Tree`` before it is built, the rest on the
  loaded model before it predicts.
- ``import skops.io`` builds its default trust list by walking every scikit-learn
  module (``sklearn.utils.all_estimators``): seconds of imports, and with torch
  installed it imports torch through scikit-learn's array-API shim (so MLflow lists
  torch for every scikit-learn model). tiffin passes skops the exact names it judged,
  so for the length of that one import ``all_estimators`` answers with nothing.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import FlavorError, ManifestError, TiffinError
from ..schema.signature import Signature
from ..security import native_trees, skops_audit
from . import LoadContext, SaveContext, method_caller, mro_modules
from . import get as get_flavor

NAME = "sklearn"
FRAMEWORKS = ("scikit-learn", "skops", "numpy", "scipy")
COST_FOLLOWS_INPUT_SIZE = True
FILE = "artifacts/model.skops"
# Attributes that hold a memory address (``id()``) cached for the fitting process only:
# the vectorizers keep ``id(self.stop_words)`` to skip re-validating stop words. A loaded
# model never has the same ids, so the value is dropped (None: validated again when used,
# exactly as after any reload) and the same model always gives the same bytes.
VOLATILE_ATTRIBUTES = frozenset({"_stop_words_id"})
# Birch's clustering-feature tree (``root_``, ``dummy_leaf_``: linked nodes that skops
# cannot write) only serves ``partial_fit``; predict and transform read
# ``subcluster_centers_`` and ``subcluster_labels_``. A packed Birch keeps those, and a
# ``partial_fit`` after loading starts a new tree.
_BIRCH_TRAINING_STATE = ("root_", "dummy_leaf_")


def skops_io() -> ModuleType:
    """``skops.io``, imported without walking every scikit-learn module (see above), with
    its tree loader checking a tree's state before building it."""
    if "skops.io" in sys.modules:
        _install_hooks()
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
    _install_hooks()
    return sio  # type: ignore[no-any-return]


_hooked = False


def _install_hooks() -> None:
    """skops's ``TreeNode`` calls ``Tree(*args).__setstate__(state)``, whose C code
    copies ``node_count`` nodes from an array of any length. The node class is swapped
    (process-wide, for every version of the node) for one that checks first."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    from sklearn.cluster import Birch
    from skops.io import _audit, _sklearn, _utils

    class CheckedTreeNode(_sklearn.TreeNode):  # type: ignore[misc, name-defined]
        def _construct(self) -> Any:
            native_trees.check_tree_state(self.args.construct(), self.attrs.construct())
            return super()._construct()

    for key, cls in list(_audit.NODE_TYPE_MAPPING.items()):
        if cls is _sklearn.TreeNode:
            _audit.NODE_TYPE_MAPPING[key] = CheckedTreeNode

    def birch_state(obj: Any, save_context: Any) -> dict[str, Any]:
        from skops.io._general import object_get_state

        light = copy.copy(obj)
        for attr in _BIRCH_TRAINING_STATE:
            light.__dict__.pop(attr, None)
        return object_get_state(light, save_context)  # type: ignore[no-any-return]

    _utils._get_state.register(Birch)(birch_state)


def dump_skops(model: Any) -> bytes:
    """The skops bytes of ``model`` (any error skops raises is the caller's to word)."""
    data: bytes = skops_io().dumps(model, compression=8)
    return data


def frameworks(options: Mapping[str, Any]) -> tuple[str, ...]:
    """scikit-learn's, and those of the framework steps saved in their own formats."""
    found = list(FRAMEWORKS)
    for step in options.get("steps") or ():
        for name in get_flavor(str(step.get("flavor"))).FRAMEWORKS:
            if name not in found:
                found.append(name)
    return tuple(found)


def detect(obj: Any) -> bool:
    return any(m.startswith("sklearn.") for m in mro_modules(obj))


def detect_file(path: Any) -> bool:
    path = Path(path)
    if path.suffix != ".skops" or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"  # skops files are zip archives


def _judge(data: bytes, declared: Any, where: str) -> list[str]:
    try:
        schema = skops_audit.read_schema(data)
    except Exception as exc:  # not a zip, no schema.json, not JSON: nothing is built
        raise FlavorError(f"not a readable skops file: {exc}", where=where) from None
    return skops_audit.judge(schema, declared, where=f"{where}: schema.json")


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    if isinstance(model, (str, Path)):
        data = Path(model).read_bytes()
    else:
        method_caller(model, ctx.method)
        from .sklearn_composite import split

        stripped, steps = split(model, ctx)
        try:
            data = dump_skops(stripped)
        except Exception as exc:  # skops raises many types for unsupported objects
            raise FlavorError(
                f"skops cannot save this model: {exc}",
                fix="a model holding objects skops cannot write needs the custom flavor "
                "(your own load/predict over files you choose)",
            ) from exc
    names = _judge(data, ctx.trusted_types, "skops model")
    # A declared type from the user's own module (a FunctionTransformer's function, a
    # custom estimator) is rebuilt by importing that module at load: ship it in code/.
    from ..logic.sources import copy_code, module_sources

    declared = [t for t in names if t in ctx.trusted_types]
    sources = module_sources(declared)
    if sources:
        copy_code(sources, ctx.code)
    _reproducible_zip(ctx.root / FILE, data)
    options: dict[str, Any] = {
        "file": FILE,
        "format": "skops",
        "method": ctx.method,
        "trusted_types": list(ctx.trusted_types),
    }
    if steps:
        options["steps"] = steps
    return options


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


def load_bytes(data: bytes, declared: Sequence[str] = (), where: str = "model.skops") -> Any:
    """The model in skops ``data``: judged, built, and its native state checked."""
    names = _judge(data, declared, where)
    try:
        model = skops_io().loads(data, trusted=names)
        native_trees.check_model(model)
    except TiffinError:
        raise
    except Exception as exc:  # whatever a malformed file makes skops or the walk raise
        raise FlavorError(f"skops could not load the model: {exc}", where=where) from exc
    return model


def load(ctx: LoadContext) -> Any:
    path = ctx.file()
    data = ctx.read_verified()  # the verified bytes, not the path: no swap in between
    declared = ctx.options.get("trusted_types") or []
    if not isinstance(declared, list) or not all(isinstance(t, str) for t in declared):
        # a string would match every substring of itself in `in` tests
        raise ManifestError(
            "runtime option 'trusted_types' must be a list of type names",
            where="tiffin.json: runtime.options.trusted_types",
        )
    model = load_bytes(data, declared, str(path))
    if "steps" in ctx.options:
        from .sklearn_composite import join

        model = join(model, ctx.options["steps"], ctx)
    return _Method(model, str(ctx.options.get("method", "predict")))


def refine_signature(model: Any, signature: Signature) -> Signature:
    """String columns the fitted model takes with gaps become nullable, whatever the example.

    A five-row example without gaps says nothing about a pipeline that imputes them: an
    imputer, or an encoder that learned a missing category or ignores unknown ones, at
    the first place a column goes decides (docs/flavors.md).
    """
    if signature.input_kind != "dataframe":
        return signature
    from .sklearn_composite import nullable_columns

    inputs = [(s.name, s.dtype) for s in signature.inputs]
    found = nullable_columns(getattr(model, "model", model), inputs)
    strict = {s.name for s in signature.inputs if not s.nullable}
    for reason in sorted(set(found.values())):
        names = [c for c, r in found.items() if r == reason and c in strict]
        if names:
            signature = signature.with_nullable(names, reason)
    return signature


class _Method:
    """Calls the packed method (predict, predict_proba, transform, ...)."""

    def __init__(self, model: Any, method: str) -> None:
        self.model = model
        self.predict = method_caller(model, method)
