"""tiffin verify: a clean environment from the lock, examples replayed, failures named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tiffin
from tests.env.conftest import (  # noqa: F401  (fixtures shared with tests/env)
    custom_source,
    env_cache,
    pack_custom,
    real_capture,
    scale_installed,
    scale_wheels,
)
from tiffin._lint import lint
from tiffin._verify import verify

pytestmark = pytest.mark.slow


def pack_scale(src: Path, dest: Path, **kwargs: object) -> tiffin.Package:
    return tiffin.pack(
        f"{src}:Scaled", dest, name="scale", version="1", example=np.arange(4.0).reshape(2, 2),
        **kwargs,
    )  # type: ignore[arg-type]  # fmt: skip


def test_verified_in_a_clean_environment(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    pkg = pack_custom(custom_source, tmp_path / "p")
    report = verify(pkg.path)
    assert report.ok, report.render()
    assert [s.name for s in report.steps] == ["integrity", "environment", "replay"]
    assert report.cold_start_seconds is not None and 0 < report.cold_start_seconds < 60
    assert "verified" in report.render()
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "verify", str(pkg.path), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["failed"] is None and data["cold_start_seconds"] > 0


def test_missing_requirement_is_named(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    pkg = pack_custom(custom_source, tmp_path / "p", requirements=["numpy==" + np.__version__])
    report = verify(pkg.path)
    assert not report.ok and report.failed == "replay"
    assert "module 'packaging' is missing" in (report.error or "")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "verify", str(pkg.path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 10 and "FAIL" in proc.stdout and "'packaging'" in proc.stdout
    # lint sees the same hole statically
    assert any(f.rule == "TL003" and "packaging" in f.message for f in lint(pkg.path))


def test_other_library_version_changes_outputs(
    tmp_path: Path,
    scale_installed: Path,  # noqa: F811
) -> None:
    """Packed with tiffin-scale 1.0 installed, locked (and so verified) against 2.0."""
    good = pack_scale(scale_installed, tmp_path / "good")
    assert "tiffin-scale==1.0" in good.manifest.environment["requirements"]
    assert verify(good.path).ok

    pkg = pack_scale(scale_installed, tmp_path / "p", requirements=["+tiffin-scale==2.0"])
    assert "tiffin-scale==2.0" in (pkg.path / "env/requirements.lock").read_text()
    report = verify(pkg.path)
    assert not report.ok and report.failed == "replay"
    assert "does not match the recorded output" in (report.error or "")
    assert "largest difference 3" in (report.error or "")  # 3.0 * 2 - 3.0 * 1
    # a tolerance wide enough lets it through, and says which one was used
    loose = verify(pkg.path, atol=10.0)
    assert loose.ok and "atol=10" in loose.render()


def test_install_error_is_named(
    tmp_path: Path,
    scale_installed: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Locked where its wheel was found; verified where no source has it any more."""
    pkg = pack_scale(scale_installed, tmp_path / "p")
    assert pkg.manifest.environment["lock"]["hashed"] is True
    monkeypatch.delenv("UV_FIND_LINKS")
    monkeypatch.setenv("UV_NO_CACHE", "1")  # nor uv's download cache
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(tmp_path / "fresh-cache"))
    report = verify(pkg.path)
    assert not report.ok and report.failed == "environment"
    assert "installing the locked requirements failed" in (report.error or "")
    assert "tiffin-scale" in (report.error or "")
    assert report.replay is None and report.cold_start_seconds is None


def test_mismatch_report_is_complete_json(
    tmp_path: Path,
    scale_installed: Path,  # noqa: F811
) -> None:
    pkg = pack_scale(scale_installed, tmp_path / "p", requirements=["+tiffin-scale==2.0"])
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "verify", str(pkg.path), "--json", "--atol", "0.5"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 10, proc.stderr
    data = json.loads(proc.stdout)  # stdout is the JSON document alone
    assert data["ok"] is False and data["failed"] == "replay"
    assert "largest difference 3" in data["replay"]["difference"]
    assert data["replay"]["atol"] == 0.5 and data["replay"]["load_seconds"] >= 0
    assert data["python"].endswith("/bin/python") and data["cold_start_seconds"] > 0
    assert [s["name"] for s in data["steps"]] == ["integrity", "environment", "replay"]


