"""An allow-list unpickler: every global a pickle names must be on the list, or nothing loads.

Deny-lists (picklescan, modelscan) miss what they did not think of: a pickle calling
``distutils.spawn.spawn`` passes both. Here the question is inverted: a global is
resolved only if it is

- one of NumPy's array and scalar reconstruction functions and types (a fixed list:
  ``numpy.memmap`` is a class in NumPy too, and it writes files);
- a class named, exactly, on tiffin's closed list of scikit-learn types
  (:mod:`tiffin.security.trusted_types`, the same list the skops path uses), or the
  Cython unpickle helper of one (``__pyx_unpickle_<Name>``: it makes that class and sets
  its typed state); functions are not, since REDUCE would call them with
  attacker-chosen arguments, and nothing is trusted for the module it lives in
  (scikit-learn 1.9's callbacks, whose state setter connects to an address from the
  pickle, are scikit-learn classes too);
- a class defined in the package's own ``code/`` folder;
- a name the packer declared with ``trusted_types=``.

Two gates, both on the allow-list:

1. Before anything runs, the whole stream is parsed (``pickletools.genops``) with the
   unpickler's stack, mark stack and memo replayed symbolically, so every global is
   known up front: the text names of GLOBAL and INST, the two strings a STACK_GLOBAL
   (protocol 4+) takes from the stack, directly or through the memo, and the names an
   EXT1/2/4 code stands for in :mod:`copyreg`'s registry. A STACK_GLOBAL whose operands
   are not plain strings, a persistent id, or a stream that does not parse is refused.
2. While loading, ``find_class`` (which the unpickler calls for GLOBAL, INST,
   STACK_GLOBAL and the EXT codes alike; OBJ, REDUCE, NEWOBJ and BUILD can only use
   what it returned) checks the same list again and resolves the name itself.

BUILD is guarded too: it sets attributes on whatever object is below it on the stack,
and pointed at a class or function instead of an instance it would rewrite that class
for the whole process (``csr_matrix.__repr__``, ``RBF.__call__``, a function's
``__defaults__``), and with it every other model in the process. The C unpickler gives
no hook for one opcode, so loading uses :mod:`pickle`'s pure-Python unpickler, whose
BUILD is wrapped (about 4 times slower on large arrays; pickle is the last resort).

Every name is judged as text before anything is imported (importing a module is already
a side effect: ``sklearn.experimental``'s imports rewrite scikit-learn's namespace).
Native state that C code trusts is checked before that code runs: a ``Tree``'s
constructor arguments before REDUCE or NEWOBJ, its nodes before BUILD
(:mod:`tiffin.security.native_trees`), a ``KDTree``'s, ``BallTree``'s or distance
metric's arrays before BUILD (:mod:`tiffin.security.native_neighbors`).

Python 2 names (``__builtin__``, ``copy_reg``) are mapped to their Python 3 homes the
way :mod:`pickle` does, and the mapped name is both the one checked and the one
resolved. The error names the global.
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import importlib
import io
import pickle
import pickletools
import sys
import sysconfig
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UnsafeArtifactError
from . import native_neighbors, native_trees, numpy_guard
from .trusted_types import CONSTRUCTORS, FUNCTIONS, PICKLE_CONSTRUCTORS, TYPES

SAFE_GLOBALS = frozenset({
    "builtins.set", "builtins.frozenset", "builtins.dict", "builtins.list", "builtins.tuple",
    "builtins.complex", "builtins.slice", "builtins.range", "builtins.bytearray",
    "builtins.object", "builtins.float", "builtins.int", "builtins.str", "builtins.bytes",
    "builtins.bool",
    "collections.OrderedDict", "collections.defaultdict", "collections.Counter", "collections.deque",
    "copyreg._reconstructor", "copyreg.__newobj__",
    "_codecs.encode",  # protocol 0-2 write bytes as _codecs.encode(text, "latin1")
    "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__generator_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM", "numpy.random._mt19937.MT19937",
    "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
})  # fmt: skip
_TREE = "sklearn.tree._tree.Tree"
# Cython classes pickle through a module-level helper that makes the class and sets its
# typed state (``__pyx_unpickle_CyHalfSquaredError``): allowed for listed classes only.
_PYX_HELPERS = frozenset(
    f"{name.rpartition('.')[0]}.__pyx_unpickle_{name.rpartition('.')[2]}" for name in TYPES
)
# BUILD may only set the state of an instance, never of these
_NOT_INSTANCES = (
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.ModuleType,
)

_FIX = (
    "only NumPy, audited framework classes, the package's own code/ classes and declared "
    "trusted_types load; if you trust this type, pass its source with code= or declare it "
    "at pack time with trusted_types=['module.Name']"
)


def canonical(module: str, name: str) -> tuple[str, str]:
    """The (module, name) :mod:`pickle` would import for a name, Python 2 names mapped."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        mapped: tuple[str, str] = _compat_pickle.NAME_MAPPING[(module, name)]
        return mapped
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


