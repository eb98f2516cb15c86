"""Replaying the recorded examples in an environment's Python: a scratch folder, a time limit,
and an interpreter that will not start, each told as a VerificationError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tiffin
from tests.env.conftest import (  # noqa: F401  (fixtures shared with tests/env)
    custom_source,
    env_cache,
    pack_custom,
    real_capture,
)
from tiffin._verify import verify
from tiffin.isolated import replay as isolated_replay

pytestmark = pytest.mark.slow


def test_replay_cannot_write_into_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay runs in a scratch folder: a model that writes where it runs leaves the
    sealed package as it was."""
    monkeypatch.chdir(tmp_path)  # where packing (which predicts here) writes its log
    src = tmp_path / "scribbler.py"
    src.write_text(
        "import numpy as np\n\n"
        "class Scribbler:\n"
        "    def load(self, context):\n"
        "        pass\n\n"
        "    def predict(self, inputs):\n"
        "        with open('predictions.log', 'a') as fh:\n"
        "            fh.write('seen\\n')\n"
        "        return np.asarray(inputs, dtype=np.float64)\n"
    )
    pkg = tiffin.pack(f"{src}:Scribbler", tmp_path / "p", name="s", version="1",
                      example=np.ones((1, 2)))  # fmt: skip
    for env in ("isolated", "current"):
        report = verify(pkg.path, env=env)
        assert report.ok, report.render()
    assert not (pkg.path / "predictions.log").exists()
    tiffin.inspect(pkg.path)  # still intact


def test_a_hanging_replay_is_a_verification_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "sleepy.py"
    src.write_text(
        "import os, time\nimport numpy as np\n\n"
        "class Sleepy:\n"
        "    def load(self, context):\n"
        "        if not os.environ.get('TIFFIN_TEST_AWAKE'):\n"
        "            time.sleep(60)\n\n"
        "    def predict(self, inputs):\n"
        "        return np.asarray(inputs, dtype=np.float64)\n"
    )
    monkeypatch.setenv("TIFFIN_TEST_AWAKE", "1")  # awake while packing
    pkg = tiffin.pack(f"{src}:Sleepy", tmp_path / "p", name="s", version="1",
                      example=np.ones((1, 2)))  # fmt: skip
    monkeypatch.delenv("TIFFIN_TEST_AWAKE")
    monkeypatch.setattr(isolated_replay, "REPLAY_TIMEOUT", 3)
    report = verify(pkg.path, env="current")
    assert not report.ok and report.failed == "replay"
    assert "did not finish within 3 s" in (report.error or "")


def test_an_interpreter_that_cannot_start_is_named(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    """(The environment vanishing between the build and the replay: no traceback.)"""
    pkg = pack_custom(custom_source, tmp_path / "p")
    gone = tmp_path / "gone" / "bin" / "python"
    with pytest.raises(tiffin.VerificationError, match="cannot start the environment's Python"):
        isolated_replay.replay(pkg.path, gone, current=False, rtol=1e-6, atol=1e-6)


def test_replay_in_this_interpreter_reports_times(tmp_path: Path, custom_source: Path) -> None:  # noqa: F811
    pkg = pack_custom(custom_source, tmp_path / "p")
    import sys

    result = isolated_replay.replay(pkg.path, Path(sys.executable), current=True, rtol=0, atol=0)
    assert result["match"] is True and result["difference"] is None
    assert result["rtol"] == 0 and result["atol"] == 0
    assert 0 <= result["cold_start_seconds"] < 120
    assert result["load_seconds"] > 0 and result["executable"] == sys.executable
