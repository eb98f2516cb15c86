"""Capture the model's direct requirements by watching what its load and predict import.

The package (still in its temporary folder) is loaded and run on its example in a fresh
subprocess with an import hook that notes, for every third-party top-level module
imported, *who* imported it. A distribution is a direct requirement when its modules
are imported by the package's own code (``code/``) or by tiffin's flavor for the
framework; the flavor's framework distributions are pinned too when they were imported.
A module that a library imports only to probe for an optional integration (scikit-learn
touching torch, say) is imported by that library, not by the model, and is left out:
it is not among the library's declared dependencies, so no lock would carry it either.

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
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import layout
from ..errors import EnvironmentBuildError, UsageError
from ..provenance import dist_version

# Imported by tiffin itself to pack, serve or render; never a model requirement unless
# the model's own code imports them.
TIFFIN_OWN = frozenset(
    {
        "tiffin",
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
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

_TRACER = textwrap.dedent(
    r"""
    import builtins, json, sys
    root, flavor_name, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    import numpy  # the tiffin runtime's own dependency
    import tiffin.examples, tiffin.flavors
    from tiffin.flavors import LoadContext, get
    flavor = get(flavor_name)
    code_dir = root + "/code"
    seen = {}
    real_import = builtins.__import__

    def importer_of(globals_):
        name = (globals_ or {}).get("__name__") or "?"
        file = (globals_ or {}).get("__file__") or ""
        if file.startswith(code_dir):
            return "code:" + name
        if name.startswith("tiffin.flavors"):
            return "flavor:" + name
        return name

    def tracing_import(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.split(".")[0] if level == 0 else None
        fresh = top is not None and top not in sys.modules
        module = real_import(name, globals, locals, fromlist, level)
        if top is not None and top in sys.modules:
            who = importer_of(globals)
            # Every import by the model's code or the flavor counts, even of a module
            # something else loaded first; other importers only on first load.
            if fresh or who.startswith(("code:", "flavor:")):
                importers = seen.setdefault(top, [])
                if who not in importers:
                    importers.append(who)
        return module

    builtins.__import__ = tracing_import
    sys.path.insert(0, code_dir)
    model = flavor.load(LoadContext(path=__import__("pathlib").Path(root), options=options))
    example = root + "/examples/input.json"
    import os
    if os.path.exists(example):
        with open(example, "rb") as fh:
            model.predict(tiffin.examples.loads(fh.read()))
    builtins.__import__ = real_import
    print("TIFFIN-CAPTURE " + json.dumps(seen))
    """
)


def _top_level_to_dists() -> dict[str, list[str]]:
    return {k: list(v) for k, v in metadata.packages_distributions().items()}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    m = _REQ_NAME.match(req)
    return _canonical(m.group(1)) if m else _canonical(req)


def trace_imports(root: Path, flavor: str, options: dict[str, Any]) -> dict[str, list[str]]:
    """Top-level module -> its importers, for a load and predict of the package at ``root``."""
    proc = subprocess.run(
        [sys.executable, "-c", _TRACER, str(root), flavor, json.dumps(options)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith("TIFFIN-CAPTURE "):
            return dict(json.loads(line[len("TIFFIN-CAPTURE ") :]))
    raise EnvironmentBuildError(
        "could not trace the model's imports: its load or predict failed in a fresh process",
        where=str(root),
        fix=proc.stderr.strip()[-800:] or "run the model's load and predict in a clean interpreter",
    )


def infer_requirements(
    imports: dict[str, list[str]], frameworks: tuple[str, ...]
) -> tuple[list[str], dict[str, list[str]]]:
    """Pinned direct requirements and, for each, the modules that needed it."""
    stdlib = set(sys.stdlib_module_names)
    owners = _top_level_to_dists()
    wanted_frameworks = {_canonical(f) for f in frameworks}
    why: dict[str, set[str]] = {"numpy": {"numpy (the tiffin runtime)"}}
    for module, importers in imports.items():
        if module in stdlib or module in TIFFIN_OWN or module.startswith("_"):
            continue
        for dist in owners.get(module, []):
            key = _canonical(dist)
            direct = [i.split(":", 1)[1] for i in importers if i.startswith(("code:", "flavor:"))]
            if direct:
                why.setdefault(key, set()).update(f"{module} (imported by {i})" for i in direct)
            elif key in wanted_frameworks:
                why.setdefault(key, set()).add(
                    f"{module} (the {key} framework, imported by {importers[0]})"
                )
    pins = []
    reasons: dict[str, list[str]] = {}
    for key in sorted(why):
        version = dist_version(key)
        if version is None:
            continue
        pins.append(f"{key}=={version}")
        reasons[key] = sorted(why[key])
    return pins, reasons


def _takes_dataframes(root: Path) -> bool:
    try:
        sig = json.loads((root / layout.SCHEMA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return "dataframe" in (sig.get("input_kind"), sig.get("output_kind"))


def accelerator_of(pins: Sequence[str]) -> dict[str, Any] | None:
    """What hardware the pins were built for, from local version labels."""
    for pin in pins:
        name, _, version = pin.partition("==")
        if name in ("torch", "torchvision", "torchaudio", "jax", "jaxlib"):
            label = version.partition("+")[2]
            if label == "cpu":
                return {
                    "kind": "cpu",
                    "package": pin,
                    "index": "https://download.pytorch.org/whl/cpu",
                }
            if label.startswith("cu"):
                return {"kind": "cuda", "cuda": f"{label[2:-1]}.{label[-1]}", "package": pin,
                        "index": f"https://download.pytorch.org/whl/{label}"}  # fmt: skip
            if name == "torch" and sys.platform == "linux":
                return {
                    "kind": "cuda",
                    "package": pin,
                    "note": "PyPI's Linux torch wheels are CUDA builds",
                }
    return None


def merge_requirements(
    inferred: list[str], given: Sequence[str] | None
) -> tuple[list[str], dict[str, list[str]]]:
    """User requirements: entries starting with "+" extend the inferred list, others replace it."""
    if given is None:
        return inferred, {}
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
        if not _REQ_NAME.match(req):
            raise UsageError(
                f"requirement {req!r} is not a requirement string", where="requirements="
            )
    if extend:
        names = {requirement_name(r) for r in extend}
        final = sorted([r for r in inferred if requirement_name(r) not in names] + extend)
    else:
        final = sorted(replace)
    inferred_names = {requirement_name(r) for r in inferred}
    final_names = {requirement_name(r) for r in final}
    diff = {
        "added": sorted(final_names - inferred_names),
        "dropped": sorted(inferred_names - final_names),
    }
    if diff["added"] or diff["dropped"]:
        sys.stderr.write(
            f"tiffin: requirements differ from the inferred ones: added {diff['added'] or '-'}, "
            f"left out {diff['dropped'] or '-'}\n"
        )
    return final, diff


def capture(
    root: Path,
    *,
    flavor: str,
    frameworks: tuple[str, ...],
    requirements: Sequence[str] | None,
    python: str | None = None,
    platform: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write env/requirements.txt (and the lock) and return the manifest's environment."""
    target_python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    target_platform = platform or f"{sys.platform}/{_platform.machine()}"
    enabled = os.environ.get("TIFFIN_ENV_CAPTURE", "on").lower() not in ("off", "0", "false", "no")
    why: dict[str, list[str]] = {}
    if enabled:
        imports = trace_imports(root, flavor, options or {})
        if _takes_dataframes(root):
            # tiffin itself builds the DataFrame the model takes: pandas is a runtime need.
            imports.setdefault("pandas", []).append("flavor:tiffin.signature (DataFrame signature)")
        inferred, why = infer_requirements(imports, frameworks)
    else:
        inferred = sorted(f"{d}=={v}" for d in frameworks if (v := dist_version(d)) is not None)
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
    if requirements is not None:
        env["inferred"] = inferred
        env["difference"] = diff
    if enabled:
        from .lock import write_lock

        env["lock"] = write_lock(root, reqs, python=target_python, platform=target_platform)
    else:
        env["lock"] = {"status": "skipped"}
    return env
