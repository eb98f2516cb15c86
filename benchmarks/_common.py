"""Shared helpers for the benchmarks: timing fresh processes, tables, JSON, side venvs."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench-results"


def time_process(argv: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall-clock seconds of ``runs`` fresh processes; each must exit 0."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **(env or {})}
        )
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])}... failed:\n{proc.stderr[-2000:]}")
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def uv_bin() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    return found


def index_args() -> list[str]:
    """pip's configured sources (where a CPU build of torch may live) as uv arguments."""
    from tiffin.env.lock import pip_config, pip_constraint_args, pip_index_args

    config = pip_config()
    args = pip_index_args(config) + pip_constraint_args(config)
    if "--index-strategy" not in args:
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def side_venv(name: str, requirements: list[str]) -> Path | None:
    """A venv beside the results with ``requirements`` installed; None if that fails."""
    venv = RESULTS / f".venv-{name}"
    python = venv / "bin" / "python"
    marker = venv / ".ready"
    wanted = "\n".join(sorted(requirements))
    if marker.is_file() and marker.read_text() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    uv = uv_bin()
    steps = [
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(python), *index_args(), *requirements],
    ]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"[skip] side venv {name}: {proc.stderr.strip()[-400:]}", file=sys.stderr)
            return None
    marker.write_text(wanted)
    return python
