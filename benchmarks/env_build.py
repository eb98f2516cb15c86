"""Time to a ready environment for a scikit-learn package.

- tiffin, fresh: ``uv venv`` + ``uv pip sync --require-hashes`` from the package lock
  into an empty environment cache, plus the tiffin runtime (uv's download cache warm, as
  on any CI runner that caches it);
- tiffin, cached: the same call again (a lookup in the content-addressed cache);
- venv + pip: ``python -m venv`` + ``pip install --require-hashes -r`` of the same lock
  (pip's cache warm too).

One untimed warm-up of each fills the download caches; then the median of
TIFFIN_BENCH_RUNS runs (default 3). Prints a table, writes bench-results/env_build.json.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, table, write_json

RUNS = int(os.environ.get("TIFFIN_BENCH_RUNS", "3"))


def pip_build(work: Path, name: str, lock: Path) -> float:
    venv = work / name
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--require-hashes", "-r", str(lock)],
        check=True,
    )
    elapsed = time.perf_counter() - t
    shutil.rmtree(venv, ignore_errors=True)
    return elapsed


def main() -> None:
    os.environ["TIFFIN_ENV_CAPTURE"] = "on"
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import tiffin
    from tiffin.env import build

    work = Path(tempfile.mkdtemp(prefix="tiffin-env-bench-"))
    X, y = make_classification(n_samples=200, n_features=20, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    pkg = tiffin.pack(model, work / "sk", name="sk", version="1", example=X[:3]).path
    lock = pkg / "env" / "requirements.lock"
    assert tiffin.inspect(pkg).environment["lock"]["hashed"], "the benchmark needs a real lock"

    os.environ["TIFFIN_CACHE_DIR"] = str(work / "cache-warmup")
    build.ensure_environment(pkg)  # warm uv's download cache
    pip_build(work, "pip-warmup", lock)  # and pip's

    fresh, cached, pip = [], [], []
    for i in range(RUNS):
        os.environ["TIFFIN_CACHE_DIR"] = str(work / f"cache-{i}")
        t = time.perf_counter()
        build.ensure_environment(pkg)
        fresh.append(time.perf_counter() - t)
        t = time.perf_counter()
        build.ensure_environment(pkg)
        cached.append(time.perf_counter() - t)
        pip.append(pip_build(work, f"pip-venv-{i}", lock))

    rows = [
        [
            "tiffin, fresh build (uv, warm download cache)",
            f"{median(fresh):.2f} s",
            f"{median(pip) / median(fresh):.1f}x faster",
        ],
        [
            "tiffin, from the environment cache",
            f"{median(cached) * 1000:.1f} ms",
            f"{median(pip) / median(cached):,.0f}x faster",
        ],
        [
            "python -m venv + pip install --require-hashes -r (same lock)",
            f"{median(pip):.2f} s",
            "-",
        ],
    ]
    packages = sum(1 for line in lock.read_text().splitlines() if "==" in line)
    print(f"scikit-learn package, {packages} locked distributions, median of {RUNS} runs\n")
    print(table(["how", "median", "vs venv + pip"], rows))
    path = write_json("env_build", {
        "runs": RUNS, "locked_distributions": packages,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "fresh_s": fresh, "cached_s": cached, "venv_pip_s": pip,
        "median": {"fresh": median(fresh), "cached": median(cached), "venv_pip": median(pip)},
    })  # fmt: skip
    print(f"\nwrote {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