def test_no_example_fails_before_building(
    tmp_path: Path,
    custom_source: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tiffin.schema.signature import Signature

    sig = Signature.infer(np.ones((2, 2)), np.ones((2, 2)))
    pkg = tiffin.pack(f"{custom_source}:VersionScaled", tmp_path / "p", name="s", version="1",
                      signature=sig)  # fmt: skip
    cache = tmp_path / "untouched-cache"
    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(cache))
    report = verify(pkg.path)
    assert not report.ok and report.failed == "replay"
    assert "no recorded example" in (report.error or "")
    assert [s.name for s in report.steps] == ["integrity", "replay"]
    assert not cache.exists()  # no environment was built for nothing


def test_tampered_package_fails_integrity_first(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    pkg = pack_custom(custom_source, tmp_path / "p")
    (pkg.path / "code" / "scaled.py").write_text("raise SystemExit\n")
    report = verify(pkg.path, env="current")
    assert not report.ok and report.steps[0].name == "integrity" and not report.steps[0].ok
    assert report.failed == "integrity" and "code/scaled.py" in (report.error or "")


def test_env_current(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    pkg = pack_custom(custom_source, tmp_path / "p")
    report = verify(pkg.path, env="current")
    assert report.ok, report.render()
    assert "current interpreter" in report.steps[1].detail


def test_signature_policy_fails_integrity_before_any_replay(
    tmp_path: Path,
    custom_source: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under TIFFIN_REQUIRE_SIGNED an unsigned package once passed integrity and failed
    only at replay; it is refused at the integrity step, as load refuses it."""
    pkg = pack_custom(custom_source, tmp_path / "p")
    monkeypatch.setenv("TIFFIN_REQUIRE_SIGNED", "1")
    report = verify(pkg.path, env="current")
    assert report.failed == "integrity" and len(report.steps) == 1
    assert "not signed" in (report.error or "")
    private, public = tiffin.keygen(tmp_path / "k")
    tiffin.sign(pkg.path, private)
    assert verify(pkg.path, env="current", trusted_keys=[public]).ok
    no_keys = verify(pkg.path, env="current")  # signed, but nothing to check it against
    assert no_keys.failed == "integrity" and "no trusted keys" in (no_keys.error or "")


def test_bad_arguments(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    with pytest.raises(tiffin.UsageError):
        verify(tmp_path, env="docker")
    with pytest.raises(tiffin.UsageError):
        verify(tmp_path, rtol=-1)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(tiffin.UsageError, match="finite"):
            verify(tmp_path, atol=bad)
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "verify", str(tmp_path), "--rtol", "nan"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "finite" in proc.stderr and "Traceback" not in proc.stderr
    report = verify(tmp_path / "missing")
    assert not report.ok and report.failed == "integrity"


def test_a_single_file_archive_verifies_and_runs_isolated(
    tmp_path: Path,
    custom_source: Path,  # noqa: F811
) -> None:
    """What `tiffin predict` takes, verify, env build, --isolated and lint take too."""
    from tiffin.env.cache import ensure_environment
    from tiffin.isolated.predict import run_isolated
    from tiffin.package.archive import archive

    pkg = pack_custom(custom_source, tmp_path / "p")
    file = archive(pkg.path, tmp_path / "scaled.tiffin")
    report = verify(file)
    assert report.ok, report.render()
    assert [s.name for s in report.steps] == ["integrity", "environment", "replay"]
    assert ensure_environment(file) == ensure_environment(pkg.path)
    (tmp_path / "in.json").write_text("[[1.0, 2.0]]")
    run_isolated(file, tmp_path / "in.json", tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text())
    assert lint(file) == lint(pkg.path)
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "lint", str(file)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    # a file that is no archive fails integrity, named
    (tmp_path / "junk.tiffin").write_text("not an archive")
    bad = verify(tmp_path / "junk.tiffin")
    assert not bad.ok and bad.failed == "integrity" and "not a tiffin archive" in (bad.error or "")
