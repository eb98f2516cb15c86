from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import tiffin
from tiffin.env.build import cache_root, ensure_environment
from tiffin.env.lock import installed_closure


def test_lock_is_hashed_and_for_the_platform(packed_env_iris: Path) -> None:
    lock = (packed_env_iris / "env/requirements.lock").read_text()
    assert "--hash=sha256:" in lock
    info = tiffin.inspect(packed_env_iris).environment["lock"]
    assert info["hashed"] is True and info["platform"] == "linux/x86_64"


def test_build_then_cache_hit(packed_env_iris: Path) -> None:
    python = ensure_environment(packed_env_iris)
    marker = python.parent.parent / ".tiffin-ready"
    stamp = marker.stat().st_mtime_ns
    started = time.perf_counter()
    again = ensure_environment(packed_env_iris)
    assert again == python
    assert time.perf_counter() - started < 1.0
    assert marker.stat().st_mtime_ns == stamp  # nothing was installed again
    out = subprocess.run([str(python), "-c", "import sklearn, tiffin, sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    site = next(iter(python.parent.parent.glob("lib/python*/site-packages")))
    for heavy in ("click", "starlette", "uvicorn", "torch", "rich"):
        assert not (site / heavy).exists(), heavy


def test_concurrent_builds_make_one_environment(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], monkeypatch: Any
) -> None:
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(tmp_path / "cache"))
    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3])
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(ensure_environment(pkg.path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    envs = [p for p in cache_root().iterdir() if p.is_dir()]
    assert len(envs) == 1 and not [p for p in cache_root().iterdir() if ".tmp-" in p.name]


def test_installed_closure_fallback_is_unhashed() -> None:
    text = installed_closure(["scikit-learn"])
    assert text.startswith("# UNHASHED")
    assert "scikit-learn==" in text and "numpy==" in text and "--hash" not in text


def test_lock_falls_back_when_no_index(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], monkeypatch: Any, capfd: Any
) -> None:
    from tiffin.env import lock

    monkeypatch.setattr(
        lock, "pip_index_args", lambda: ["--index-url", "http://127.0.0.1:9/simple", "--offline"]
    )
    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3])
    info = pkg.manifest.environment["lock"]
    assert info["hashed"] is False and info["status"] == "installed-closure"
    assert "UNHASHED" in capfd.readouterr().err
