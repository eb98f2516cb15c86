"""``tiffin verify``: prove a package runs in a clean environment before it ships.

Steps, each timed and reported:

1. ``integrity``: every byte against the manifest, and the signature when
   ``trusted_keys`` are given or ``TIFFIN_REQUIRE_SIGNED`` demands one;
2. ``environment``: the environment built from the lock in the content-addressed cache
   (``env="isolated"``, the default), or the current interpreter (``env="current"``);
3. ``replay``: (refused at once when the package has no example) the recorded
   examples run in a fresh subprocess of that environment (``python -I``, so nothing
   from the host's ``PYTHONPATH`` or working folder leaks in) and compared with the
   recorded outputs: exact for integers, booleans and strings,
   floats within ``rtol`` and ``atol`` (default 1e-6 each, as ``numpy.isclose``);
   the cold start (process launch to first prediction) is measured there.

The report (``to_dict()``, ``tiffin verify --json``) holds each step, the interpreter
used (``python``), the replay's figures (``replay``: load and predict seconds, the
tolerances, the Python version, and on a mismatch the ``difference``) and the cold start.

The first failure stops the run and is named: a missing module, a mismatched output
with the largest difference, an install error. Example::

    report = tiffin.verify("fraud-1.2.0")
    assert report.ok, report.render()
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .env.cache import ensure_environment
from .errors import TiffinError, UsageError, VerificationError
from .isolated import replay as isolated_replay
from .package.open import open_package

RTOL = 1e-6
ATOL = 1e-6


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class Report:
    """What ``verify`` found: ``ok``, each step, the cold start, the first failure."""

    package: str
    ok: bool = True
    steps: list[Step] = field(default_factory=list)
    cold_start_seconds: float | None = None
    error: str | None = None
    failed: str | None = None
    fix: str | None = None
    environment: str | None = None
    python: str | None = None
    replay: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [f"verify {self.package}"]
        for s in self.steps:
            lines.append(
                f"  [{'ok' if s.ok else 'FAIL'}] {s.name:<12} {s.detail} ({s.seconds:.2f} s)"
            )
        if self.ok:
            lines.append("result: verified")
        else:
            lines.append(f"result: FAILED at {self.failed}: {self.error}")
            if self.fix:
                lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


def _step_value(report: Report, name: str, fn: Callable[[], tuple[str, Any]]) -> Any:
    """Run ``fn`` as step ``name`` of ``report``; its value, or None once it failed."""
    started = time.perf_counter()
    try:
        detail, value = fn()
    except TiffinError as exc:
        first = exc.message.splitlines()[0] if exc.message else type(exc).__name__
        report.steps.append(Step(name, False, first[:300], time.perf_counter() - started))
        report.ok, report.error, report.failed = False, exc.message, name
        report.fix = exc.fix
        return None
    report.steps.append(Step(name, True, detail, time.perf_counter() - started))
    return value


def verify(
    path: str | os.PathLike[str],
    *,
    env: str = "isolated",
    trusted_keys: list[Any] | None = None,
    require_signed: bool | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> Report:
    """Verify the package at ``path`` and return a :class:`Report` (``report.ok``).

    A failing package does not raise: the report names the step and the failure. Bad
    arguments (an unknown ``env``, a negative tolerance) raise :class:`UsageError`.
    """
    if env not in ("isolated", "current"):
        raise UsageError(f"env must be 'isolated' or 'current', not {env!r}", where="env")
    if not (math.isfinite(rtol) and math.isfinite(atol)) or rtol < 0 or atol < 0:
        raise UsageError(
            f"rtol and atol must be finite and not negative, not {rtol!r} and {atol!r}",
            where="rtol/atol",
            fix="give tolerances like --rtol 1e-5 --atol 1e-8",
        )
    root = Path(path).resolve()
    report = Report(package=str(root), environment=env)

    def step(name: str, fn: Callable[[], tuple[str, Any]]) -> Any:
        return _step_value(report, name, fn)

    def integrity() -> tuple[str, Any]:
        # the same policy as load: keys given, or TIFFIN_REQUIRE_SIGNED set
        opened = open_package(root, trusted_keys=trusted_keys, require_signed=require_signed)
        manifest = opened.manifest
        return f"{len(manifest.files)} files match {manifest.digest}", opened

    opened = step("integrity", integrity)
    if opened is None:
        return report
    root = opened.root
    missing = [n for n in ("input.json", "output.json") if not (root / "examples" / n).is_file()]
    if missing:  # said before a build that could take minutes
        step("replay", _no_example(missing[0]))
        return report

    def environment() -> tuple[str, Any]:
        if env == "current":
            return f"current interpreter {sys.executable}", Path(sys.executable)
        python = ensure_environment(root)
        return f"built from the lock at {python.parent.parent}", python

    python = step("environment", environment)
    if python is None:
        return report
    report.python = str(python)

    def replay() -> tuple[str, Any]:
        result = isolated_replay.replay(
            root, python, current=env == "current", rtol=rtol, atol=atol
        )
        report.replay = {k: v for k, v in result.items() if k not in ("predicted_at", "match")}
        report.cold_start_seconds = result["cold_start_seconds"]
        if not result["match"]:
            raise VerificationError(
                f"the replayed example does not match the recorded output: {result['difference']}",
                where=str(root / "examples" / "output.json"),
                fix="the environment differs from the one the package was made in: compare "
                "env/requirements.lock with the versions used at pack time (or widen "
                "--rtol/--atol if the difference is numerical noise)",
            )
        return (
            f"examples match (rtol={rtol:g}, atol={atol:g}); "
            f"cold start {result['cold_start_seconds']:.3f} s",
            result,
        )

    step("replay", replay)
    return report


def _no_example(name: str) -> Callable[[], tuple[str, Any]]:
    def fail() -> tuple[str, Any]:
        raise VerificationError(
            f"the package has no recorded example to replay (no examples/{name})",
            where="examples/",
            fix="pack it with example= (a few rows of real input)",
        )

    return fail
