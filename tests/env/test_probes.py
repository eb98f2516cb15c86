"""The final-environment trial beside the trace, and when the probe trials still run."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tiffin.env import capture as capture_module
from tiffin.env.probes import FinalEnvironmentTrial, confirm_probes
from tiffin.env.trace import Inferred, Trace

pytestmark = pytest.mark.slow

TWO_CPUS = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="the trial runs only beside the trace, on 2+ CPUs"
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No package source: the lock falls back to the installed closure, fast."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "UV_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_NO_CACHE", "1")


class Spies:
    def __init__(self) -> None:
        self.settled: list[bool] = []
        self.probed: list[dict[str, list[str]]] = []


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Spies:
    """Record what the trial answered and whether the probe trials ran (and what they found)."""
    seen = Spies()
    real_settles = FinalEnvironmentTrial.settles

    def settles(self: FinalEnvironmentTrial, trace: Trace, found: Inferred) -> bool:
        answer = real_settles(self, trace, found)
        seen.settled.append(answer)
        return answer

    def probes(*args: Any, **kwargs: Any) -> dict[str, list[str]]:
        needed = confirm_probes(*args, **kwargs)
        seen.probed.append(needed)
        return needed

    monkeypatch.setattr(FinalEnvironmentTrial, "settles", settles)
    monkeypatch.setattr(capture_module, "confirm_probes", probes)
    return seen


def names(pkg: tiffin.Package) -> set[str]:
    return {r.split("==")[0] for r in pkg.manifest.environment["requirements"]}


@TWO_CPUS
def test_a_scikit_learn_model_settles_and_no_probe_trial_follows(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], offline: None, spies: Spies
) -> None:
    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3])
    assert spies.settled == [True]
    assert spies.probed == []  # confirm_probes never ran
    assert names(pkg) == {"numpy", "scikit-learn", "scipy", "skops"}
    assert pkg.manifest.environment["lock"]["status"] == "installed-closure"


@TWO_CPUS
def test_a_dataframe_model_settles_with_pandas_in_the_guess(
    tmp_path: Path, offline: None, spies: Spies
) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(frame, [0, 1, 0, 1])
    pkg = tiffin.pack(model, tmp_path / "p", name="df", version="1", example=frame.head(2))
    assert spies.settled == [True] and spies.probed == []
    assert names(pkg) == {"numpy", "pandas", "scikit-learn", "scipy", "skops"}


@TWO_CPUS
def test_code_that_needs_a_distribution_outside_the_frameworks_does_not_settle(
    tmp_path: Path, offline: None, spies: Spies
) -> None:
    """A FunctionTransformer's function (shipped in code/) imports yaml: outside
    scikit-learn's closure, so the guess fails; the trace still finds pyyaml."""
    pytest.importorskip("yaml")
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "yamlfeats.py").write_text(
        textwrap.dedent("""
            import numpy as np
            import yaml

            SCALE = len(yaml.safe_dump([1, 2]))


            def scaled(x):
                return np.asarray(x, dtype=np.float64) * SCALE
        """)
    )  # fmt: skip
    sys.path.insert(0, str(proj))
    try:
        import yamlfeats  # type: ignore[import-not-found]

        X = np.random.default_rng(0).normal(size=(30, 3))
        model = make_pipeline(FunctionTransformer(yamlfeats.scaled), LinearRegression())
        model.fit(X, X.sum(1))
        pkg = tiffin.pack(
            model, tmp_path / "p", name="f", version="1", example=X[:3],
            trusted_types=["yamlfeats.scaled"],
        )  # fmt: skip
    finally:
        sys.path.remove(str(proj))
        sys.modules.pop("yamlfeats", None)
    assert spies.settled == [False]
    assert len(spies.probed) == 1  # the probe trials ran instead
    assert names(pkg) == {"numpy", "pyyaml", "scikit-learn", "scipy", "skops"}
    assert pkg.manifest.environment["why"]["pyyaml"] == ["yaml (imported by yamlfeats)"]


def test_no_trial_for_a_flavor_without_frameworks(tmp_path: Path) -> None:
    for frameworks in ((), ("numpy",), ("NumPy",)):
        assert FinalEnvironmentTrial.start(tmp_path, "custom", {}, frameworks) is None


def test_no_trial_on_one_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert FinalEnvironmentTrial.start(tmp_path, "sklearn", {}, ("scikit-learn",)) is None


SLEEPER = textwrap.dedent(
    """
    import os
    import time

    import numpy as np


    class Sleeper:
        def load(self, context):
            if os.environ.get("TIFFIN_TEST_TRIAL_SLEEP"):  # only in the trial's process
                time.sleep(120)

        def predict(self, inputs):
            return np.asarray(inputs, dtype=np.float64)
    """
)


@pytest.fixture
def sleeper_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tiffin.Package]:
    src = tmp_path / "sleeper.py"
    src.write_text(SLEEPER)
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "off")
    pkg = tiffin.pack(f"{src}:Sleeper", tmp_path / "p", name="s", version="1",
                      example=np.ones((1, 2)))  # fmt: skip
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "on")
    yield pkg


def test_cancel_leaves_no_child_running(
    sleeper_pkg: tiffin.Package, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIFFIN_TEST_TRIAL_SLEEP", "1")
    runtime = sleeper_pkg.manifest.runtime
    trial = FinalEnvironmentTrial(
        sleeper_pkg.path, runtime["flavor"], dict(runtime["options"]), {"numpy"}
    )
    proc = trial.proc
    assert proc is not None and proc.poll() is None
    started = time.monotonic()
    trial.cancel()
    assert time.monotonic() - started < 30
    assert trial.proc is None
    assert proc.returncode == -9  # killed and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    trial.cancel()  # a second cancel is harmless
    assert trial.settles(Trace(imports={}), Inferred(pins=[], why={}, unresolved={})) is False


def test_the_trial_gives_the_traces_output_in_the_guessed_environment(
    sleeper_pkg: tiffin.Package,
) -> None:
    """With only NumPy (and tiffin) importable the sleeper still answers: the trial
    settles when the requirements found cover the guess, and not when they do not."""
    from tiffin.env.trace import trace_imports

    runtime = sleeper_pkg.manifest.runtime
    options = dict(runtime["options"])
    trace = trace_imports(sleeper_pkg.path, "custom", options)
    covered = Inferred(pins=[f"numpy=={np.__version__}"], why={}, unresolved={})
    trial = FinalEnvironmentTrial(sleeper_pkg.path, "custom", options, {"numpy"})
    assert trial.settles(trace, covered) is True
    assert trial.proc is None  # collected
    short = Inferred(pins=[], why={}, unresolved={})
    trial = FinalEnvironmentTrial(sleeper_pkg.path, "custom", options, {"numpy"})
    assert trial.settles(trace, short) is False
