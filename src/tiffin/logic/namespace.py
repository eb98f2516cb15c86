"""Import a package's ``code/`` folder as its own namespace, apart from every other package.

Python keeps one module per name in ``sys.modules``. Two packages loaded in one process
(``tiffin serve a b``) whose ``code/`` both hold a ``utils.py`` would otherwise share the
first one loaded, and the second model would compute with the first one's helpers.

So the modules of one ``code/`` folder are imported under a private parent,
``_tiffin_code_<n>`` (numbered in load order; loading the same folder with the same
files again reuses its number, so a process that loads one package always calls it
``_tiffin_code_1``, which keeps what the import tracer records reproducible), and every module
loaded from there gets an ``__import__`` that maps the folder's own top-level names
(``import utils``, ``from lib.sub import f``) to that parent, at import time and inside
functions alike. Anything else (NumPy, the framework, the standard library) is imported
as usual, through whatever ``builtins.__import__`` is at that moment.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import FlavorError, IntegrityError

PREFIX = "_tiffin_code_"


def _top_level_names(code_dir: Path) -> frozenset[str]:
    names = set()
    for entry in code_dir.iterdir():
        if entry.suffix == ".py" and entry.is_file() and entry.stem.isidentifier():
            names.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier():
            names.add(entry.name)  # a package (or namespace package) of the code
    return frozenset(names)


def _key(code_dir: Path) -> str:
    """Same folder with the same files: the same namespace (loading twice reuses it)."""
    digest = hashlib.sha256(os.fsencode(code_dir.resolve()))
    for path in sorted(code_dir.rglob("*.py")):
        digest.update(os.fsencode(path.relative_to(code_dir)) + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _importer(root: str, own: frozenset[str]) -> Callable[..., Any]:
    def import_(
        name: str,
        globals: dict[str, Any] | None = None,
        locals: Any = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> Any:
        if level == 0 and name.split(".")[0] in own:
            module = builtins.__import__(f"{root}.{name}", globals, locals, fromlist, 0)
            # ``import a.b`` binds ``a``; ``from a.b import c`` gets ``a.b`` itself.
            return module if fromlist else sys.modules[f"{root}.{name.split('.')[0]}"]
        return builtins.__import__(name, globals, locals, fromlist, level)

    return import_


class _Loader(importlib.machinery.SourceFileLoader):
    """A source loader that gives each module the namespace's ``__import__``."""

    builtins_dict: dict[str, Any] = {}

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["__builtins__"] = self.builtins_dict
        super().exec_module(module)

    def set_data(self, path: str, data: Any, *, _mode: int = 0o666) -> None:
        # Never cache bytecode: __pycache__ written into a sealed package would be extra
        # files that the next load refuses. Declined here, for this loader only, rather
        # than with sys.dont_write_bytecode, which would change every import of the
        # user's process from then on.
        return


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, root: str, code_dir: Path, builtins_dict: dict[str, Any]) -> None:
        self.root, self.code_dir, self.builtins_dict = root, code_dir, builtins_dict

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not fullname.startswith(self.root + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path or [str(self.code_dir)])
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            loader = _Loader(fullname, str(spec.origin))
            loader.builtins_dict = self.builtins_dict
            spec.loader = loader
        return spec


_ROOTS: dict[str, str] = {}  # folder key -> parent module name
_NUMBERS = itertools.count(1)


def namespace(code_dir: Path) -> str:
    """The private parent module for ``code_dir``, created (and its finder installed) once."""
    key = _key(code_dir)
    root = _ROOTS.get(key)
    if root is not None and root in sys.modules:
        return root
    root = PREFIX + str(next(_NUMBERS))
    _ROOTS[key] = root
    own = _top_level_names(code_dir)
    builtins_dict = {**builtins.__dict__, "__import__": _importer(root, own)}
    parent = ModuleType(root, f"the code/ folder of the package at {code_dir.parent}")
    parent.__path__ = [str(code_dir)]
    parent.__package__ = root
    parent.__spec__ = importlib.machinery.ModuleSpec(root, None, is_package=True)
    parent.__spec__.submodule_search_locations = [str(code_dir)]
    sys.meta_path.insert(0, _Finder(root, code_dir, builtins_dict))
    sys.modules[root] = parent
    return root


def import_module(code_dir: Path, module: str) -> ModuleType:
    """Import ``code/<module>.py`` (or the package ``code/<module>/``) in its namespace."""
    return importlib.import_module(f"{namespace(code_dir)}.{module}")


