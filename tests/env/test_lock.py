"""Lock: uv's hashed resolution for the target, pip's sources passed on, an honest fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tiffin
from tests.env.conftest import pack_custom
from tiffin._lint import lint
from tiffin.env.lock import installed_closure, pip_config, pip_constraint_args, pip_index_args

pytestmark = pytest.mark.slow


@pytest.fixture
def no_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """No package source at all: pip's config off, uv pointed at a closed local port."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "UV_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_NO_CACHE", "1")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")


def test_lock_is_hashed_and_for_the_platform(packed_env_iris: Path) -> None:
    lock = (packed_env_iris / "env/requirements.lock").read_text()
    assert "--hash=sha256:" in lock
    for pin in ("scikit-learn==", "numpy==", "scipy==", "joblib==", "threadpoolctl=="):
        assert pin in lock  # transitive dependencies are locked too
    info = tiffin.inspect(packed_env_iris).environment["lock"]
    assert info["hashed"] is True and info["status"] == "locked"
    assert info["platform"] == "linux/x86_64"
    assert info["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert len(info["sha256"]) == 64
    assert lint(packed_env_iris) == []  # a clean, really locked package has no findings


def test_pip_configuration_is_passed_to_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    index = tmp_path / "simple"
    index.mkdir()
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\n"
        f"find-links = {wheels}\n"
        f"extra-index-url = file://{index} file://{tmp_path}/missing\n"
        f"constraint = {constraints}\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    config = pip_config()
    args = pip_index_args(config)
    assert ["--find-links", str(wheels)] == args[
        args.index(str(wheels)) - 1 : args.index(str(wheels)) + 1
    ]
    assert f"file://{index}" in args and f"file://{tmp_path}/missing" not in args
    assert args[-2:] == ["--index-strategy", "unsafe-best-match"]
    assert ["--constraint", str(constraints)] == pip_constraint_args(config)[-2:]


def test_no_index_falls_back_to_unhashed_closure(
    tmp_path: Path, custom_source: Path, no_index: None, capfd: pytest.CaptureFixture[str]
) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    info = pkg.manifest.environment["lock"]
    assert info["hashed"] is False and info["status"] == "installed-closure"
    assert info["reason"] == "no package index reachable"
    err = capfd.readouterr().err
    assert "UNHASHED" in err and "no package index reachable" in err
    lock = (pkg.path / "env/requirements.lock").read_text()
    assert lock.startswith("# UNHASHED") and "--hash" not in lock
    assert f"packaging=={__import__('packaging').__version__}" in lock
    # lint says so, and `tiffin env lock` makes it a real lock once an index is back
    assert "TL008" in {f.rule for f in lint(pkg.path)}


@pytest.fixture
def saved_environ() -> dict[str, str]:
    return dict(os.environ)


def test_relock_restores_hashes(
    tmp_path: Path, custom_source: Path, saved_environ: dict[str, str], no_index: None
) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")  # packed with no index reachable
    assert pkg.manifest.environment["lock"]["hashed"] is False
    # lock again with the indexes back, through the CLI
    env = saved_environ
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "env", "lock", str(pkg.path)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "locked" in proc.stdout and "hashed" in proc.stdout
    manifest = tiffin.inspect(pkg.path)  # still verifies: the seal was renewed
    assert manifest.environment["lock"]["hashed"] is True
    assert manifest.digest != pkg.manifest.digest
    assert "--hash=sha256:" in (pkg.path / "env/requirements.lock").read_text()
    assert "TL008" not in {f.rule for f in lint(pkg.path)}


def test_lock_for_another_platform_is_recorded_and_not_built_here(
    tmp_path: Path, packed_env_iris: Path
) -> None:
    from tiffin.env.cache import ensure_environment
    from tiffin.env.lock import relock

    manifest = relock(packed_env_iris, dest=tmp_path / "arm", platform="linux/aarch64")
    assert manifest.environment["platform"] == "linux/aarch64"
    assert manifest.environment["lock"]["platform"] == "linux/aarch64"
    with pytest.raises(tiffin.EnvironmentBuildError, match="linux/aarch64"):
        ensure_environment(tmp_path / "arm")
    # the original is untouched
    assert tiffin.inspect(packed_env_iris).environment["platform"] == "linux/x86_64"


def test_installed_closure() -> None:
    text = installed_closure(["scikit-learn", "not-installed-anywhere==1.0"], reason="offline")
    assert text.startswith("# UNHASHED")
    assert "scikit-learn==" in text and "numpy==" in text and "--hash" not in text
    # what is not installed is kept as written, so a build fails naming it
    assert "\nnot-installed-anywhere==1.0\n" in text
    # a pin to another version than the installed one is kept too, never swapped
    other = installed_closure(["numpy==0.0.1"])
    assert "\nnumpy==0.0.1\n" in other and f"numpy=={np.__version__}" not in other


@pytest.fixture
def local_index_only(tmp_path: Path, scale_wheels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reachable, local package source (an empty index + the tiffin-scale wheels)."""
    empty = tmp_path / "empty-index"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "UV_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UV_INDEX_URL", empty.as_uri())
    monkeypatch.setenv("UV_FIND_LINKS", str(scale_wheels))
    monkeypatch.setenv("UV_NO_CACHE", "1")


def test_a_pin_no_index_has_and_not_installed_is_an_error(
    tmp_path: Path, custom_source: Path, local_index_only: None
) -> None:
    """Not an unhashed lock that can never be built: a clear error at pack, nothing written."""
    with pytest.raises(tiffin.EnvironmentBuildError, match="unresolvable") as info:
        pack_custom(custom_source, tmp_path / "p", requirements=["+tiffin-scale==9.9"])
    assert "tiffin-scale==9.9" in (info.value.fix or "")
    assert not (tmp_path / "p").exists()


def test_uv_offline_falls_back_to_the_closure(
    tmp_path: Path, custom_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "UV_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_NO_CACHE", "1")
    pkg = pack_custom(custom_source, tmp_path / "p")
    info = pkg.manifest.environment["lock"]
    assert info["status"] == "installed-closure" and info["reason"] == "no package index reachable"


def test_no_closure_stands_in_for_another_target(
    tmp_path: Path, packed_env_iris: Path, no_index: None
) -> None:
    from tiffin.env.lock import relock

    before = (packed_env_iris / "env/requirements.lock").read_bytes()
    with pytest.raises(tiffin.EnvironmentBuildError, match=r"Python 3\.12 on linux/aarch64"):
        relock(packed_env_iris, python="3.12", platform="linux/aarch64")
    assert (packed_env_iris / "env/requirements.lock").read_bytes() == before
    assert tiffin.inspect(packed_env_iris).environment["lock"]["hashed"] is True


@pytest.mark.parametrize(
    ("python", "platform", "where"),
    [("2.7", "linux/x86_64", "--python"), ("three", "linux/x86_64", "--python"),
     ("3.11", "macos", "--platform"), ("3.11", "linux/sparc", "--platform")],
)  # fmt: skip
def test_bad_targets_are_usage_errors(python: str, platform: str, where: str) -> None:
    from tiffin.env.lock import check_target

    with pytest.raises(tiffin.UsageError) as info:
        check_target(python, platform)
    assert info.value.where == where
    check_target("3.12", "macos/arm64")  # the aliases and uv's own names pass
    check_target("3.11", "aarch64-apple-darwin")
    check_target("3.12", "linux/ppc64le")
    check_target(None, None)  # not given: this machine's own names are never refused


def test_env_lock_cli_refuses_a_bad_platform(packed_env_iris: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "env", "lock", str(packed_env_iris),
         "--platform", "bogus", "-o", str(tmp_path / "x")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "unknown target platform 'bogus'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_gpu_only_packages() -> None:
    from tiffin.env.lock import gpu_only_packages

    lock = "nvidia-nccl-cu12==2.32.3 \\\n    --hash=sha256:00\nxgboost==3.2.0 \\\n"
    assert gpu_only_packages(["xgboost==3.2.0"], lock) == ["nvidia-nccl-cu12"]
    assert gpu_only_packages(["torch==2.13.0+cpu", "xgboost==3.2.0"], lock) == ["nvidia-nccl-cu12"]
    # asked for by name, or a CUDA build in the pins: kept
    assert gpu_only_packages(["xgboost==3.2.0", "nvidia-nccl-cu12==2.32.3"], lock) == []
    assert gpu_only_packages(["torch==2.13.0+cu128", "xgboost==3.2.0"], lock) == []


def test_cpu_xgboost_package_leaves_out_nccl_and_verifies(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """XGBoost declares a 470 MB NCCL wheel it loads only for multi-GPU training."""
    import xgboost

    from tiffin._verify import verify

    rng = np.random.RandomState(0)
    X = rng.rand(60, 3)
    model = xgboost.XGBClassifier(n_estimators=3, max_depth=2).fit(X, (X[:, 0] > 0.5).astype(int))
    pkg = tiffin.pack(model, tmp_path / "p", name="xgb", version="1", example=X[:3])
    env = pkg.manifest.environment
    lock = (pkg.path / "env/requirements.lock").read_text()
    if sys.platform == "linux":
        assert env["lock"]["omitted"] == ["nvidia-nccl-cu12"]
        assert "nvidia-nccl-cu12" in capfd.readouterr().err
    assert "\nnvidia-" not in lock and env["accelerator"] is None
    # the wrapper needs scikit-learn, which XGBoost imports as if it were optional
    assert any(r.startswith("scikit-learn==") for r in env["requirements"])
    report = verify(pkg.path)
    assert report.ok, report.render()


def test_pip_config_read_where_this_python_has_no_pip(packed_env_iris: Path) -> None:
    """A uv-made environment has no pip; the pip on PATH reads the same config files."""
    from tiffin.env.cache import ensure_environment

    bare = ensure_environment(packed_env_iris)  # a tiffin environment: no pip in it
    assert subprocess.run([str(bare), "-m", "pip", "--version"], capture_output=True).returncode
    src = Path(tiffin.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(src),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}  # fmt: skip
    code = "import json; from tiffin.env.lock import pip_config; print(json.dumps(pip_config()))"
    proc = subprocess.run([str(bare), "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == pip_config()
