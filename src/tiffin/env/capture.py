"""Capture the model's direct requirements by watching what its load and predict import.

The package (still in its temporary folder) is loaded through its flavor and run on its
example in a fresh subprocess, with an import hook that notes, for every top-level
module imported, *who* imported it and which file it came from. A fresh interpreter
means nothing the training or notebook session had imported leaks in.

A distribution is a direct requirement when one of its modules is imported

- by the package's own code (``code/``), whether or not something loaded it first, or
- by tiffin's flavor, or
- (for the flavor's declared frameworks) by anything, since the flavor needs them.

Any other import is a dependency of a dependency (the lock's job) or a library probing
for an optional integration: scikit-learn's array-API shim touching torch, say. Such a
probe is imported by the library, not by the model, and is left out; it is not among
the library's declared dependencies, so the lock does not carry it either. Comparing
against a baseline run that only imports the framework would miss probes that happen
at predict time; attributing each import to its importer does not. Since some libraries
import real needs the same way (XGBoost's wrappers and scikit-learn), what only a
library imported outside the requirements' closure is tried away before it is left out
(:mod:`.probes`): the load and predict run again without it, and a model that then
fails or answers otherwise keeps it as a requirement.

Modules the code imports that no installed distribution provides (a sibling folder on
``sys.path``, say) are reported as ``unresolved``: the package would not find them
anywhere else. Namespace packages (``google.*``) are resolved by the imported file,
not by the top-level name alone.

Local version labels are kept (``torch==2.13.0+cpu``): dropping the label, as MLflow
does, makes a rebuild pull the multi-GB CUDA build from PyPI. The label also records the
accelerator the package was built for.

``TIFFIN_ENV_CAPTURE=off`` skips the subprocess and the lock (the flavor's frameworks
are pinned as installed); the test suite uses it to pack quickly.
"""

from __future__ import annotations

import json
import os
import platform as _platform
import re
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import layout
from ..errors import EnvironmentBuildError, UsageError
from ..provenance import dist_version

