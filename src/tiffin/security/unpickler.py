"""An allow-list unpickler: every global a pickle names must be on the list, or nothing loads.

Deny-lists (picklescan, modelscan) miss what they did not think of: a pickle calling
``distutils.spawn.spawn`` passes both. Here the question is inverted: a global is
resolved only if it is

- one of NumPy's array and scalar reconstruction functions and types (a fixed list:
  ``numpy.memmap`` is a class in NumPy too, and it writes files);
- a *class* defined in an audited framework (scikit-learn, SciPy sparse matrices);
  functions are not, since REDUCE would call them with attacker-chosen arguments;
- a class defined in the package's own ``code/`` folder;
- a name the packer declared with ``trusted_types=``.

The whole stream is scanned first (``pickletools.genops``) and every GLOBAL/INST name
checked, so a refused pickle is refused before any opcode runs; STACK_GLOBAL names
(protocol 4+) are resolved through ``find_class`` at load time, which refuses the same
way before the object is built. The error names the global.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import pickle
import pickletools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UnsafeArtifactError

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
})  # fmt: skip
AUDITED_CLASS_PREFIXES = ("sklearn.", "scipy.sparse.")


def _defining_module(obj: Any) -> str:
    return str(getattr(obj, "__module__", "") or "")


class AllowListUnpickler(pickle.Unpickler):
    def __init__(
        self, file: Any, *, code_modules: Iterable[str] = (), trusted: Iterable[str] = ()
    ) -> None:
        super().__init__(file)
        self.code_modules = frozenset(code_modules)
        self.trusted = frozenset(trusted)

    def allowed(self, module: str, name: str) -> bool:
        # Protocol 0-2 pickles may use Python 2 names (__builtin__, copy_reg).
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if full in SAFE_GLOBALS or full in self.trusted:
            return True
        if module.split(".")[0] in self.code_modules or module.startswith(AUDITED_CLASS_PREFIXES):
            obj = _resolve(module, name)
            if not isinstance(obj, type):
                return False  # only classes: a function would be called with chosen arguments
            home = _defining_module(obj)
            return home.split(".")[0] in self.code_modules or home.startswith(
                AUDITED_CLASS_PREFIXES
            )
        if module.startswith(("numpy.dtypes", "numpy.dtype")):
            obj = _resolve(module, name)
            import numpy as np

            return isinstance(obj, type) and issubclass(obj, np.dtype)
        return False

    def find_class(self, module: str, name: str) -> Any:
        if not self.allowed(module, name):
            raise UnsafeArtifactError(
                f"pickle refers to {module}.{name}, which is not on the allow-list",
                fix="only NumPy, audited framework classes, the package's own code/ classes and "
                "declared trusted_types load; if you trust this type, declare it at pack time",
            )
        return super().find_class(module, name)


def _resolve(module: str, name: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj
    except (ImportError, AttributeError, ValueError):
        return None


def scan(data: bytes) -> list[str]:
    """Globals named with GLOBAL/INST (text forms), found without running anything."""
    names = []
    try:
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                module, _, name = arg.partition(" ")
                names.append(f"{module}.{name}")
    except (ValueError, EOFError, UnicodeDecodeError) as exc:
        raise UnsafeArtifactError(
            f"the pickle stream is malformed: {exc}", fix="do not load it"
        ) from None
    return names


def safe_loads(
    data: bytes, *, code_modules: Iterable[str] = (), trusted: Iterable[str] = ()
) -> Any:
    """Unpickle ``data`` through the allow-list; refuses before running anything unlisted."""
    unpickler = AllowListUnpickler(io.BytesIO(data), code_modules=code_modules, trusted=trusted)
    for full in scan(data):
        module, _, name = full.rpartition(".")
        if not unpickler.allowed(module, name):
            raise UnsafeArtifactError(
                f"pickle refers to {full}, which is not on the allow-list",
                fix="only NumPy, audited framework classes, the package's own code/ classes and "
                "declared trusted_types load",
            )
    try:
        return unpickler.load()
    except UnsafeArtifactError:
        raise
    except Exception as exc:
        raise UnsafeArtifactError(f"the pickle could not be loaded safely: {exc!r}") from None


def code_modules_of(code_dir: Path) -> list[str]:
    if not code_dir.is_dir():
        return []
    return sorted(
        {p.stem for p in code_dir.glob("*.py")}
        | {p.name for p in code_dir.iterdir() if (p / "__init__.py").is_file()}
    )
