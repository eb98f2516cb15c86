"""The gadget corpus: every public function of the audited modules that a reduce node could
name, and every class there with its own ``__setstate__``/``__reduce__``, tried through
skops and through the pickle path.

Each must be refused (a function a model may *hold*, such as a NumPy ufunc, may appear as
a reference, but is never called at load). The arguments are a path in an empty folder
and the address of a listening socket on 127.0.0.1: afterwards the folder is still empty
and nothing has connected.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import pkgutil
import socket
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tiffin
from tiffin.flavors.sklearn import load_bytes
from tiffin.security.trusted_types import FUNCTIONS, TYPES
from tiffin.security.unpickler import safe_loads

AUDITED = ("numpy", "scipy.sparse", "scipy.special", "sklearn")
# importing these is itself a side effect (sklearn.experimental rewrites sklearn's
# namespace) or needs what is not installed; their names are still refused, by name
_SKIP_MODULES = (
    "sklearn.experimental",
    "numpy.distutils",
    "numpy.f2py.tests",
    "numpy._pyinstaller",
)
_STATE_METHODS = ("__setstate__", "__reduce__", "__reduce_ex__", "__setstate_cython__")


def _modules(private: bool) -> Iterator[Any]:
    for root in AUDITED:
        module = importlib.import_module(root)
        yield module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # walking imports packages, deprecated ones too
            infos = list(
                pkgutil.walk_packages(module.__path__, root + ".", onerror=lambda name: None)
            )
        for info in infos:
            parts = info.name.split(".")
            if any(p in ("tests", "conftest", "__main__") for p in parts):
                continue
            if not private and any(p.startswith("_") for p in parts):
                continue
            if info.name.startswith(_SKIP_MODULES):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    yield importlib.import_module(info.name)
            except (Exception, SystemExit):  # an optional dependency missing: nothing to name
                continue


def _corpus() -> tuple[set[str], dict[str, type]]:
    functions: set[str] = set()
    classes: dict[str, type] = {}
    # classes from every module, private ones included (Cython types live there)
    for module in _modules(private=True):
        for attr, obj in list(vars(module).items()):
            if inspect.isclass(obj) and not attr.startswith("__"):
                home = f"{obj.__module__}.{obj.__qualname__}"
                if home.startswith(AUDITED) and any(m in vars(obj) for m in _STATE_METHODS):
                    classes[home] = obj
    for module in _modules(private=False):
        for attr in dir(module):
            if attr.startswith("_"):
                continue
            try:
                obj = getattr(module, attr)
            except Exception:
                continue
            if callable(obj) and not inspect.isclass(obj) and not inspect.ismodule(obj):
                functions.add(f"{module.__name__}.{attr}")
                home_module = getattr(obj, "__module__", None)
                name = getattr(obj, "__name__", None)
                if isinstance(home_module, str) and isinstance(name, str):
                    functions.add(f"{home_module}.{name}")
    return functions, classes


@pytest.fixture(scope="module")
def corpus() -> tuple[set[str], dict[str, type]]:
    return _corpus()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    yield sock
    sock.close()


def _node(loader: str, name: str, content: Any) -> dict[str, Any]:
    module, _, cls = name.rpartition(".")
    node = {"__loader__": loader, "__module__": module, "__class__": cls, "__id__": 1}
    if loader in ("LossNode", "TreeNode"):
        node["__reduce__"] = {"args": content}
        node["content"] = {"__loader__": "DictNode", "__module__": "builtins",
                           "__class__": "dict", "content": {}, "__id__": 3}  # fmt: skip
    elif content is not None:
        node["content"] = content
    return node


def _skops(root: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", json.dumps({**root, "protocol": 2, "_skops_version": "0.16.0"}))
    return buf.getvalue()


def _json(value: Any, node_id: int) -> dict[str, Any]:
    return {"__loader__": "JsonNode", "__module__": "builtins", "__class__": "str",
            "content": json.dumps(value), "is_json": True, "__id__": node_id}  # fmt: skip


def _args(trip: Path, port: int) -> dict[str, Any]:
    return {"__loader__": "TupleNode", "__module__": "builtins", "__class__": "tuple",
            "content": [_json(str(trip), 10), _json("127.0.0.1", 11), _json(port, 12)],
            "__id__": 2}  # fmt: skip


def _state(trip: Path, port: int) -> dict[str, Any]:
    return {"__loader__": "DictNode", "__module__": "builtins", "__class__": "dict",
            "content": {"path": _json(str(trip), 10), "address": _json(["127.0.0.1", port], 11)},
            "__id__": 2}  # fmt: skip


def _pickle_call(name: str, trip: Path, port: int) -> bytes:
    module, _, attr = name.rpartition(".")
    return f"c{module}\n{attr}\n(V{trip}\nV127.0.0.1\nI{port}\ntR.".encode()


def _pickle_state(name: str, trip: Path, port: int) -> bytes:
    module, _, attr = name.rpartition(".")
    return (
        f"c{module}\n{attr}\n)\x81}}(Vpath\nV{trip}\nVaddress\n(V127.0.0.1\nI{port}\ntub."
    ).encode()


def _refused(data: bytes, loader: Any) -> bool:
    try:
        loader(data)
    except tiffin.TiffinError:
        return True
    return False


def _nothing_happened(folder: Path, sock: socket.socket) -> None:
    assert list(folder.iterdir()) == [], "a gadget wrote a file"
    with pytest.raises(BlockingIOError):
        sock.accept()  # nothing connected


def test_every_function_a_reduce_node_could_name_is_refused(
    tmp_path: Path, listener: socket.socket, corpus: tuple[set[str], dict[str, type]]
) -> None:
    functions, _ = corpus
    folder = tmp_path / "tripwire"
    folder.mkdir()
    trip, port = folder / "written", listener.getsockname()[1]
    assert len(functions) > 2000
    held = 0
    for name in sorted(functions):
        for loader in ("ConstructorFromReduceNode", "LossNode", "TreeNode", "ObjectNode"):
            node = _node(loader, name, _args(trip, port) if loader != "ObjectNode" else None)
            assert _refused(_skops(node), load_bytes), (loader, name)
        # as a reference (what a FunctionTransformer holds): only the reviewed list
        if name in FUNCTIONS:
            held += 1
        else:
            assert _refused(_skops(_node("FunctionNode", name, None)), load_bytes), name
        assert _refused(_pickle_call(name, trip, port), safe_loads), name
    _nothing_happened(folder, listener)
    print(
        f"functions named through 4 skops call forms, a reference and a pickle REDUCE: "
        f"{len(functions)}; {len(functions) - held} refused everywhere, {held} reviewed "
        f"ones held as references only, their calls refused"
    )


def test_every_class_with_custom_state_is_refused_unless_reviewed(
    tmp_path: Path, listener: socket.socket, corpus: tuple[set[str], dict[str, type]]
) -> None:
    _, classes = corpus
    folder = tmp_path / "tripwire"
    folder.mkdir()
    trip, port = folder / "written", listener.getsockname()[1]
    unreviewed = sorted(set(classes) - TYPES)
    assert any(n.startswith("sklearn.callback.") for n in unreviewed)
    for name in unreviewed:
        node = _node("ObjectNode", name, _state(trip, port))
        assert _refused(_skops(node), load_bytes), name
        assert _refused(_pickle_state(name, trip, port), safe_loads), name
    _nothing_happened(folder, listener)
    print(
        f"classes with their own __setstate__/__reduce__: {len(classes)}; refused through "
        f"skops and pickle: {len(unreviewed)}; on the reviewed list: {len(classes) - len(unreviewed)}"
    )


def test_nothing_a_file_names_is_imported_before_it_is_judged() -> None:
    assert "this" not in sys.modules  # importing it prints; the name stands for any module
    for loader in ("ObjectNode", "FunctionNode", "TypeNode", "ConstructorFromReduceNode"):
        assert _refused(_skops(_node(loader, "this.s", None)), load_bytes)
    assert _refused(b"cthis\ns\n.", safe_loads)
    assert "this" not in sys.modules


def _partial(func: dict[str, Any]) -> dict[str, Any]:
    empty = {"__loader__": "TupleNode", "__module__": "builtins", "__class__": "tuple",
             "content": [], "__id__": 20}  # fmt: skip
    return {"__loader__": "PartialNode", "__module__": "functools", "__class__": "partial",
            "__id__": 21, "content": {"func": func, "args": empty, "kwds": empty,
                                      "namespace": empty}}  # fmt: skip


@pytest.mark.parametrize(
    "encoding",
    ["partial_node", "cached_func", "method_func", "object_node", "constructor", "type_node"],
)
def test_partial_guard_holds_however_encoded(encoding: str) -> None:
    savetxt = _node("FunctionNode", "numpy.savetxt", None)
    savetxt["__id__"] = 30
    root = {
        "partial_node": _partial(savetxt),
        # the wrapped function given as a reference to a node met elsewhere
        "cached_func": {
            "__loader__": "ListNode",
            "__module__": "builtins",
            "__class__": "list",
            "__id__": 40,
            "content": [
                savetxt,
                _partial(
                    {"__loader__": "CachedNode", "__module__": "x", "__class__": "y", "__id__": 30}
                ),
            ],
        },
        "method_func": _partial(
            {
                "__loader__": "MethodNode",
                "__module__": "numpy",
                "__class__": "ndarray",
                "__id__": 50,
                "content": {"func": "tofile", "obj": _node("NdArrayNode", "numpy.ndarray", None)},
            }
        ),
        "object_node": _node("ObjectNode", "functools.partial", None),
        "constructor": _node("ConstructorFromReduceNode", "functools.partial", None),
        "type_node": _node("TypeNode", "functools.partial", None),
    }[encoding]
    with pytest.raises(tiffin.UnsafeArtifactError, match="closed list"):
        load_bytes(_skops(root))
    with pytest.raises(tiffin.UnsafeArtifactError):
        safe_loads(b"cfunctools\npartial\n(cnumpy\nsavetxt\nVx\ntR.")
