"""Tell a library's probe for an optional integration from a need it imports as if optional.

Capture leaves out a distribution that only a library imported, outside what the direct
requirements depend on: scikit-learn touching torch to see whether array-API inputs are
torch tensors is such a probe, and MLflow's listing of torch there is the mistake to
avoid. But a library imports some real needs the same way: XGBoost's scikit-learn
wrappers need scikit-learn, pandas reads Parquet with pyarrow, and each declares them as
optional. The two differ in what happens without them, and that can be tried: run the
load and predict again in a fresh process with those modules made unimportable (for
``import`` and for ``importlib.util.find_spec`` alike). If the model still gives the
same bytes on its example, they were probes; if not, each is tried alone (up to
:data:`MAX_ALONE`; beyond that they are kept, erring on the side of an environment that
works) and the ones it cannot do without become requirements.

Those trials cost a fresh interpreter each, after the trace. Most models need nothing a
library imported, so a guess of the final environment is tried *alongside* the trace
(:class:`FinalEnvironmentTrial`): load and predict with only the flavor's frameworks,
what they depend on and tiffin importable. When the trace then finds no requirement
outside that guess and the guess gave the same output, the guess was the environment
the lock will build, the proof is the same, and no trial is left to run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import EnvironmentBuildError
from .pins import canonical, installed_pins, top_level_owners
from .trace import Inferred, Trace, finish_trace, start_trace, trace_imports

MAX_ALONE = 8
_IMPORTER = re.compile(r"\(imported by ([^)\s]+)\)")


def confirm_probes(
    root: Path,
    flavor: str,
    options: dict[str, Any],
    trace: Trace,
    found: Inferred,
    *,
    allow_pickle: bool = False,
) -> dict[str, list[str]]:
    """Distributions that only a library imported but that load or predict needs.

    Returns distribution -> the imports (``"pyarrow (imported by pandas.io...)"``).
    """
    covered = set(installed_pins(found.pins)[0])
    suspects = {d: m for d, m in found.library_imports.items() if d not in covered}
    if not suspects:
        return {}
    modules = {d: sorted({entry.split(" ", 1)[0] for entry in m}) for d, m in suspects.items()}
    everything = [m for ms in modules.values() for m in ms]
    if _same_without(root, flavor, options, trace, everything, allow_pickle):
        return {}
    # Alone, those a non-suspect imported first: once such a library is found needed,
    # its own requirements cover the suspects it imported in turn (scikit-learn's joblib).
    suspect_modules = {m for ms in modules.values() for m in ms}

    def imported_by_a_suspect(dist: str) -> bool:
        importers = {_IMPORTER.search(e) for e in suspects[dist]}
        return all(i and i.group(1).split(".")[0] in suspect_modules for i in importers)

    needed: dict[str, list[str]] = {}
    tried = 0
    for dist in sorted(modules, key=lambda d: (imported_by_a_suspect(d), d)):
        if dist in covered:
            continue
        tried += 1
        if tried > MAX_ALONE or not _same_without(
            root, flavor, options, trace, modules[dist], allow_pickle
        ):
            needed[dist] = suspects[dist]
            covered = set(installed_pins([*found.pins, *needed])[0])
    return needed


def _same_without(
    root: Path,
    flavor: str,
    options: dict[str, Any],
    trace: Trace,
    blocked: list[str],
    allow_pickle: bool,
) -> bool:
    """Do load and predict give the same output with ``blocked`` unimportable?"""
    try:
        again = trace_imports(root, flavor, options, blocked, allow_pickle=allow_pickle)
    except EnvironmentBuildError:
        return False
    return again.output == trace.output


class FinalEnvironmentTrial:
    """Load and predict, alongside the trace, with only a guessed final environment importable.

    ``allowed`` is the guess: distribution names (canonical) whose modules stay
    importable; every other installed distribution's top-level modules are blocked.
    """

    def __init__(
        self,
        root: Path,
        flavor: str,
        options: dict[str, Any],
        allowed: set[str],
        *,
        allow_pickle: bool = False,
    ) -> None:
        self.root = root
        self.allowed = allowed
        blocked = _modules_outside(allowed | {"tiffin"})
        self.proc: subprocess.Popen[str] | None = start_trace(
            root, flavor, options, blocked, allow_pickle=allow_pickle
        )

    @classmethod
    def start(
        cls,
        root: Path,
        flavor: str,
        options: dict[str, Any],
        frameworks: Iterable[str],
        *,
        allow_pickle: bool = False,
    ) -> FinalEnvironmentTrial | None:
        """The trial for a flavor's frameworks, or None where it cannot pay.

        It cannot with one CPU (it would only take turns with the trace), nor for a
        flavor that names no framework (custom, pickle: their needs are anyone's guess).
        """
        affinity = getattr(os, "sched_getaffinity", None)
        if (len(affinity(0)) if affinity else os.cpu_count() or 1) < 2:
            return None
        wanted = [f for f in frameworks if canonical(f) != "numpy"]
        if not wanted:
            return None
        allowed = set(installed_pins([*wanted, "numpy"])[0])
        return cls(root, flavor, options, allowed, allow_pickle=allow_pickle)

    def settles(self, trace: Trace, found: Inferred) -> bool:
        """Did the guess prove what the probe trials would: the lock's environment suffices?

        True when the trial gave the trace's output and everything it could import is in
        the closure of the requirements found (so the lock builds no less than it had).
        """
        if self.proc is None:
            return False
        proc, self.proc = self.proc, None
        try:
            again = finish_trace(proc, self.root)
        except EnvironmentBuildError:
            return False
        return again.output == trace.output and self.allowed <= set(installed_pins(found.pins)[0])

    def cancel(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate()
            self.proc = None


def _modules_outside(allowed: set[str]) -> list[str]:
    """Installed top-level modules none of whose distributions is ``allowed``."""
    return sorted(
        top
        for top, dists in top_level_owners().items()
        if top not in sys.stdlib_module_names and not any(canonical(d) in allowed for d in dists)
    )
