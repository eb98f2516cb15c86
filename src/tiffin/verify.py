"""``tiffin verify``: prove a package runs in a clean environment before it ships.

Steps, each reported: integrity (every byte against the manifest), the environment
built from the lock (or the current one with ``env="current"``), the recorded examples
replayed in a subprocess inside it and compared with the recorded outputs (exact for
integers and strings; floats within rtol=1e-6, atol=1e-6), and the cold start measured
there. The first failure stops the run and is named: a missing module, a mismatched
output with the largest difference, an install error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import TiffinError, VerificationError
from .integrity import verify_tree


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class Report:
    package: str
    ok: bool = True
    steps: list[Step] = field(default_factory=list)
    cold_start_seconds: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [f"verify {self.package}"]
        for s in self.steps:
            lines.append(
                f"  [{'ok' if s.ok else 'FAIL'}] {s.name:<12} {s.detail} ({s.seconds:.2f} s)"
            )
        lines.append("result: " + ("verified" if self.ok else f"FAILED: {self.error}"))
        return "\n".join(lines)


def _missing_module(stderr: str) -> str | None:
    m = re.search(r"No module named '([^']+)'", stderr)
    return m.group(1) if m else None


def verify(
    path: str | os.PathLike[str],
    *,
    env: str = "isolated",
    trusted_keys: list[Any] | None = None,
) -> Report:
    """Verify the package at ``path``; returns a Report (``report.ok``), never raises for a
    failing package (the report names the failure)."""
    root = Path(path).resolve()
    report = Report(package=str(root))

    def step(name: str, fn: Any) -> Any:
        started = time.perf_counter()
        try:
            detail, value = fn()
        except TiffinError as exc:
            report.steps.append(
                Step(name, False, exc.message.splitlines()[0], time.perf_counter() - started)
            )
            report.ok, report.error = False, exc.message
            return None
        report.steps.append(Step(name, True, detail, time.perf_counter() - started))
        return value

    def integrity() -> tuple[str, Any]:
        manifest = verify_tree(root)
        if trusted_keys:
            from .security.signing import verify_signature

            verify_signature(root, manifest, trusted_keys, required=True)
        return f"{len(manifest.files)} files match {manifest.digest}", manifest

    if step("integrity", integrity) is None:
        return report

    def environment() -> tuple[str, Any]:
        if env == "current":
            return f"current interpreter {sys.executable}", Path(sys.executable)
        from .env.build import ensure_environment

        python = ensure_environment(root)
        return f"built from the lock at {python.parent.parent}", python

    python = step("environment", environment)
    if python is None:
        return report

    def replay() -> tuple[str, Any]:
        env_vars = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        if env == "current":
            env_vars["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        proc = subprocess.run(
            [str(python), "-m", "tiffin.env.replay", "examples", str(root)],
            capture_output=True, text=True, timeout=1800, env=env_vars, cwd=str(root.parent),
        )  # fmt: skip
        result = None
        for line in proc.stdout.splitlines():
            if line.startswith("TIFFIN-REPLAY "):
                result = json.loads(line[len("TIFFIN-REPLAY ") :])
        if proc.returncode != 0 or result is None:
            module = _missing_module(proc.stderr)
            if module:
                raise VerificationError(
                    f"module {module!r} is missing from the package's environment",
                    fix=f"add the distribution that provides {module!r} to the requirements (or "
                    "let tiffin infer them), then pack again",
                )
            raise VerificationError(f"the package failed to run: {proc.stderr.strip()[-1500:]}")
        if not result["match"]:
            raise VerificationError(
                f"the replayed example does not match the recorded output: {result['difference']}"
            )
        report.cold_start_seconds = result["cold_start_seconds"]
        return f"examples match; cold start {result['cold_start_seconds']:.3f} s", result

    step("replay", replay)
    return report
