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
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..package import layout
from ..package.provenance import dist_version
from .lock import LockAhead, check_target, write_lock
from .pins import accelerator_of, canonical, requirement_name, top_level_owners
from .probes import FinalEnvironmentTrial, confirm_probes
from .trace import Inferred, Trace, trace_imports

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
    owners = top_level_owners()
    wanted_frameworks = {canonical(f) for f in frameworks}
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
            key = canonical(dist)
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


def _as_installed(distributions: Sequence[str]) -> list[str]:
    """``name==version`` for each installed distribution (the absent left out), sorted."""
    wanted = dict.fromkeys(distributions)
    return sorted(f"{d}=={v}" for d in wanted if (v := dist_version(d)) is not None)


def _takes_dataframes(root: Path) -> bool:
    try:
        sig = json.loads((root / layout.SCHEMA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return "dataframe" in (sig.get("input_kind"), sig.get("output_kind"))


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
    # What the user gave, before the slow trace; this machine's own names pass as they are.
    check_target(python, platform)
    enabled = os.environ.get("TIFFIN_ENV_CAPTURE", "on").lower() not in ("off", "0", "false", "no")
    why: dict[str, list[str]] = {}
    unresolved: dict[str, list[str]] = {}
    ahead = None
    if enabled and requirements is None:
        # Usually the lock is for the flavor's frameworks as installed: start it now.
        ahead = LockAhead(_as_installed([*frameworks, *RUNTIME]), python=target_python,
                          platform=target_platform)  # fmt: skip
    if enabled:
        # tiffin itself builds the DataFrame the model takes: pandas is a runtime need.
        frames = _takes_dataframes(root)
        trial = FinalEnvironmentTrial.start(
            root, flavor, options or {}, [*frameworks, *(["pandas"] if frames else [])],
            allow_pickle=allow_pickle,
        )  # fmt: skip
        try:
            trace = trace_imports(root, flavor, options or {}, allow_pickle=allow_pickle)
        except BaseException:
            if trial is not None:
                trial.cancel()
            raise
        if frames:
            trace.imports.setdefault("pandas", []).append(
                "flavor:tiffin.schema.signature (DataFrame signature)"
            )
        found = infer_requirements(trace, frameworks)
        if trial is not None and trial.settles(trace, found):
            needed: dict[str, list[str]] = {}
        else:
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
        inferred = _as_installed([*frameworks, *RUNTIME])
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
        env["lock"] = write_lock(
            root, reqs, python=target_python, platform=target_platform, ahead=ahead
        )
    else:
        env["lock"] = {"status": "skipped", "hashed": False}
    return env
