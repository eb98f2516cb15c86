"""tiffin verify: a clean environment from the lock, examples replayed, failures named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.env.conftest import pack_custom
from tiffin.verify import verify

pytestmark = pytest.mark.usefixtures("real_capture")


@pytest.fixture
def real_capture(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "on")
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "verify-cache"))


@pytest.fixture
def custom_source(tmp_path: Path) -> Path:
    from tests.env.conftest import PREDICT_IMPORT

    src = tmp_path / "scaled.py"
    src.write_text(PREDICT_IMPORT)
    return src


def test_verified_in_a_clean_environment(tmp_path: Path, custom_source: Path) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    report = verify(pkg.path)
    assert report.ok, report.render()
    assert [s.name for s in report.steps] == ["integrity", "environment", "replay"]
    assert report.cold_start_seconds is not None and report.cold_start_seconds > 0
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "verify", str(pkg.path), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


def test_missing_requirement_is_named(tmp_path: Path, custom_source: Path) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p", requirements=["numpy==" + np.__version__])
    report = verify(pkg.path)
    assert not report.ok
    assert "module 'packaging' is missing" in (report.error or "")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "verify", str(pkg.path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 10 and "FAIL" in proc.stdout and "packaging" in proc.stdout
    # lint sees the same hole statically
    from tiffin.lint import lint

    assert any(f.rule == "TL003" and "packaging" in f.message for f in lint(pkg.path))


def test_other_library_version_changes_outputs(tmp_path: Path, custom_source: Path) -> None:
    """Built with the installed packaging (major >= 24), verified against a lock of 21.3."""
    pkg = pack_custom(custom_source, tmp_path / "p", requirements=["+packaging==21.3"])
    report = verify(pkg.path)
    assert not report.ok
    assert "does not match the recorded output" in (report.error or "")
    assert "largest difference" in (report.error or "")


def test_tampered_package_fails_integrity_first(tmp_path: Path, custom_source: Path) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    (pkg.path / "code" / "scaled.py").write_text("raise SystemExit\n")
    report = verify(pkg.path, env="current")
    assert not report.ok and report.steps[0].name == "integrity" and not report.steps[0].ok
    assert "code/scaled.py" in (report.error or "")


def test_env_current(tmp_path: Path, custom_source: Path) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    report = verify(pkg.path, env="current")
    assert report.ok, report.render()


def test_predict_isolated(tmp_path: Path, custom_source: Path) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    (tmp_path / "in.json").write_text("[[1.0, 2.0]]")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "predict", str(pkg.path), "--input", str(tmp_path / "in.json"), "--isolated"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import packaging

    major = int(packaging.__version__.split(".")[0])
    assert json.loads(proc.stdout) == [[1.0 * major, 2.0 * major]]