# Imported by tiffin itself to pack, serve or render; a requirement only when the
# model's own code imports them.
TIFFIN_OWN = frozenset(
    {
        "click",
        "rich",
        "uv",
        "starlette",
        "uvicorn",
        "orjson",
        "prometheus_client",
        "cryptography",
        "zstandard",
    }
)
# What the tiffin runtime itself needs in every environment.
RUNTIME = ("numpy",)
TRACE_TIMEOUT = 600  # seconds for the traced load and predict
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

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
    import tiffin.errors, tiffin.examples, tiffin.flavors
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
        if name.startswith("tiffin.flavors"):
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
        while frame is not None and frame.f_globals.get("__name__") == "tiffin.flavors._code":
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

        frames = traceback.extract_tb(exc.__traceback__)[-6:]
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
            inputs = tiffin.examples.loads(fh.read())
        try:
            answer = model.predict(inputs)
        except Exception as exc:
            fail("predict", exc)
        output = hashlib.sha256(tiffin.examples.dumps(answer)).hexdigest()
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


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    """The canonical distribution name of a requirement string (``"Foo_Bar>=1"`` -> foo-bar)."""
    m = _REQ_NAME.match(req)
    return _canonical(m.group(1)) if m else _canonical(req)


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
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    argv = [sys.executable, "-B", "-c", _TRACER, str(root), flavor, json.dumps(options)]
    pickle_arg = ["allow-pickle"] if allow_pickle else []
    try:
        proc = subprocess.run(
            # -B: the package is indexed after this; no __pycache__ may appear in code/.
            [*argv, json.dumps(sorted(blocked)), *pickle_arg],
            capture_output=True, text=True, timeout=TRACE_TIMEOUT, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise EnvironmentBuildError(
            f"the model's load and predict did not finish within {TRACE_TIMEOUT} s while "
            "tiffin traced its imports",
            where=str(root),
            fix="check that load and predict on the example finish, or pack with "
            "requirements= and TIFFIN_ENV_CAPTURE=off",
        ) from None
    for line in proc.stdout.splitlines():
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
    tail = proc.stderr.strip().splitlines()[-12:]
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


def _owners_by_file(candidates: list[str], files: list[str]) -> list[str]:
    """Of the distributions sharing a top-level name, those that installed these files."""
    wanted = {os.path.realpath(f) for f in files}
    found = []
    for dist_name in candidates:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            if os.path.realpath(str(dist.locate_file(f))) in wanted:
                found.append(dist_name)
                break
    return found or candidates


def infer_requirements(trace: Trace, frameworks: tuple[str, ...]) -> Inferred:
    """Pinned direct requirements, the modules that needed each, and unresolved imports."""
    stdlib = set(sys.stdlib_module_names)
    owners = {k: list(v) for k, v in metadata.packages_distributions().items()}
    wanted_frameworks = {_canonical(f) for f in frameworks}
    why: dict[str, set[str]] = {r: {f"{r} (the tiffin runtime)"} for r in RUNTIME}
    unresolved: dict[str, list[str]] = {}
    by_library: dict[str, set[str]] = {}
    for module, importers in trace.imports.items():
        if module in stdlib or module == "tiffin" or module.startswith("_"):
            continue
        direct = [i.split(":", 1)[1] for i in importers if i.startswith(("code:", "flavor:"))]
        by_code = any(i.startswith("code:") for i in importers)
        if module in TIFFIN_OWN and not by_code:
            continue
        candidates = owners.get(module, [])
        if len(candidates) > 1:
            candidates = _owners_by_file(candidates, trace.files.get(module, []))
        if not candidates:
            if by_code:
                unresolved[module] = sorted(
                    i.split(":", 1)[1] for i in importers if i.startswith("code:")
                )
            continue
        for dist in candidates:
            key = _canonical(dist)
            if direct:
                why.setdefault(key, set()).update(f"{module} (imported by {i})" for i in direct)
            elif key in wanted_frameworks:
                why.setdefault(key, set()).add(
                    f"{module} (the {key} framework, imported by {importers[0]})"
                )
            else:
                by_library.setdefault(key, set()).add(f"{module} (imported by {importers[0]})")
    pins = []
    reasons: dict[str, list[str]] = {}
    for key in sorted(why):
        version = dist_version(key)
        if version is None:
            continue
        pins.append(f"{key}=={version}")
        reasons[key] = sorted(why[key])
    library = {k: sorted(v) for k, v in sorted(by_library.items()) if k not in reasons}
    return Inferred(pins=pins, why=reasons, unresolved=unresolved, library_imports=library)


def _takes_dataframes(root: Path) -> bool:
    try:
        sig = json.loads((root / layout.SCHEMA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return "dataframe" in (sig.get("input_kind"), sig.get("output_kind"))


def accelerator_of(pins: Sequence[str]) -> dict[str, Any] | None:
    """What hardware the pins were built for, from local version labels.

    ``{"kind": "cpu", "package": "torch==2.13.0+cpu", "index": ...}`` for a CPU build
    (the index is where a rebuild finds it), ``{"kind": "cuda", "cuda": "12.8", ...}``
    for a CUDA build; None when no pinned package is hardware-specific.
    """
    for pin in pins:
        name, _, version = pin.partition("==")
        name = _canonical(name)
        if name in ("torch", "torchvision", "torchaudio", "jax", "jaxlib"):
            label = version.partition("+")[2]
            if label == "cpu":
                return {
                    "kind": "cpu",
                    "package": pin,
                    "index": "https://download.pytorch.org/whl/cpu",
                }
            if label.startswith("cu") and label[2:].isdigit() and len(label) > 3:
                return {"kind": "cuda", "cuda": f"{label[2:-1]}.{label[-1]}", "package": pin,
                        "index": f"https://download.pytorch.org/whl/{label}"}  # fmt: skip
            if name == "torch" and sys.platform == "linux":
                return {
                    "kind": "cuda",
                    "package": pin,
                    "note": "PyPI's Linux torch wheels are CUDA builds",
                }
        if name.startswith("nvidia-") or name in ("cupy", "tensorrt") or "-cuda" in name:
            return {"kind": "cuda", "package": pin}
    return None


def merge_requirements(
    inferred: list[str], given: Sequence[str] | None
) -> tuple[list[str], dict[str, list[str]]]:
    """Apply the user's ``requirements=`` to the inferred list.

    Entries written ``+name==1.0`` extend the inferred list (replacing an inferred pin of
    the same name); plain entries replace the whole list. The tiffin runtime's own
    requirement (NumPy) is kept in either case. The difference is printed on stderr and
    returned as ``{"added": [...], "dropped": [...], "changed": ["a==1 -> a==2"]}``.
    """
    if given is None:
        return inferred, {}
    if isinstance(given, str):
        raise UsageError(
            f"requirements= must be a list of requirement strings, not the string {given!r}",
            where="requirements=",
            fix=f"write requirements=[{given!r}]",
        )
    given = [str(g).strip() for g in given if str(g).strip()]
    extend = [g[1:].strip() for g in given if g.startswith("+")]
    replace = [g for g in given if not g.startswith("+")]
    if extend and replace:
        raise UsageError(
            "requirements mix '+name' (extend) and plain entries (replace)",
            where="requirements=",
            fix="prefix every entry with '+' to extend the inferred list, or none to replace it",
        )
    for req in extend or replace:
        check_requirement(req)
    if extend:
        names = {requirement_name(r) for r in extend}
        final = sorted([r for r in inferred if requirement_name(r) not in names] + extend)
    else:
        final = list(replace)
        names = {requirement_name(r) for r in final}
        final += [
            r
            for r in inferred
            if requirement_name(r) in RUNTIME and requirement_name(r) not in names
        ]
        final = sorted(final)
    was = {requirement_name(r): r for r in inferred}
    now = {requirement_name(r): r for r in final}
    diff = {
        "added": sorted(now.keys() - was.keys()),
        "dropped": sorted(was.keys() - now.keys()),
        # the same distribution, pinned otherwise (or not pinned) by the user
        "changed": sorted(f"{was[n]} -> {now[n]}" for n in now.keys() & was.keys()
                          if was[n] != now[n]),
    }  # fmt: skip
    if any(diff.values()):
        sys.stderr.write(
            f"tiffin: requirements differ from the inferred ones: added {diff['added'] or '-'}, "
            f"left out {diff['dropped'] or '-'}, changed {diff['changed'] or '-'}\n"
        )
    return final, diff


def check_requirement(req: str) -> None:
    """Refuse what is not a PEP 508 requirement (``numpy=2``, options, local paths)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(req)
    except InvalidRequirement as exc:
        raise UsageError(
            f"requirement {req!r} is not a requirement string: {exc}",
            where="requirements=",
            fix="write a requirement like 'name==1.2.3' (no pip options, no paths)",
        ) from None


def capture(
    root: Path,
    *,
    flavor: str,
    frameworks: tuple[str, ...],
    requirements: Sequence[str] | None,
    python: str | None = None,
    platform: str | None = None,
    options: dict[str, Any] | None = None,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Write env/requirements.txt and env/requirements.lock; return the manifest's environment.

    The result holds ``requirements`` (pinned, direct), ``why`` (requirement -> the modules
    that needed it), ``python``, ``platform``, ``accelerator``, ``lock`` (status, hashed,
    sha256, target), and with user ``requirements=`` the ``inferred`` list and the
    ``difference``.
    """
    target_python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    target_platform = platform or f"{sys.platform}/{_platform.machine()}"
    from .lock import check_target

    # What the user gave, before the slow trace; this machine's own names pass as they are.
    check_target(python, platform)
    enabled = os.environ.get("TIFFIN_ENV_CAPTURE", "on").lower() not in ("off", "0", "false", "no")
    why: dict[str, list[str]] = {}
    unresolved: dict[str, list[str]] = {}
    if enabled:
        trace = trace_imports(root, flavor, options or {}, allow_pickle=allow_pickle)
        if _takes_dataframes(root):
            # tiffin itself builds the DataFrame the model takes: pandas is a runtime need.
            trace.imports.setdefault("pandas", []).append(
                "flavor:tiffin.signature (DataFrame signature)"
            )
        found = infer_requirements(trace, frameworks)
        from .probes import confirm_probes

        needed = confirm_probes(
            root, flavor, options or {}, trace, found, allow_pickle=allow_pickle
        )
        for key, modules in needed.items():
            found.pins = sorted([*found.pins, f"{key}=={dist_version(key)}"])
            found.why[key] = [f"{m}; load or predict fails without it" for m in modules]
        inferred, why, unresolved = found.pins, found.why, found.unresolved
        for module, importers in sorted(unresolved.items()):
            sys.stderr.write(
                f"tiffin: warning: module {module!r} (imported by {', '.join(importers)}) comes "
                "from no installed distribution and is not in the package's code/; another "
                "machine will not find it (ship it with code= or install it as a package)\n"
            )
    else:
        # The tiffin runtime's own NumPy too: every environment needs it.
        wanted = dict.fromkeys([*frameworks, *RUNTIME])
        inferred = sorted(f"{d}=={v}" for d in wanted if (v := dist_version(d)) is not None)
    reqs, diff = merge_requirements(inferred, requirements)
    path = root / layout.REQUIREMENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in reqs), encoding="utf-8")
    env: dict[str, Any] = {
        "python": target_python,
        "platform": target_platform,
        "requirements": reqs,
        "why": why,
        "accelerator": accelerator_of(reqs),
    }
    if unresolved:
        env["unresolved"] = unresolved
    if requirements is not None:
        env["inferred"] = inferred
        env["difference"] = diff
    if enabled:
        from .lock import write_lock

        env["lock"] = write_lock(root, reqs, python=target_python, platform=target_platform)
    else:
        env["lock"] = {"status": "skipped", "hashed": False}
    return env
