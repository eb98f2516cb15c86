"""Provenance: the versions and git state recorded in the seal, and SOURCE_DATE_EPOCH."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tiffin._version import __version__
from tiffin.errors import UsageError
from tiffin.package import provenance


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above it
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "train.py").write_text("fit()\n")
    _git(root, "add", "train.py")
    _git(root, "commit", "-q", "-m", "first")
    return root


def test_git_state_clean_dirty_and_untracked(repo: Path) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    state = provenance.git_state(str(repo))
    assert state == {"commit": head.stdout.strip(), "dirty": False}
    # a package written into the repository does not make the next pack dirty
    (repo / "out").mkdir()
    (repo / "out" / "tiffin.json").write_text("{}")
    assert provenance.git_state(str(repo)) == state
    (repo / "train.py").write_text("fit(more)\n")
    assert provenance.git_state(str(repo)) == {**state, "dirty": True}
    _git(repo, "commit", "-q", "-am", "second")
    after = provenance.git_state(str(repo))
    assert after is not None and after["commit"] != state["commit"] and after["dirty"] is False


def test_no_repository_no_commit_no_git(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    assert provenance.git_state(str(outside)) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q")
    assert provenance.git_state(str(empty)) is None  # a repository with no commit yet
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert provenance.git_state(str(repo)) is None


def test_collect(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    data = provenance.collect(("numpy", "no-such-distribution-here"))
    assert data["tiffin"] == __version__
    assert data["python"] == platform.python_version()
    assert data["implementation"] == sys.implementation.name
    assert data["platform"] == f"{sys.platform}/{platform.machine()}"
    assert data["frameworks"] == {"numpy": np.__version__}  # what is not installed is left out
    assert data["git"] == provenance.git_state(str(repo))
    assert provenance.dist_version("no-such-distribution-here") is None


@pytest.mark.parametrize(
    ("epoch", "want"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", "1970-01-01T00:00:00Z"),
        ("1700000000", "2023-11-14T22:13:20Z"),
        (" 86400 ", "1970-01-02T00:00:00Z"),
    ],
)
def test_created_time(monkeypatch: pytest.MonkeyPatch, epoch: str | None, want: str | None) -> None:
    if epoch is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    assert provenance.created_time() == want


@pytest.mark.parametrize(
    "epoch",
    [
        "-1",
        "1.5",
        "soon",
        "1e9",
        "99999999999999999999",
        pytest.param("\u0661\u0662", id="arabic-indic-digits"),
    ],
)
def test_a_malformed_epoch_is_an_error(monkeypatch: pytest.MonkeyPatch, epoch: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    with pytest.raises(UsageError, match="is not a number of seconds since 1970") as info:
        provenance.created_time()
    assert info.value.where == "SOURCE_DATE_EPOCH" and "unset it" in (info.value.fix or "")


def test_pack_seals_the_epoch_and_the_git_state(
    repo: Path, monkeypatch: pytest.MonkeyPatch, iris_pipeline: tuple[object, np.ndarray]
) -> None:
    import tiffin

    model, X = iris_pipeline
    monkeypatch.chdir(repo)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = tiffin.pack(model, repo / "a", name="iris", version="1", example=X[:3])
    assert a.manifest.created == "2023-11-14T22:13:20Z"
    assert a.manifest.provenance["git"] == provenance.git_state(str(repo))
    b = tiffin.pack(model, repo / "b", name="iris", version="1", example=X[:3])
    assert a.digest == b.digest  # untracked packages in the repository change nothing
