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
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EnvironmentBuildError

if TYPE_CHECKING:
    from .capture import Inferred, Trace

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
    from .lock import installed_pins

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
    from .capture import trace_imports

    try:
        again = trace_imports(root, flavor, options, blocked, allow_pickle=allow_pickle)
    except EnvironmentBuildError:
        return False
    return again.output == trace.output
