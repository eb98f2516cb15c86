"""Build: a content-addressed environment cache, atomic and safe for concurrent builders."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tiffin.env.cache import cache_root, ensure_environment, env_key

pytestmark = pytest.mark.slow


def test_build_then_cache_hit(packed_env_iris: Path) -> None:
    python = ensure_environment(packed_env_iris)
    assert python.parent.parent.parent == cache_root()
    marker = python.parent.parent / ".tiffin-ready"
    stamp = marker.stat().st_mtime_ns
    again = ensure_environment(packed_env_iris)
    assert again == python
    # nothing was installed again (the time it takes is benchmarks/env_build.py's business)
    assert marker.stat().st_mtime_ns == stamp
    code = "import sklearn, skops, tiffin, sys; print('torch' in sys.modules)"
    out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    site = next(iter(python.parent.parent.glob("lib/python*/site-packages")))
    for heavy in ("click", "starlette", "uvicorn", "torch", "rich", "pandas", "cryptography"):
        assert not (site / heavy).exists(), heavy  # no packing or serving dependencies
    # the CLI finds it too (the key covers tiffin's own sources, so an edit to them in
    # between, as in a shared working tree, would build a fresh one: compare the place)
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "env", "build", str(packed_env_iris)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).parent.parent.parent == cache_root()


def test_same_lock_shares_one_environment(tmp_path: Path, packed_env_iris: Path) -> None:
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(packed_env_iris, twin)
    assert ensure_environment(twin) == ensure_environment(packed_env_iris)


BUILDER = textwrap.dedent(
    """
    import sys
    from tiffin.env.cache import ensure_environment
    print(ensure_environment(sys.argv[1]))
    """
)


def test_concurrent_builds_make_one_environment(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(cache))
    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3])
    # a builder killed earlier left its temporary folder behind
    key = env_key(
        (pkg.path / "env/requirements.lock").read_text(), pkg.manifest.environment["python"]
    )
    stale = cache_root() / f".{key}.tmp-999999"
    (stale / "bin").mkdir(parents=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(pkg.path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    pythons = {o.strip() for o, _ in outs}
    assert len(pythons) == 1
    built = Path(next(iter(pythons))).parent.parent
    envs = [p for p in cache_root().iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert envs == [built]
    assert [p for p in cache_root().glob(".*.tmp-*") if p != stale] == []  # no half builds
    if built.name == key:  # (tiffin's sources, part of the key, unchanged meanwhile)
        assert not stale.exists()
    code = "import sklearn, tiffin; print(tiffin.load(__import__('sys').argv[1]).predict([[5.1, 3.5, 1.4, 0.2]]))"
    run = subprocess.run(
        [pythons.pop(), "-I", "-c", code, str(pkg.path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_package_without_lock_resolves_its_requirements(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "off")
    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3])
    assert not (pkg.path / "env/requirements.lock").exists()
    python = ensure_environment(pkg.path)
    assert "no lock" in capfd.readouterr().err
    run = subprocess.run([str(python), "-I", "-c", "import sklearn, skops"], capture_output=True)
    assert run.returncode == 0


def test_missing_package_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(tiffin.PackageNotFoundError):
        ensure_environment(tmp_path / "nope")


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(cache))
    return cache


def test_a_damaged_cached_environment_is_built_again(
    packed_env_iris: Path, private_cache: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    python = ensure_environment(packed_env_iris)
    site = next(iter(python.parent.parent.glob("lib/python*/site-packages")))
    (site / "sklearn" / "__init__.py").unlink()  # a file lost from the cache entry
    again = ensure_environment(packed_env_iris)
    assert again == python
    assert "sklearn/__init__.py is missing" in capfd.readouterr().err
    run = subprocess.run([str(python), "-I", "-c", "import sklearn"], capture_output=True)
    assert run.returncode == 0, run.stderr
    # a module dropped into it afterwards makes it no longer the lock's environment
    (site / "sneaked_in.py").write_text("X = 1\n")
    ensure_environment(packed_env_iris)
    assert "sneaked_in.py was added" in capfd.readouterr().err
    assert not (site / "sneaked_in.py").exists()
    # bytecode written by running it is no damage: the next lookup is a hit, silently
    subprocess.run([str(python), "-c", "import sklearn.linear_model"], check=True)
    stamp = (python.parent.parent / ".tiffin-ready").stat().st_mtime_ns
    ensure_environment(packed_env_iris)
    assert (python.parent.parent / ".tiffin-ready").stat().st_mtime_ns == stamp
    assert capfd.readouterr().err == ""


def test_a_build_killed_mid_install_is_replaced_by_the_next(
    packed_env_iris: Path, private_cache: Path
) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(packed_env_iris)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((private_cache / "envs").glob(".*.tmp-*/bin/python")):
        assert time.monotonic() < deadline and proc.poll() is None, "the build never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((private_cache / "envs").glob(".*.tmp-*"))  # the half build it left
    python = ensure_environment(packed_env_iris)
    assert list((private_cache / "envs").glob(".*.tmp-*")) == []
    run = subprocess.run([str(python), "-I", "-c", "import sklearn, tiffin"], capture_output=True)
    assert run.returncode == 0, run.stderr


def test_an_unwritable_cache_is_a_clear_error(
    packed_env_iris: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # (as root a chmod would not stop the write; a file in the way does)
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(tiffin.EnvironmentBuildError, match="cannot write the environment cache"):
        ensure_environment(packed_env_iris)
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "env", "build", str(packed_env_iris)],
        capture_output=True, text=True, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "TIFFIN_CACHE_DIR" in proc.stderr


def test_a_local_label_pin_finds_its_accelerator_index() -> None:
    from tiffin.env.lock import accelerator_indexes, pins_of, pip_index_args

    lock = "torch==2.13.0+cpu \\\n    --hash=sha256:00\nnumpy==2.4.6 \\\n    --hash=sha256:11\n"
    assert pins_of(lock) == ["torch==2.13.0+cpu", "numpy==2.4.6"]
    extra = accelerator_indexes(pins_of(lock))
    assert extra == ["https://download.pytorch.org/whl/cpu"]
    args = pip_index_args({"extra-index-url": ["https://example.org/simple"]}, extra)
    assert args.count("--index-strategy") == 1  # uv refuses the option twice
    assert args[args.index(extra[0]) - 1] == "--extra-index-url"
    assert accelerator_indexes(["torch==2.13.0"]) == []  # PyPI's own build: no extra index


def test_a_relative_cache_dir_is_made_absolute(
    packed_env_iris: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment's Python runs from scratch folders: a relative cache path broke it."""
    from tiffin._verify import verify

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIFFIN_CACHE_DIR", "relative-cache")
    assert cache_root() == tmp_path / "relative-cache" / "envs"
    report = verify(packed_env_iris)
    assert report.ok, report.render()
    monkeypatch.setenv("TIFFIN_CACHE_DIR", "~/somewhere")
    assert cache_root() == Path.home() / "somewhere" / "envs"


def test_a_stuck_builder_is_waited_for_a_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A builder holding the lock forever (stopped, hung) once made every other builder
    of that environment wait forever; past LOCK_WAIT it is a clear error, naming the lock."""
    import fcntl

    from tiffin.env import cache

    path = tmp_path / "k.lock"
    with open(path, "w") as holder, open(path, "w") as waiter:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a separate open file: a real second holder
        monkeypatch.setattr(cache, "LOCK_WAIT", 0.3)
        started = time.monotonic()
        with pytest.raises(tiffin.EnvironmentBuildError, match="still holds .*k.lock"):
            cache._wait_for_lock(waiter, path)
        assert 0.3 <= time.monotonic() - started < 5
        fcntl.flock(holder, fcntl.LOCK_UN)
        cache._wait_for_lock(waiter, path)  # free: taken at once
