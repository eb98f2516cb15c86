"""Which of the user's files a package's ``code/`` needs, and copying them there.

A class's defining module, the modules and packages it imports from its own folder
(``import helpers`` with ``helpers.py`` beside it) and theirs in turn, and any ``code=``
files: without them a package would load only where the packer's folder happens to be
importable. Installed distributions are requirements, never copied.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import FlavorError, UsageError


def resolve_source(spec: str) -> tuple[Path, str]:
    """Split ``path/to/file.py:ClassName``."""
    file, _, cls = spec.rpartition(":")
    path = Path(file)
    if not path.is_file() or not cls.isidentifier():
        raise UsageError(
            f"cannot find class source {spec!r}", fix="give 'path/to/file.py:ClassName'"
        )
    return path, cls


def class_file(cls: type) -> Path:
    try:
        file = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        file = None
    if not file or not file.endswith(".py") or cls.__module__ == "__main__":
        raise FlavorError(
            f"the source file of class {cls.__qualname__} cannot be found",
            fix="define the model class in its own .py file (not in __main__ or a notebook) "
            "and import it from there",
        )
    return Path(file)


def _installed(path: Path) -> bool:
    """True for the standard library and installed distributions (never copied)."""
    import sysconfig

    resolved = path.resolve()
    if any(part in ("site-packages", "dist-packages") for part in resolved.parts):
        return True
    paths = sysconfig.get_paths()
    roots = [Path(paths[k]).resolve() for k in ("stdlib", "platstdlib") if k in paths]
    return any(resolved.is_relative_to(root) for root in roots)


def _imported_names(file: Path, relative: bool = False) -> set[str]:
    """Top-level names of the absolute imports in ``file`` (anywhere in it).

    With ``relative``, ``from .x import y`` and ``from . import x`` count as ``x`` too:
    the class file sits at the top of code/, where its siblings are its package's.
    """
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except (SyntaxError, ValueError, OSError):
        return set()  # importing it from the package reports the problem clearly
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and relative:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(alias.name for alias in node.names)
    return names


def _sibling(folder: Path, name: str) -> Path | None:
    """``folder/name.py`` or the package ``folder/name/``, if that is what ``name`` imports."""
    candidate = folder / f"{name}.py"
    if not candidate.is_file():
        candidate = folder / name
        if not (candidate / "__init__.py").is_file():
            return None
    origin = candidate / "__init__.py" if candidate.is_dir() else candidate
    loaded = sys.modules.get(name)
    if loaded is not None:
        file = getattr(loaded, "__file__", None)
    else:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        file = spec.origin if spec is not None and spec.has_location else None
        if file is None:
            return candidate  # not importable from here: only the sibling can be meant
    # A same-named module that resolves elsewhere (an installed one) is what runs.
    return candidate if file and Path(file).resolve() == origin.resolve() else None


def local_modules(source: Path) -> list[Path]:
    """The modules and packages beside ``source`` that it imports, transitively, sorted."""
    folder = source.parent
    if _installed(folder):
        return []
    found: dict[str, Path] = {}
    queue, seen = [source], set()
    while queue:
        item = queue.pop()
        for file in sorted(item.rglob("*.py")) if item.is_dir() else [item]:
            if file in seen:
                continue
            seen.add(file)
            imported = _imported_names(file, relative=file.parent == folder)
            for name in sorted(imported - set(found) - {source.stem}):
                sibling = _sibling(folder, name)
                if sibling is not None:
                    found[name] = sibling
                    queue.append(sibling)
    return [found[name] for name in sorted(found)]


def module_sources(modules: Sequence[str]) -> list[Path]:
    """The user's own files behind dotted names (``feats.logabs``), with their siblings.

    A name whose top-level module is in the standard library or an installed
    distribution is left out: it belongs in the requirements, and a copy in code/ would
    shadow the real one at load.
    """
    sources: list[Path] = []
    for dotted in modules:
        top = dotted.split(".")[0]
        file = getattr(sys.modules.get(top), "__file__", None)
        if not file or _installed(Path(file)):
            continue
        path = Path(file).resolve()
        source = path.parent if path.name == "__init__.py" else path
        for item in [source, *(local_modules(source) if source.is_file() else [])]:
            if item not in sources:
                sources.append(item)
    return sources


def _same_tree(src: Path, dest: Path) -> bool:
    """True when folder ``dest`` holds exactly the files ``copy_code`` would copy from ``src``."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")

    def files(root: Path) -> dict[str, bytes]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            ignored = skip(dirpath, dirnames + filenames)
            dirnames[:] = sorted(d for d in dirnames if d not in ignored)
            for name in filenames:
                if name not in ignored:
                    path = Path(dirpath, name)
                    out[path.relative_to(root).as_posix()] = path.read_bytes()
        return out

    return files(src) == files(dest)


def copy_code(paths: list[Path], code_dir: Path) -> list[str]:
    """Copy source files and folders into ``code/``; returns the relative names.

    A path whose copy is already there (the class file's own imports, given again
    with ``code=``) is skipped; a different file or folder of the same name is an error.
    """
    names = []
    for src in paths:
        dest = code_dir / src.name
        if dest.exists():
            if src.is_file() and dest.is_file() and src.read_bytes() == dest.read_bytes():
                continue
            if src.is_dir() and dest.is_dir() and _same_tree(src, dest):
                continue
            raise UsageError(f"two code files are both called {src.name!r}", where="code=")
        if src.is_dir():
            shutil.copytree(
                src,
                dest,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
                symlinks=False,
            )
        elif src.is_file():
            shutil.copyfile(src, dest)
        else:
            raise UsageError(f"code path {src} does not exist", where="code=")
        names.append(src.name)
    return names


# Compression suffixes that only mean something with the suffix before them (.tar.gz).
