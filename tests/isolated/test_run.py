"""Starting the child and mapping its failures: one mapping, each case told one way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiffin import errors
from tiffin.isolated.child import ERROR_PREFIX
from tiffin.isolated.run import (
    _HOST_ONLY,
    child_failure,
    clean_env,
    missing_module,
    reported_error,
    run_child,
)

ROOT = Path("/pkgs/fraud-1")


def _reported(type_: str, message: str = "bad input", **extra: object) -> str:
    return ERROR_PREFIX + json.dumps({"type": type_, "message": message, **extra})


def test_clean_env_drops_what_would_leak_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _HOST_ONLY:
        monkeypatch.setenv(name, "/host/site-packages")
    monkeypatch.setenv("TIFFIN_CACHE_DIR", "/cache")
    env = clean_env()
    assert not set(_HOST_ONLY) & set(env)
    assert env["TIFFIN_CACHE_DIR"] == "/cache"  # everything else passes through
    assert {"PYTHONPATH", "PYTHONHOME", "TIFFIN_REQUIRE_SIGNED"} <= set(_HOST_ONLY)


def test_the_child_gets_neither_the_signing_policy_nor_the_working_folder(
    tmp_path: Path, packed_iris: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host applied the policy already; the child, with no keys, would refuse an
    unsigned package. A ``tiffin`` folder where the child runs is not what it imports."""
    monkeypatch.setenv("TIFFIN_REQUIRE_SIGNED", "1")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "tiffin").mkdir()
    (tmp_path / "tiffin" / "__init__.py").write_text("raise SystemExit(42)\n")
    proc = run_child(Path(sys.executable), ["examples", str(packed_iris)], cwd=tmp_path,
                     current=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("TIFFIN-REPLAY ")
    proc = run_child(Path(sys.executable), ["nonsense"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: python -m tiffin.isolated.child")
    assert not list(packed_iris.rglob("__pycache__"))  # -B: nothing written into the package


def test_run_child_in_the_current_interpreter_finds_tiffin(tmp_path: Path) -> None:
    proc = run_child(Path(sys.executable), ["examples", str(tmp_path)], cwd=tmp_path, current=True)
    # tiffin imported (the error is about the package, not the module), and reported as one line
    assert proc.returncode == 3, proc.stderr
    assert isinstance(reported_error(proc.stderr), errors.PackageNotFoundError)


def test_a_python_that_will_not_start(tmp_path: Path) -> None:
    for error in (errors.EnvironmentBuildError, errors.VerificationError):
        with pytest.raises(error, match="cannot start the environment's Python") as info:
            run_child(tmp_path / "bin" / "python", ["examples"], cwd=tmp_path, error=error)
        assert info.value.where == str(tmp_path / "bin" / "python")
        assert "tiffin env build" in (info.value.fix or "")


def test_a_hanging_child_times_out(tmp_path: Path) -> None:
    sleeper = tmp_path / "python"
    sleeper.write_text("#!/bin/sh\nsleep 30\n")
    sleeper.chmod(0o755)
    with pytest.raises(subprocess.TimeoutExpired):
        run_child(sleeper, ["examples"], cwd=tmp_path, timeout=0.5)


def test_missing_module_is_named_first() -> None:
    """Even when the child also reported a tiffin error, the missing module is the cause."""
    stderr = "Traceback ...\nModuleNotFoundError: No module named 'packaging.version'\n"
    stderr += _reported("FlavorError", "could not load")
    assert missing_module(stderr) == "packaging.version"
    for error, keep in ((errors.VerificationError, False), (errors.EnvironmentBuildError, True)):
        exc = child_failure(stderr, ROOT, error=error, keep_reported=keep)
        assert type(exc) is error
        assert exc.message == "module 'packaging.version' is missing from the package's environment"
        assert exc.where == str(ROOT / "env/requirements.txt")
        assert "'packaging.version'" in (exc.fix or "")


def test_a_reported_error_is_kept_as_its_own_class() -> None:
    stderr = "noise\n" + _reported(
        "SignatureError", "expects shape [-1, 4]", where="input", fix="x"
    )
    exc = child_failure(stderr, ROOT, error=errors.EnvironmentBuildError, keep_reported=True)
    assert type(exc) is errors.SignatureError and exc.exit_code == 6
    assert (exc.message, exc.where, exc.fix) == ("expects shape [-1, 4]", "input", "x")


def test_a_reported_error_is_told_as_the_callers_error() -> None:
    stderr = _reported("FlavorError", "ValueError: refunds", where="code/m.py", fix="look")
    exc = child_failure(stderr, ROOT, error=errors.VerificationError, keep_reported=False)
    assert type(exc) is errors.VerificationError
    assert (
        exc.message == "the package failed to run: FlavorError: ValueError: refunds (in code/m.py)"
    )
    assert exc.where == str(ROOT) and exc.fix == "look"
    bare = child_failure(_reported("FlavorError"), ROOT, error=errors.VerificationError,
                         keep_reported=False)  # fmt: skip
    assert bare.message == "the package failed to run: FlavorError: bad input"
    assert "tiffin predict PKG --isolated" in (bare.fix or "")


def test_the_last_reported_line_wins() -> None:
    stderr = _reported("UsageError", "first") + "\n" + _reported("IntegrityError", "last")
    exc = reported_error(stderr)
    assert isinstance(exc, errors.IntegrityError) and exc.message == "last"


@pytest.mark.parametrize(
    "type_",
    ["NoSuchError", "annotations", "Exception", "ValueError"],
    ids=["unknown", "not-a-class", "not-a-tiffin-error", "builtin"],
)
def test_a_reported_type_that_is_no_tiffin_error_is_a_plain_tiffin_error(type_: str) -> None:
    """The child names the class; only classes of the error tree are built from the name."""
    exc = reported_error(_reported(type_, "odd"))
    assert type(exc) is errors.TiffinError and exc.message == "odd"


@pytest.mark.parametrize(
    "line",
    [
        ERROR_PREFIX + "{not json",
        ERROR_PREFIX + json.dumps({"type": "UsageError"}),
        ERROR_PREFIX + "[]",
    ],
    ids=["not-json", "no-message", "not-an-object"],
)
def test_a_garbled_report_falls_back_to_the_child_output(line: str) -> None:
    assert reported_error(line) is None
    exc = child_failure("Segmentation fault\n" + line, ROOT, error=errors.VerificationError,
                        keep_reported=True)  # fmt: skip
    assert type(exc) is errors.VerificationError
    assert exc.message.startswith("the package failed to run: Segmentation fault")
    assert exc.where == str(ROOT) and "tiffin verify PKG" in (exc.fix or "")


def test_anything_else_keeps_the_tail_of_the_output() -> None:
    stderr = "x" * 5000 + "Killed"
    exc = child_failure(stderr, ROOT, error=errors.EnvironmentBuildError, keep_reported=True)
    assert type(exc) is errors.EnvironmentBuildError
    assert exc.message == "the package failed to run: " + stderr[-1500:]