# typeshed knows only the C class; the pure-Python one is what has a BUILD to wrap
_PyUnpickler: Any = pickle._Unpickler  # type: ignore[attr-defined]


class AllowListUnpickler(_PyUnpickler):  # type: ignore[misc]
    """The pure-Python unpickler, with ``find_class`` on the allow-list and BUILD guarded."""

    dispatch = dict(_PyUnpickler.dispatch)

    def __init__(
        self,
        file: Any,
        *,
        code_modules: Iterable[str] = (),
        trusted: Iterable[str] = (),
        code_prefix: str = "",
    ) -> None:
        """``code_modules``: the top-level names of the package's ``code/`` folder;
        ``code_prefix``: the private namespace its modules are imported under, if any."""
        super().__init__(file)
        self.code_modules = frozenset(code_modules)
        self.code_prefix = code_prefix
        self.trusted = frozenset(trusted)
        self._globals: dict[int, str] = {}  # id -> name of every object find_class returned
        self._built: set[int] = set()  # ids of the dtypes BUILD has set
        self._held_only: dict[int, str] = {}  # functions a model may hold but not call here

    def load_build(self) -> None:
        target = self.stack[-2] if len(self.stack) >= 2 else None
        name = self._globals.get(id(target))
        if name is not None or isinstance(target, _NOT_INSTANCES):
            what = name or f"{type(target).__name__} {getattr(target, '__qualname__', '')}"
            raise UnsafeArtifactError(
                f"pickle sets attributes of {what.strip()} itself (BUILD on a class or "
                "function, not an instance), which would change it for the whole process",
                fix="do not load it",
            )
        dtype = numpy_guard.is_dtype(target)
        if dtype:
            holders = 1 + sum(v is target for v in self.memo.values())
            numpy_guard.check_dtype_build(target, holders, self._built)
        if _is_tree(target):
            tree: Any = target
            native_trees.check_tree_state(
                (tree.n_features, tree.n_classes, tree.n_outputs), self.stack[-1]
            )
        kind = f"{type(target).__module__}.{type(target).__qualname__}"
        if kind in native_neighbors.TREES:
            native_neighbors.check_tree_state(kind, self.stack[-1])
        elif native_neighbors.is_metric(target):
            native_neighbors.check_metric_state(kind, self.stack[-1], kind)
        super().load_build()
        if dtype:
            numpy_guard.check_dtype_state(target)
        numpy_guard.check_rng_state(target)

    dispatch[pickle.BUILD[0]] = load_build

    # every way a pickle calls something: REDUCE, NEWOBJ, NEWOBJ_EX, and OBJ/INST
    def _check_held_only(self, func: Any) -> None:
        name = self._held_only.get(id(func))
        if name is not None:
            raise UnsafeArtifactError(
                f"pickle calls {name} while loading; a model may hold it, never call it here",
                fix="do not load it",
            )

    def load_reduce(self) -> None:
        func, args = self.stack[-2], self.stack[-1]
        self._check_held_only(func)
        numpy_guard.check_call(func, args)
        if func is copyreg.__newobj__ and isinstance(args, tuple) and args:  # type: ignore[attr-defined]
            func, args = args[0], args[1:]
        _check_tree_args(func, args)
        super().load_reduce()

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self) -> None:
        numpy_guard.check_call(self.stack[-2], ())
        _check_tree_args(self.stack[-2], self.stack[-1])
        super().load_newobj()

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        numpy_guard.check_call(self.stack[-3], ())
        _check_tree_args(self.stack[-3], self.stack[-2])
        super().load_newobj_ex()

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _instantiate(self, klass: Any, args: Any) -> None:
        self._check_held_only(klass)
        numpy_guard.check_call(klass, args)
        _check_tree_args(klass, args)
        super()._instantiate(klass, args)

    def allowed(self, module: str, name: str) -> bool:
        module, name = canonical(module, name)
        full = f"{module}.{name}"
        if full in SAFE_GLOBALS or full in self.trusted or full in _PYX_HELPERS:
            return True
        if full in CONSTRUCTORS or full in PICKLE_CONSTRUCTORS or full in FUNCTIONS:
            return True  # a function from FUNCTIONS is held, never called (see _check_call)
        if full in TYPES:
            # judged by name; then it must really be that class, defined where it is named
            obj = _resolve(module, name)
            return isinstance(obj, type) and f"{obj.__module__}.{obj.__qualname__}" == full
        if module.split(".")[0] in self.code_modules:
            obj = _resolve(module, name)
            if not isinstance(obj, type):
                return False  # only classes: a function would be called with chosen arguments
            home = str(getattr(obj, "__module__", "") or "")
            if self.code_prefix and home.startswith(self.code_prefix) and "." in home:
                # defined in the package's code/, imported under its private namespace:
                # judged by its name inside code/
                home = home.split(".", 1)[1]
            # a code/ module named like a standard or installed one (code/subprocess.py,
            # code/logging.py) must not let in that module's classes (Popen, FileHandler)
            return home.split(".")[0] in self.code_modules and not _installed(home)
        if module.startswith(("numpy.dtypes", "numpy.dtype")):
            obj = _resolve(module, name)
            import numpy as np

            return isinstance(obj, type) and issubclass(obj, np.dtype)
        return False

    def find_class(self, module: str, name: str) -> Any:
        if not self.allowed(module, name):
            raise _refusal(module, name)
        obj = _resolve(*canonical(module, name))
        if obj is None:
            raise UnsafeArtifactError(
                f"pickle refers to {module}.{name}, which does not exist here", fix=_FIX
            )
        self._globals[id(obj)] = f"{module}.{name}"
        if f"{module}.{name}" in FUNCTIONS and f"{module}.{name}" not in self.trusted:
            self._held_only[id(obj)] = f"{module}.{name}"
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeArtifactError("pickle uses a persistent id, which tiffin never resolves")


