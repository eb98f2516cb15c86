"""Judge every node of a skops file against the closed list, from its JSON alone.

skops rebuilds an object graph from ``schema.json``: each node names a loader (what
skops does with it) and a ``module.Class``. What a name may be depends on what its loader
does with it, so the judgement is per loader (see :mod:`tiffin.security.trusted_types`):

- ``ObjectNode`` makes an instance without calling its class: a name from ``TYPES``;
- ``ConstructorFromReduceNode`` and NumPy scalars call the name with data from the file:
  a name from ``CONSTRUCTORS`` only;
- ``FunctionNode`` and ``TypeNode`` return the named object itself, which a model may
  call later on its input: a function from ``FUNCTIONS``, a type from the types above;
- ``PartialNode`` is ``functools.partial`` around a ``FunctionNode`` (directly or through a
  cached reference) from ``PARTIAL_FUNCTIONS``; ``functools.partial`` under any other
  loader is refused, so the guard holds however the partial is written;
- ``TreeNode`` and ``LossNode`` call their class with arguments from the file: only the
  reviewed tree and loss classes (a tree's state is checked before it is built);
- ``MethodNode`` (a bound method) and ``OperatorFuncNode`` (``operator.methodcaller``
  and the like) could call any method of a trusted object by name: refused unless the
  packer declared them;
- containers, arrays, dtypes, random generators, sparse matrices: their exact types;
- an unknown loader is refused.

Nothing is imported here: the names are compared as strings, before skops or Python
sees them. Names the packer declared with ``trusted_types=`` pass under any loader but
the native ones, which keep their checks.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Collection
from typing import Any

from ..errors import UnsafeArtifactError
from .native_neighbors import METRIC_STATE_LENGTH, STATE_LENGTH, TREES
from .trusted_types import CONSTRUCTORS, FUNCTIONS, PARTIAL_FUNCTIONS, TYPES

_NUMPY_SCALARS = frozenset(n for n in CONSTRUCTORS if n.startswith("numpy.") and n != "numpy.dtype")
_PRIMITIVE_TYPES = frozenset(
    f"builtins.{t}"
    for t in ("str", "int", "float", "bool", "complex", "bytes", "list", "dict", "tuple", "set",
              "frozenset", "NoneType", "object", "slice", "range")
)  # fmt: skip
_SPARSE = frozenset(
    f"scipy.sparse._{fmt}.{fmt}_{kind}"
    for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
    for kind in ("matrix", "array")
)
_TREE = "sklearn.tree._tree.Tree"
_LOSS_MODULES = ("sklearn._loss._loss.", "sklearn.linear_model._sgd_fast.")
_FIXED: dict[str, frozenset[str]] = {
    # Bunch: a dict with attribute access (ensembles' named_estimators_), built empty
    "DictNode": frozenset(
        {"builtins.dict", "collections.OrderedDict", "sklearn.utils._bunch.Bunch"}
    ),
    "DefaultDictNode": frozenset({"collections.defaultdict"}),
    "ListNode": frozenset({"builtins.list"}),
    "SetNode": frozenset({"builtins.set", "builtins.frozenset"}),
    "TupleNode": frozenset({"builtins.tuple"}),
    "SliceNode": frozenset({"builtins.slice"}),
    "BytesNode": frozenset({"builtins.bytes"}),
    "BytearrayNode": frozenset({"builtins.bytearray"}),
    "NdArrayNode": frozenset({"numpy.ndarray"}) | _NUMPY_SCALARS,
    "MaskedArrayNode": frozenset({"numpy.ma.core.MaskedArray"}),
    "DTypeNode": frozenset({"numpy.dtype"}),
    "RandomStateNode": frozenset({"numpy.random.mtrand.RandomState"}),
    "RandomGeneratorNode": frozenset({"numpy.random._generator.Generator"}),
    "SparseMatrixNode": _SPARSE,
    "TreeNode": frozenset({_TREE}),
    "ConstructorFromReduceNode": frozenset(CONSTRUCTORS),
    "FunctionNode": frozenset(FUNCTIONS),
    "TypeNode": _PRIMITIVE_TYPES | _NUMPY_SCALARS | frozenset({"numpy.dtype"}) | TYPES,
    "ObjectNode": TYPES - {_TREE},
    "LossNode": frozenset(t for t in TYPES if t.startswith(_LOSS_MODULES)),
    "PartialNode": frozenset({"functools.partial"}),
}
# loaders whose name skops does not use to build anything
_NAMELESS = frozenset({"JsonNode", "CachedNode"})
# loaders that may call any method of an object by name: only if declared
_DECLARED_ONLY = frozenset({"MethodNode", "OperatorFuncNode"})
_NATIVE_LOADERS = frozenset({"TreeNode"})
# Compiled classes whose __setstate__ reads its tuple by position without a bounds check
# (a shorter tuple reads past it): their state must be a literal tuple of this length.
_STATE_TUPLES = {
    **{name: STATE_LENGTH for name in TREES},
    **{n: METRIC_STATE_LENGTH for n in TYPES if n.startswith("sklearn.metrics._dist_metrics.")},
}


def _refuse(where: str, what: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"skops file names {what}, which is not on tiffin's closed list of trusted types",
        where=where,
        fix="only scikit-learn's estimators and the reviewed types they hold load; if you "
        "have audited this type, declare it at pack time with trusted_types=[...]",
    )


def _content(node: dict[str, Any]) -> dict[str, Any]:
    content = node.get("content")
    return content if isinstance(content, dict) else {}


def _without_ids(node: Any) -> str:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("__id__", "file")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(node), sort_keys=True)


def _key(node_id: Any) -> str:
    return json.dumps(node_id, sort_keys=True)


# numpy's SeedSequence(entropy, spawn_key, pool_size, n_children_spawned) is called with
# these at load: a pool of 2**62 words would take the process's memory and time
_SEED_LIMITS = {"pool_size": (4, 64), "n_children_spawned": (0, 2**32)}


def _check_seed_sequence(node: dict[str, Any], at: str) -> None:
    seed = _content(node).get("seed_seq")
    fields = _content(seed) if isinstance(seed, dict) else {}
    for key, (low, high) in _SEED_LIMITS.items():
        field = fields.get(key)
        value = _json_value(field) if isinstance(field, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UnsafeArtifactError(
                f"random generator seed: {key} must be an integer in [{low}, {high}]",
                where=f"{at}.content.seed_seq.{key}",
            )
    spawn = fields.get("spawn_key")
    items = spawn.get("content") if isinstance(spawn, dict) else None
    if not isinstance(items, list) or len(items) > 64:
        raise UnsafeArtifactError(
            "random generator seed: spawn_key must be a short tuple",
            where=f"{at}.content.seed_seq.spawn_key",
        )


def _check_state_tuple(node: dict[str, Any], length: int, name: str, at: str) -> None:
    state = node.get("content")
    items = state.get("content") if isinstance(state, dict) else None
    if (
        not isinstance(state, dict)
        or state.get("__loader__") != "TupleNode"
        or f"{state.get('__module__')}.{state.get('__class__')}" != "builtins.tuple"
        or not isinstance(items, list)
        or len(items) != length
    ):
        raise UnsafeArtifactError(
            f"skops file gives {name} a state that is not a tuple of {length} entries; its "
            "compiled __setstate__ would read past it",
            where=f"{at}.content",
        )


def _json_value(node: dict[str, Any]) -> Any:
    if node.get("__loader__") != "JsonNode" or not isinstance(node.get("content"), str):
        return None
    try:
        return json.loads(node["content"])
    except ValueError:
        return None


def read_schema(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("schema.json"))


def judge(schema: Any, declared: Collection[str] = (), where: str = "schema.json") -> list[str]:
    """Refuse the first node the closed list does not allow; return every name the
    file uses (for skops's own check, which must then find nothing left)."""
    declared = frozenset(declared)
    nodes: dict[Any, list[dict[str, Any]]] = {}  # skops may reuse an id for equal objects
    found: set[str] = set()
    partials: list[tuple[dict[str, Any], str]] = []
    stack: list[tuple[Any, str]] = [(schema, "")]
    wrapped: set[int] = set()  # the func nodes of partials, judged against PARTIAL_FUNCTIONS
    while stack:
        node, path = stack.pop()
        if isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        stack.extend((v, f"{path}.{k}") for k, v in node.items() if k != "__loader__")
        if "__loader__" not in node:
            continue
        at = f"{where}: {path.lstrip('.') or 'root'}"
        loader, module, cls = node.get("__loader__"), node.get("__module__"), node.get("__class__")
        if not all(isinstance(v, str) for v in (loader, module, cls)):
            raise UnsafeArtifactError(
                "skops node without a string loader, module and class", where=at
            )
        name = f"{module}.{cls}"
        if "__id__" in node and loader != "CachedNode":
            same = nodes.setdefault(_key(node["__id__"]), [])
            if same and _without_ids(same[0]) != _without_ids(node):
                # skops builds the first node with an id and reuses it for every later
                # one (the same object written twice; only the ids and array file names
                # of the temporaries inside differ): a value judged in one place must not
                # be built from another (arrays are checked once built, not here)
                raise UnsafeArtifactError(
                    f"skops node id {node['__id__']!r} names two different objects", where=at
                )
            same.append(node)
        if loader == "RandomGeneratorNode":
            _check_seed_sequence(node, at)
        if loader == "ObjectNode" and name in _STATE_TUPLES:
            _check_state_tuple(node, _STATE_TUPLES[name], name, at)
        if loader in _NAMELESS:
            continue
        if loader in _DECLARED_ONLY:
            func = _content(node).get("func") if loader == "MethodNode" else None
            full = f"{name}.{func}" if isinstance(func, str) else name
            if full not in declared:
                raise _refuse(at, f"{full} through {loader}")
            found.add(full)
            continue
        allowed = _FIXED.get(str(loader))
        if loader == "FunctionNode" and id(node) in wrapped:
            allowed = PARTIAL_FUNCTIONS
        if allowed is None:
            raise _refuse(at, f"the loader {loader!r} (for {name})")
        if name not in allowed and (loader in _NATIVE_LOADERS or name not in declared):
            if id(node) in wrapped:
                raise _refuse(at, f"functools.partial around {name}")
            raise _refuse(at, f"{name} through {loader}")
        if loader == "PartialNode":
            partials.append((node, at))
            func = _content(node).get("func")
            if isinstance(func, dict):
                wrapped.add(id(func))
        found.add(name)
    for node, at in partials:
        func = _content(node).get("func")
        targets: list[Any] = [func]
        if isinstance(func, dict) and func.get("__loader__") == "CachedNode":
            # whichever node skops met first under that id is the one it reuses: all must do
            targets = list(nodes.get(_key(func.get("__id__")), [])) or [None]
        for target in targets:
            ok = isinstance(target, dict) and target.get("__loader__") == "FunctionNode"
            name = f"{target['__module__']}.{target['__class__']}" if ok else "something else"  # type: ignore[index]
            if not ok or (
                name not in PARTIAL_FUNCTIONS and f"functools.partial({name})" not in declared
            ):
                raise _refuse(at, f"functools.partial around {name}")
    return sorted(found)
