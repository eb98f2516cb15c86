"""``--key`` and ``--require-signed``: the same policy on every command that loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tiffin
from tests.cli._run import tiffin as run


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    np.save(tmp_path / "in.npy", np.zeros((1, 4)))
    return tmp_path / "in.npy"


@pytest.mark.parametrize("verb", ["predict", "verify"])
def test_the_policy_on_each_verb(
    verb: str, packed_iris: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIFFIN_REQUIRE_SIGNED", raising=False)
    base = [
        verb,
        str(packed_iris),
        *(["-i", str(inputs)] if verb == "predict" else ["--env", "current"]),
    ]

    def code(*extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        proc = run(*base, *extra, env=env)
        return proc.returncode, proc.stderr + proc.stdout

    fail = 11 if verb == "predict" else 10  # verify reports the failed step, exits 10
    assert code()[0] == 0
    rc, text = code("--require-signed")
    assert rc == fail and "not signed" in text
    rc, text = code(env={"TIFFIN_REQUIRE_SIGNED": "1"})
    assert rc == fail and "not signed" in text
    private, public = tiffin.keygen(tmp_path / "release")
    _, other = tiffin.keygen(tmp_path / "other")
    rc, text = code("--key", str(public))
    assert rc == fail and "not signed" in text  # a key given always checks
    tiffin.sign(packed_iris, private)
    assert code("--key", str(public), "--require-signed")[0] == 0
    assert code("--key", str(other), "--key", str(public))[0] == 0  # any one of them
    assert code("--key", str(other))[0] == fail
