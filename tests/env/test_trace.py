"""The traced fresh process: who imported what, blocked modules, and the child's failures."""

from __future__ import annotations

import hashlib
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
from tiffin.env import trace as trace_module
from tiffin.env.trace import MESSAGE_LIMIT, finish_trace, start_trace, trace_imports
from tiffin.schema import typed_json as examples

# Every failure the child can show is chosen by this variable, which only the traced
# process sees: the pack that built the package ran the model without it.
MODE = "TIFFIN_TEST_TRACE_MODE"

MODEL = textwrap.dedent(
    """
    import importlib
    import importlib.util
    import os
    import signal
    import sys
    import time

    import numpy as np

    import tracehelp


    def mode():
        return os.environ.get("TIFFIN_TEST_TRACE_MODE", "")


    class Probe:
        def load(self, context):
            if mode() == "load-error":
                raise ValueError("weights.bin is truncated at byte 12")
            if mode() == "hang":
                time.sleep(120)
            if mode() == "exit":
                sys.stderr.write("giving up on the weights\\n")
                os._exit(7)
            import yaml  # a distribution, imported by the model's own code at load

            self.dumped = yaml.safe_dump([1])

        def predict(self, inputs):
            if mode() == "predict-error":
                raise KeyError("column 'age' is missing")
            if mode() == "long-error":
                raise ValueError("w" * 3000)
            if mode() == "tiffin-error":
                from tiffin.errors import UsageError

                raise UsageError("option 'k' is not set", fix="pack with options k=1")
            if mode() == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            import tracelib  # a library; it imports tracedep in turn

            factor = 1.0
            if importlib.util.find_spec("traceopt") is None:
                factor += 1.0
            try:
                importlib.import_module("traceopt")
            except ModuleNotFoundError:
                factor += 2.0
            scale = tracelib.K * tracehelp.ONE
            return np.asarray(inputs, dtype=np.float64) * factor * scale
    """
)


@pytest.fixture(scope="module")
def traced_pkg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A custom package (packed without capture) and its runtime options; the modules it
    imports live in a site folder on sys.path and PYTHONPATH for the module's tests."""
    base = tmp_path_factory.mktemp("trace")
    site = base / "site"
    site.mkdir()
    (site / "tracelib.py").write_text("import tracedep\n\nK = tracedep.K\n")
    (site / "tracedep.py").write_text("K = 1.0\n")
    (site / "traceopt.py").write_text("X = 1\n")
    (base / "tracehelp.py").write_text("ONE = 1.0\n")
    (base / "probe.py").write_text(MODEL)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        mp.syspath_prepend(str(base))
        mp.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        )
        mp.setenv("TIFFIN_ENV_CAPTURE", "off")
        mp.delenv(MODE, raising=False)
        try:
            pkg = tiffin.pack(
                f"{base / 'probe.py'}:Probe", base / "p", name="probe", version="1",
                example=np.ones((2, 2)), code=[base / "tracehelp.py"],
            )  # fmt: skip
        finally:
            for name in ("tracelib", "tracedep", "traceopt", "tracehelp", "probe"):
                sys.modules.pop(name, None)
        mp.delenv("TIFFIN_ENV_CAPTURE")
        runtime = pkg.manifest.runtime
        assert runtime["flavor"] == "custom"
        yield pkg.path, dict(runtime["options"])


def output_hash(root: Path, factor: float) -> str:
    """The digest the tracer writes for the recorded output times ``factor``."""
    recorded = examples.loads((root / "examples/output.json").read_bytes())
    return hashlib.sha256(examples.dumps(np.asarray(recorded) * factor)).hexdigest()


def test_imports_are_attributed_to_code_flavor_and_library(
    traced_pkg: tuple[Path, dict[str, Any]],
) -> None:
    root, options = traced_pkg
    trace = trace_imports(root, "custom", options)
    assert trace.imports["yaml"] == ["code:probe"]
    assert trace.imports["tracelib"] == ["code:probe"]
    assert trace.imports["tracedep"] == ["tracelib"]  # a dependency of a dependency
    assert "code:probe" in trace.imports["traceopt"]  # through importlib.import_module
    # the helper shipped in code/ travels with the package: no importer, no distribution
    assert "tracehelp" not in trace.imports and "probe" not in trace.imports
    assert trace.files["tracelib"] == [str(root.parent / "site" / "tracelib.py")]
    assert trace.output == output_hash(root, 1.0)


