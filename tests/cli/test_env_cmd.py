"""``tiffin env``: the cache folder; ``env build`` and ``env lock`` run in tests/env."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli._run import tiffin


def test_env_path_is_the_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiffin.env.cache import cache_root

    monkeypatch.setenv("TIFFIN_CACHE_DIR", str(tmp_path / "cache"))
    proc = tiffin("env", "path")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{cache_root()}\n" and str(tmp_path / "cache") in proc.stdout


def test_env_build_of_nothing_is_named(tmp_path: Path) -> None:
    proc = tiffin("env", "build", str(tmp_path / "nope"))
    assert proc.returncode == 3 and proc.stderr.startswith("error: ")