def _is_tree(obj: Any) -> bool:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}" == _TREE


def _check_tree_args(func: Any, args: Any) -> None:
    """``Tree(n_features, n_classes, n_outputs)`` reads ``n_outputs`` entries of
    ``n_classes`` in C: the arguments are checked before the call."""
    if isinstance(func, type) and f"{func.__module__}.{func.__qualname__}" == _TREE:
        native_trees.check_tree_args(args)


def _refusal(module: str, name: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(
        f"pickle refers to {module}.{name}, which is not on the allow-list", fix=_FIX
    )


def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple(Path(paths[k]).resolve() for k in keys if k in paths)


def _installed(module: str) -> bool:
    """True when ``module`` was imported from the standard library or an installed
    distribution (or is built in), so it is not the package's own code."""
    file = getattr(sys.modules.get(module), "__file__", None)
    if not file:
        return True
    path = Path(file).resolve()
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return True
    return any(path.is_relative_to(root) for root in _installed_roots())


def _resolve(module: str, name: str) -> Any:
    """The object a global names, or None (refused) if importing or looking it up fails."""
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj
    except Exception:  # a module that fails to import, whatever it raises, is refused
        return None


class _Mark:
    """Stands for anything the scan does not track (every value but a string)."""


class _Global(_Mark):
    """A global itself (a class or function), which BUILD must never target."""

    def __init__(self, name: str) -> None:
        self.name = name


_ANY = _Mark()
_GLOBAL_OPS = frozenset({"GLOBAL", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4"})
_STRING_OPS = frozenset(
    {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
    | {"STRING", "BINSTRING", "SHORT_BINSTRING"}
)


def _malformed(why: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(f"the pickle stream is malformed: {why}", fix="do not load it")


def _text_global(data: bytes, pos: int) -> tuple[str, str]:
    """The module and name of the GLOBAL or INST at ``pos``, read as the unpickler reads them.

    ``pickletools`` hands both lines over joined by a space, so a crafted module name
    holding a space (``"os system"`` on one line, ``"x"`` on the next) would be split at
    the wrong place and the scan would report a global the unpickler never asks for; the
    unpickler takes each line whole, less its newline. (``genops`` has already refused
    lines that are not ASCII, so decoding cannot fail.)
    """
    module_end = data.index(b"\n", pos + 1)
    name_end = data.index(b"\n", module_end + 1)
    return data[pos + 1 : module_end].decode(), data[module_end + 1 : name_end].decode()


def scan(data: bytes) -> list[tuple[str, str]]:
    """Every global the pickle would import, in order, found without running anything.

    Replays the unpickler's stack, mark stack and memo with strings as the only values
    tracked, which is all a STACK_GLOBAL may legally consume. Anything that cannot be
    resolved this way is refused rather than guessed.
    """
    found: list[tuple[str, str]] = []
    stack: list[Any] = []
    marks: list[list[Any]] = []
    memo: dict[int, Any] = {}

    def pop(n: int) -> list[Any]:
        if n > len(stack):
            raise _malformed("stack underflow")
        taken = stack[len(stack) - n :]
        del stack[len(stack) - n :]
        return taken

    try:
        for opcode, arg, pos in pickletools.genops(io.BytesIO(data)):
            op = opcode.name
            before = opcode.stack_before
            if op in ("GLOBAL", "INST"):
                assert pos is not None  # genops reports positions for a BytesIO
                found.append(_text_global(data, pos))
            elif op in ("EXT1", "EXT2", "EXT4"):
                key = copyreg._inverted_registry.get(arg)  # type: ignore[attr-defined]
                if key is None:
                    raise _malformed(f"extension code {arg} is not registered")
                found.append((str(key[0]), str(key[1])))
            elif op in ("PERSID", "BINPERSID"):
                raise UnsafeArtifactError(
                    "pickle uses a persistent id, which tiffin never resolves"
                )
            if op == "MARK":
                marks.append(stack)
                stack = []
                continue
            slot = arg if isinstance(arg, int) else len(memo)  # MEMOIZE takes the next slot
            if op in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack:
                    raise _malformed("memo store on an empty stack")
                memo[slot] = stack[-1]
                continue
            if op in ("GET", "BINGET", "LONG_BINGET"):
                if slot not in memo:
                    raise _malformed(f"memo key {arg} is not set")
                stack.append(memo[slot])
                continue
            if op == "DUP":
                stack.extend(pop(1) * 2)
                continue
            if op == "STACK_GLOBAL":
                module, name = pop(2)
                if not (isinstance(module, str) and isinstance(name, str)):
                    raise UnsafeArtifactError(
                        "pickle computes a global's name at load time (STACK_GLOBAL on "
                        "values that are not plain strings); refused",
                        fix="do not load it",
                    )
                found.append((module, name))
                stack.append(_Global(f"{module}.{name}"))
                continue
            if op == "BUILD" and len(stack) >= 2 and isinstance(stack[-2], _Global):
                raise UnsafeArtifactError(
                    f"pickle sets attributes of {stack[-2].name} itself (BUILD on a class or "
                    "function, not an instance), which would change it for the whole process",
                    fix="do not load it",
                )
            if pickletools.markobject in before:
                if not marks:
                    raise _malformed("no mark to pop to")
                stack = marks.pop()
                pop(before.index(pickletools.markobject))
            else:
                pop(len(before))
            after = opcode.stack_after
            if op in _STRING_OPS and isinstance(arg, str):
                stack.append(arg)
            elif op in _GLOBAL_OPS:
                stack.append(_Global("{}.{}".format(*found[-1])))
            else:
                stack.extend([_ANY] * len(after))
    except UnsafeArtifactError:
        raise
    except (ValueError, EOFError, KeyError, IndexError, TypeError, Warning) as exc:
        raise _malformed(str(exc)) from None
    return found


def safe_loads(
    data: bytes,
    *,
    code_modules: Iterable[str] = (),
    trusted: Iterable[str] = (),
    code_prefix: str = "",
) -> Any:
    """Unpickle ``data`` through the allow-list; refuses before running anything unlisted."""
    unpickler = AllowListUnpickler(
        io.BytesIO(data), code_modules=code_modules, trusted=trusted, code_prefix=code_prefix
    )
    for module, name in scan(data):
        if not unpickler.allowed(module, name):
            raise _refusal(module, name)
    try:
        model = unpickler.load()
    except UnsafeArtifactError:
        raise
    except Exception as exc:
        raise UnsafeArtifactError(f"the pickle could not be loaded safely: {exc!r}") from None
    native_trees.check_model(model)
    return model


def code_modules_of(code_dir: Path) -> list[str]:
    if not code_dir.is_dir():
        return []
    return sorted(
        {p.stem for p in code_dir.glob("*.py")}
        | {p.name for p in code_dir.iterdir() if (p / "__init__.py").is_file()}
    )
