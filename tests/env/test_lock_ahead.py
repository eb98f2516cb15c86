"""LockAhead: the lock made in a thread for the guessed requirements, used only for those."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import tiffin
from tiffin.env.lock import LockAhead

HERE = (f"{sys.version_info.major}.{sys.version_info.minor}", "linux/x86_64")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No package source: uv fails fast and the lock falls back to the installed closure."""
    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        pytest.skip("the closure stands in only for this machine's own target")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "UV_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_NO_CACHE", "1")


def test_the_lock_is_for_the_same_requirements_only_and_its_warning_waits(
    offline: None, capfd: pytest.CaptureFixture[str]
) -> None:
    import scipy

    numpy, scipy_pin = f"numpy=={np.__version__}", f"scipy=={scipy.__version__}"
    ahead = LockAhead([scipy_pin, numpy], python=HERE[0], platform=HERE[1])
    assert ahead.result_for([numpy]) is None
    assert ahead.result_for([numpy, scipy_pin, "pyyaml==6.0"]) is None
    assert capfd.readouterr().err == ""  # nothing said for a lock that is not used
    made = ahead.result_for([numpy, scipy_pin])  # another order, the same requirements
    assert made is not None
    text, info = made
    assert info["status"] == "installed-closure" and info["hashed"] is False
    assert numpy in text and scipy_pin in text
    err = capfd.readouterr().err
    assert "UNHASHED" in err and "no package index reachable" in err


def test_a_failed_lock_raises_only_when_used(
    offline: None, capfd: pytest.CaptureFixture[str]
) -> None:
    ahead = LockAhead(["tiffin-no-such-dist==1.0"], python=HERE[0], platform=HERE[1])
    assert ahead.result_for([f"numpy=={np.__version__}"]) is None
    with pytest.raises(tiffin.EnvironmentBuildError, match="tiffin-no-such-dist==1.0"):
        ahead.result_for(["tiffin-no-such-dist==1.0"])
    assert capfd.readouterr().err == ""
