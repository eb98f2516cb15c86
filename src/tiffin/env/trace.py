"""Load and predict a package in a fresh interpreter, noting who imported every module.

A fresh interpreter means nothing the training or notebook session had imported leaks
in. The import hook notes, for every top-level module, *who* imported it (the package's
own ``code/``, tiffin's flavor, or a library) and from which file; the example's output
is hashed so that a run with some modules made unimportable can be compared with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EnvironmentBuildError

TRACE_TIMEOUT = 600  # seconds for the traced load and predict
_TRACER = textwrap.dedent(
    r"""
    import builtins, hashlib, importlib, json, os, re, sys
    root, flavor_name, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    blocked = frozenset(json.loads(sys.argv[4]) if len(sys.argv) > 4 else ())
    allow_pickle = len(sys.argv) > 5 and sys.argv[5] == "allow-pickle"
    if blocked:
        # As if these were not installed: for `import` and for find_spec probes alike.
        import importlib.abc, importlib.util

        class Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in blocked:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Blocked())
        real_find_spec = importlib.util.find_spec

        def find_spec(name, package=None):
            if name.split(".")[0] in blocked:
                return None
            return real_find_spec(name, package)

        importlib.util.find_spec = find_spec
    import numpy  # the tiffin runtime's own dependency
    import tiffin.errors, tiffin.schema.typed_json, tiffin.flavors
    from tiffin.flavors import LoadContext, get
    flavor = get(flavor_name)
    code_dirs = tuple({os.path.join(root, "code") + os.sep,
                       os.path.join(os.path.realpath(root), "code") + os.sep})
    seen, files = {}, {}
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def importer_of(globals_):
        name = (globals_ or {}).get("__name__") or "?"
        file = (globals_ or {}).get("__file__") or ""
        if file.startswith(code_dirs):
            # (the custom flavor imports code/ under a private parent: not the user's name)
            return "code:" + re.sub(r"^_tiffin_code_[0-9]+[.]", "", name)
        if name.startswith(("tiffin.flavors", "tiffin.logic")):  # loading the package
            return "flavor:" + name
        return name

    def local(top):
        # A module of the package's own code/ (a helper beside the model) needs no
        # distribution: it travels with the package.
        module = sys.modules.get(top)
        places = [getattr(module, "__file__", None) or ""]
        places += list(getattr(module, "__path__", None) or ())
        return any(os.path.join(str(p), "").startswith(code_dirs) for p in places if p)

    def note(name, globals_, fresh, fromlist=()):
        top = name.split(".")[0]
        if top not in sys.modules or local(top):
            return
        who = importer_of(globals_)
        # Every import by the model's code or the flavor counts, even of a module
        # something else loaded first; other importers only on first load.
        if fresh or who.startswith(("code:", "flavor:")):
            importers = seen.setdefault(top, [])
            if who not in importers:
                importers.append(who)
            # The files say which distribution it was when several share a namespace.
            names = [name] + [name + "." + f for f in fromlist or () if isinstance(f, str)]
            for module in filter(None, (sys.modules.get(n) for n in names)):
                file = getattr(module, "__file__", None)
                if file and file not in files.setdefault(top, []):
                    files[top].append(file)

    def caller_globals():
        # Who called __import__, past the code/ namespace's own forwarding __import__.
        frame = sys._getframe(2)
        while frame is not None and frame.f_globals.get("__name__") == "tiffin.logic.namespace":
            frame = frame.f_back
        return frame.f_globals if frame is not None else {}

    def tracing_import(name, globals=None, locals=None, fromlist=(), level=0):
        fresh = level == 0 and name.split(".")[0] not in sys.modules
        module = real_import(name, globals, locals, fromlist, level)
        if level == 0:
            # __import__("yaml") called by hand passes no globals: the caller's frame says
            # who it was.
            note(name, globals if globals is not None else caller_globals(), fresh, fromlist)
        return module

    def tracing_import_module(name, package=None):
        fresh = not name.startswith(".") and name.split(".")[0] not in sys.modules
        module = real_import_module(name, package)
        if not name.startswith("."):
            note(name, sys._getframe(1).f_globals, fresh)
        return module

    builtins.__import__ = tracing_import
    importlib.import_module = tracing_import_module
    sys.path.insert(0, os.path.join(root, "code"))

    def fail(stage, exc):
        # The parent reports this error as what it is, with the frames that raised it.
        import traceback

        # the innermost cause holds the model's own frames (a flavor wraps what it raised)
        inner = exc
        while inner.__cause__ is not None:
            inner = inner.__cause__
        frames = traceback.extract_tb(inner.__traceback__)[-6:]
        print("TIFFIN-CAPTURE-ERROR " + json.dumps({
            "stage": stage, "type": type(exc).__name__, "message": str(getattr(exc, "message", exc)),
            "fix": getattr(exc, "fix", None) if isinstance(exc, tiffin.errors.TiffinError) else None,
            "frames": [f"{f.filename}, line {f.lineno}, in {f.name}" for f in frames],
        }), flush=True)
        sys.exit(3)

    try:
        model = flavor.load(LoadContext(path=__import__("pathlib").Path(root), options=options,
                                        allow_pickle=allow_pickle))
    except Exception as exc:
        fail("load", exc)
    example = os.path.join(root, "examples", "input.json")
    output = None
    if os.path.exists(example):
        with open(example, "rb") as fh:
            inputs = tiffin.schema.typed_json.loads(fh.read())
        try:
            answer = model.predict(inputs)
        except Exception as exc:
            fail("predict", exc)
        output = hashlib.sha256(tiffin.schema.typed_json.dumps(answer)).hexdigest()
    builtins.__import__, importlib.import_module = real_import, real_import_module
    print("TIFFIN-CAPTURE " + json.dumps({"imports": seen, "files": files, "output": output}))
    """
)


@dataclass
class Trace:
    """Top-level module -> its importers (``code:mod``, ``flavor:mod`` or a library)."""

    imports: dict[str, list[str]]
    files: dict[str, list[str]] = field(default_factory=dict)
    output: str | None = None  # sha256 of the example's prediction, as the codec writes it


@dataclass
class Inferred:
    pins: list[str]
    why: dict[str, list[str]]
    unresolved: dict[str, list[str]]
    # distribution -> its modules that only a library imported (a probe, or a need the
    # library imports as if optional); :mod:`.probes` tells which
    library_imports: dict[str, list[str]] = field(default_factory=dict)


def trace_imports(
    root: Path,
    flavor: str,
    options: dict[str, Any],
    blocked: Sequence[str] = (),
    *,
    allow_pickle: bool = False,
) -> Trace:
    """Load and predict the package at ``root`` in a fresh interpreter, noting every import.

    ``blocked`` top-level modules are made unimportable there, as if not installed.
    ``allow_pickle`` is the opt-in the package was packed with (the pickle flavor's load
    refuses without it).
    """
    return finish_trace(
        start_trace(root, flavor, options, blocked, allow_pickle=allow_pickle), root
    )


def start_trace(
    root: Path,
    flavor: str,
    options: dict[str, Any],
    blocked: Sequence[str] = (),
    *,
    allow_pickle: bool = False,
) -> subprocess.Popen[str]:
    """Start :func:`trace_imports`'s fresh interpreter; :func:`finish_trace` collects it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    argv = [sys.executable, "-B", "-c", _TRACER, str(root), flavor, json.dumps(options)]
    pickle_arg = ["allow-pickle"] if allow_pickle else []
    return subprocess.Popen(
        # -B: the package is indexed after this; no __pycache__ may appear in code/.
        [*argv, json.dumps(sorted(blocked)), *pickle_arg],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def finish_trace(proc: subprocess.Popen[str], root: Path) -> Trace:
    """Wait for a started trace (at most ``TRACE_TIMEOUT``) and read what it saw."""
    try:
        stdout, stderr = proc.communicate(timeout=TRACE_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise EnvironmentBuildError(
            f"the model's load and predict did not finish within {TRACE_TIMEOUT} s while "
            "tiffin traced its imports",
            where=str(root),
            fix="check that load and predict on the example finish, or pack with "
            "requirements= and TIFFIN_ENV_CAPTURE=off",
        ) from None
    for line in stdout.splitlines():
        if line.startswith("TIFFIN-CAPTURE "):
            raw = json.loads(line[len("TIFFIN-CAPTURE ") :])
            return Trace(
                imports=dict(raw["imports"]),
                files=dict(raw.get("files", {})),
                output=raw.get("output"),
            )
        if line.startswith("TIFFIN-CAPTURE-ERROR "):
            raise _child_error(json.loads(line[len("TIFFIN-CAPTURE-ERROR ") :]), root)
    # Died without a word: a signal, an exit in the model's code, a broken interpreter.
    died = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else (
        f"exited with status {proc.returncode}")  # fmt: skip
    tail = stderr.strip().splitlines()[-12:]
    raise EnvironmentBuildError(
        f"the fresh process that loads and runs the model (to capture its imports) {died}",
        where=str(root),
        fix=("its last output: " + " | ".join(tail)) if tail else
        "run the model's load and predict in a clean interpreter",
    )  # fmt: skip


MESSAGE_LIMIT = 1000  # characters of the model's own error message kept in ours


def _child_error(raw: dict[str, Any], root: Path) -> EnvironmentBuildError:
    """The error the model's load or predict raised in the capture's fresh process."""
    text = str(raw.get("message", ""))
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + f"… ({len(text) - MESSAGE_LIMIT} more characters)"
    stage = "predict on the recorded example" if raw.get("stage") == "predict" else "load"
    frames = " <- ".join(reversed([str(f) for f in raw.get("frames", [])]))
    fix = raw.get("fix") or (
        "it worked in this process but not in a fresh one: it depends on something this "
        "session set up (an import, a global, a working folder); raised at " + frames
    )
    return EnvironmentBuildError(
        f"the model's {stage} failed in a fresh process (tiffin runs it there to capture "
        f"its imports): {raw.get('type', 'Exception')}: {text}",
        where=str(root),
        fix=fix,
    )