def test_blocked_modules_are_unimportable_for_import_and_find_spec(
    traced_pkg: tuple[Path, dict[str, Any]],
) -> None:
    root, options = traced_pkg
    free = trace_imports(root, "custom", options)
    # 1 + 1 (find_spec gave None) + 2 (import raised ModuleNotFoundError)
    blocked = trace_imports(root, "custom", options, blocked=["traceopt"])
    assert free.output == output_hash(root, 1.0)
    assert blocked.output == output_hash(root, 4.0)
    assert "traceopt" not in blocked.imports


def test_blocking_a_needed_module_fails_the_load(traced_pkg: tuple[Path, dict[str, Any]]) -> None:
    root, options = traced_pkg
    with pytest.raises(tiffin.EnvironmentBuildError) as info:
        trace_imports(root, "custom", options, blocked=["yaml"])
    assert "load failed" in info.value.message
    assert "ModuleNotFoundError" in info.value.message and "'yaml'" in info.value.message


@pytest.mark.parametrize(
    ("mode", "stage", "said"),
    [
        # (the custom flavor wraps a load error: FlavorError: Probe.load failed: ValueError(...))
        ("load-error", "the model's load failed", "ValueError('weights.bin is truncated at byte 12')"),
        ("predict-error", "the model's predict on the recorded example failed",
         "KeyError: \"column 'age' is missing\""),
    ],
)  # fmt: skip
def test_an_error_in_the_child_is_reported_with_stage_and_message(
    traced_pkg: tuple[Path, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    stage: str,
    said: str,
) -> None:
    root, options = traced_pkg
    monkeypatch.setenv(MODE, mode)
    with pytest.raises(tiffin.EnvironmentBuildError) as info:
        trace_imports(root, "custom", options)
    err = info.value
    assert err.message.startswith(stage), err.message
    assert said in err.message
    assert err.where == str(root)
    if mode == "predict-error":
        assert "probe.py, line" in (err.fix or "")  # the frames that raised it


def test_a_load_error_names_the_models_own_line(
    traced_pkg: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, options = traced_pkg
    monkeypatch.setenv(MODE, "load-error")
    with pytest.raises(tiffin.EnvironmentBuildError) as info:
        trace_imports(root, "custom", options)
    assert "probe.py, line" in (info.value.fix or "")


def test_the_flavors_own_imports_are_credited_to_the_flavor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "off")
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    pkg = tiffin.pack(LogisticRegression().fit(X, [0, 0, 1, 1]), tmp_path / "p", name="s",
                      version="1", example=X[:2])  # fmt: skip
    trace = trace_imports(pkg.path, "sklearn", dict(pkg.manifest.runtime["options"]))
    assert any(who.startswith("flavor:tiffin.flavors.sklearn") for who in trace.imports["skops"])


def test_a_tiffin_error_in_the_child_keeps_its_fix(
    traced_pkg: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, options = traced_pkg
    monkeypatch.setenv(MODE, "tiffin-error")
    with pytest.raises(tiffin.EnvironmentBuildError) as info:
        trace_imports(root, "custom", options)
    assert "UsageError: option 'k' is not set" in info.value.message
    assert info.value.fix == "pack with options k=1"


def test_a_long_message_is_cut(
    traced_pkg: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, options = traced_pkg
    monkeypatch.setenv(MODE, "long-error")
    with pytest.raises(tiffin.EnvironmentBuildError) as info:
        trace_imports(root, "custom", options)
    message = info.value.message
    assert "w" * MESSAGE_LIMIT in message and "w" * (MESSAGE_LIMIT + 1) not in message
    assert f"({3000 - MESSAGE_LIMIT} more characters)" in message


def test_a_child_killed_by_a_signal_is_reported(
    traced_pkg: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, options = traced_pkg
    monkeypatch.setenv(MODE, "kill")
    with pytest.raises(tiffin.EnvironmentBuildError, match="killed by signal 9") as info:
        trace_imports(root, "custom", options)
    assert info.value.where == str(root)


def test_a_child_that_exits_without_a_word_is_reported_with_its_last_output(
    traced_pkg: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, options = traced_pkg
    monkeypatch.setenv(MODE, "exit")
    with pytest.raises(tiffin.EnvironmentBuildError, match="exited with status 7") as info:
        trace_imports(root, "custom", options)
    assert "giving up on the weights" in (info.value.fix or "")


def test_the_timeout_kills_the_child(
    traced_pkg: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, options = traced_pkg
    monkeypatch.setenv(MODE, "hang")
    monkeypatch.setattr(trace_module, "TRACE_TIMEOUT", 1)
    proc = start_trace(root, "custom", options)
    started = time.monotonic()
    with pytest.raises(tiffin.EnvironmentBuildError, match="did not finish within 1 s"):
        finish_trace(proc, root)
    assert time.monotonic() - started < 30  # not the model's 120 s sleep
    assert proc.returncode == -9  # killed and reaped: no child left behind
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