def forget(prefix: str) -> None:
    """Drop the namespaces of code folders under ``prefix`` (a temporary pack folder)."""
    for name, module in list(sys.modules.items()):
        if name.startswith(PREFIX) and "." not in name:
            paths = list(getattr(module, "__path__", []) or [])
            if paths and str(paths[0]).startswith(prefix):
                for sub in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
                    del sys.modules[sub]
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if not (isinstance(f, _Finder) and str(f.code_dir).startswith(prefix))
    ]


class _Existing(importlib.abc.Loader):
    """Hands the import system a module that is already loaded (the namespaced one)."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def create_module(self, spec: Any) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        pass


class _Alias(importlib.abc.MetaPathFinder):
    """Plain names of one code/ folder's modules resolve to its private namespace."""

    def __init__(self, code_dir: Path, own: frozenset[str]) -> None:
        self.code_dir, self.own = code_dir, own

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname.split(".")[0] not in self.own:
            return None
        module = import_module(self.code_dir, fullname)
        return importlib.util.spec_from_loader(fullname, _Existing(module))


def _shadowable(name: str) -> bool:
    """A top-level name the package's code may take over while it loads: not the
    standard library's, and not a module already imported from an installed
    distribution (a code/numpy.py must not replace NumPy under the framework)."""
    if name in sys.stdlib_module_names:
        return False
    file = getattr(sys.modules.get(name), "__file__", None) or ""
    return not any(part in ("site-packages", "dist-packages") for part in Path(file).parts)


_LOADING = threading.RLock()  # re-entrant: a model's load may load another package


@contextlib.contextmanager
def own_names(code_dir: Path) -> Iterator[None]:
    """While a flavor deserializes, the folder's top-level module names mean its code.

    skops and the unpickler rebuild classes by the plain name they were saved under
    (``shiftmod.Shift``), and ``sys.modules`` holds one module per name: two packages
    with a ``code/shiftmod.py`` (two versions of one model served side by side) both got
    the class of the one loaded first, and the second answered with the first one's
    code. For the duration of the load each such name resolves to this package's
    private namespace (``_tiffin_code_<n>.shiftmod``); afterwards ``sys.modules`` is as
    it was, and the rebuilt objects keep their own classes.
    """
    if not code_dir.is_dir():
        yield
        return
    with _LOADING:  # two loads in two threads must not swap each other's names
        own = frozenset(n for n in _top_level_names(code_dir) if _shadowable(n))
        saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] in own}
        for name in saved:
            del sys.modules[name]
        finder = _Alias(code_dir, own)
        sys.meta_path.insert(0, finder)
        try:
            yield
        finally:
            sys.meta_path.remove(finder)
            for name in [n for n in sys.modules if n.split(".")[0] in own]:
                del sys.modules[name]
            sys.modules.update(saved)


def import_from_package(code_dir: Path, module: str) -> ModuleType:
    """Import ``module`` from the package's ``code/`` folder, whatever else is loaded.

    The folder is imported as a namespace of its own (see :func:`namespace`): the module's
    imports of its siblings resolve inside this package, never to a same-named module
    of the packer's working copy or of another package loaded in the same process.
    """
    if not module or not all(part.isidentifier() for part in module.split(".")):
        # a re-sealed manifest naming "../x" would run a file outside code/
        raise IntegrityError(
            f"runtime option 'module' is {module!r}, not a module name inside code/",
            where="tiffin.json: runtime.options.module",
        )
    file = code_dir / f"{module}.py"
    if not file.is_file():
        file = code_dir / module / "__init__.py"
    if not file.is_file():
        raise FlavorError(f"code/{module}.py is missing from the package", where=str(code_dir))
    try:
        return import_module(code_dir, module)
    except Exception as exc:
        fix = None
        if isinstance(exc, ModuleNotFoundError):
            missing = str(exc.name or "")
            if missing.startswith(PREFIX):
                missing = missing.partition(".")[2]  # the name as the code wrote it
            fix = (
                f"if {missing!r} is your own module, pack it with code=['path/to/{missing}.py'] "
                "(modules beside the class file are found by themselves); if it is a "
                "distribution, install it"
            )
        raise FlavorError(
            f"importing code/{file.name} failed: {exc!r}", where=str(file), fix=fix
        ) from exc


@contextlib.contextmanager
def forgetting_imports_from(root: Path) -> Iterator[None]:
    """Forget, on leaving, every module imported from files under ``root``.

    Pack reloads the package from its temporary folder, which is then renamed away; a
    module left in sys.modules pointing into it would shadow the user's own module of
    the same name.
    """
    path_before = list(sys.path)
    modules_before = dict(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = path_before
        prefix = str(root)
        forget(prefix)
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(prefix):
                if name in modules_before:
                    sys.modules[name] = modules_before[name]
                else:
                    del sys.modules[name]
