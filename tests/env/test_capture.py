"""Capture: requirements inferred from what the model's load and predict import, with reasons."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tests.env.conftest import pack_custom
from tiffin.env.capture import infer_requirements, merge_requirements
from tiffin.env.trace import Trace

pytestmark = pytest.mark.slow


def names(pkg: tiffin.Package) -> set[str]:
    return {r.split("==")[0] for r in pkg.manifest.environment["requirements"]}


def test_import_inside_predict_is_inferred_with_reason(tmp_path: Path, custom_source: Path) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    env = pkg.manifest.environment
    version = metadata.version("packaging")
    assert f"packaging=={version}" in env["requirements"]
    assert any("imported by scaled" in r for r in env["why"]["packaging"])
    assert "numpy" in names(pkg)
    assert (pkg.path / "env/requirements.txt").read_text().splitlines() == env["requirements"]
    assert env["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert env["platform"] == "linux/x86_64" and env["accelerator"] is None


def test_dynamic_import_module_is_inferred(tmp_path: Path) -> None:
    src = tmp_path / "dyn.py"
    src.write_text(textwrap.dedent("""
        import importlib
        import numpy as np

        class Dyn:
            def load(self, context):
                pass

            def predict(self, inputs):
                mod = importlib.import_module("packaging.version")
                return np.asarray(inputs, dtype=np.float64) * mod.Version("2").major
    """))  # fmt: skip
    pkg = tiffin.pack(
        f"{src}:Dyn", tmp_path / "p", name="dyn", version="1", example=np.ones((1, 2))
    )
    assert "packaging" in names(pkg)


def test_training_session_imports_are_not_captured(tmp_path: Path, custom_source: Path) -> None:
    import hypothesis  # imported here, as a notebook would; the model never uses it
    import rich

    assert hypothesis.__version__ and rich
    pkg = pack_custom(custom_source, tmp_path / "p")
    assert names(pkg) == {"numpy", "packaging"}


def test_sklearn_does_not_pull_torch(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    import torch  # installed here on purpose: MLflow would list it

    assert torch.__version__
    model, X = iris_pipeline
    pkg = tiffin.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3])
    assert names(pkg) == {"numpy", "scikit-learn", "scipy", "skops"}
    assert "torch" not in (pkg.path / "env/requirements.lock").read_text()
    assert pkg.manifest.environment["accelerator"] is None


def test_local_version_label_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "net.py"
    src.write_text(textwrap.dedent("""
        from torch import nn

        class Net(nn.Module):
            def __init__(self, n=3):
                super().__init__()
                self.n = n
                self.lin = nn.Linear(n, 1)

            def forward(self, x):
                return self.lin(x)
    """))  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:
        import net  # type: ignore[import-not-found]

        pkg = tiffin.pack(net.Net(), tmp_path / "p", name="net", version="1",
                          example=np.ones((1, 3), np.float32), requirements=["+packaging==24.0"])  # fmt: skip
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("net", None)
    env = pkg.manifest.environment
    torch_pin = next(r for r in env["requirements"] if r.startswith("torch=="))
    assert torch_pin == f"torch=={metadata.version('torch')}"  # the label is not dropped
    if "+cpu" in torch_pin:
        assert env["accelerator"]["kind"] == "cpu"
        assert env["accelerator"]["index"] == "https://download.pytorch.org/whl/cpu"
        lock = (pkg.path / "env/requirements.lock").read_text()
        assert torch_pin in lock
        assert "nvidia" not in lock  # no CUDA runtime wheels dragged in
    assert "packaging==24.0" in env["requirements"]  # "+" extends
    assert env["difference"] == {"added": ["packaging"], "dropped": [], "changed": []}


def test_user_requirements_replace_and_report(
    tmp_path: Path, custom_source: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p", requirements=["numpy==" + np.__version__])
    env = pkg.manifest.environment
    assert env["requirements"] == ["numpy==" + np.__version__]
    assert env["difference"]["dropped"] == ["packaging"]
    assert "left out ['packaging']" in capfd.readouterr().err


def test_replacing_keeps_the_runtime_numpy() -> None:
    final, diff = merge_requirements(["numpy==2.4.6", "packaging==26.3"], ["requests==2.32.0"])
    assert final == ["numpy==2.4.6", "requests==2.32.0"]
    assert diff == {"added": ["requests"], "dropped": ["packaging"], "changed": []}


def test_a_changed_pin_is_part_of_the_difference(capfd: pytest.CaptureFixture[str]) -> None:
    final, diff = merge_requirements(["numpy==2.4.6", "scipy==1.17.1"], ["+scipy>=1"])
    assert final == ["numpy==2.4.6", "scipy>=1"]
    assert diff == {"added": [], "dropped": [], "changed": ["scipy==1.17.1 -> scipy>=1"]}
    assert "scipy==1.17.1 -> scipy>=1" in capfd.readouterr().err


@pytest.mark.parametrize(
    "bad", ["numpy=2", "numpy==2.4.6;;", "not a requirement", "numpy==2.4.6 --hash=sha256:00",
            "./local/folder", "-e .", "pkg==1.0 @@"],
)  # fmt: skip
def test_malformed_requirement_strings_are_refused(bad: str) -> None:
    with pytest.raises(tiffin.UsageError, match="not a requirement string"):
        merge_requirements(["numpy==2.4.6"], [bad])
    with pytest.raises(tiffin.UsageError, match="not a requirement string"):
        merge_requirements(["numpy==2.4.6"], ["+" + bad])


def test_capture_off_still_pins_the_runtime_numpy(
    tmp_path: Path, custom_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "off")
    pkg = pack_custom(custom_source, tmp_path / "p")  # a custom flavor: no frameworks
    assert pkg.manifest.environment["requirements"] == ["numpy==" + np.__version__]


def test_helper_module_in_code_is_local_and_its_imports_count(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A helper shipped with code= is no unresolved module; what *it* imports is inferred."""
    (tmp_path / "versionhelp.py").write_text(textwrap.dedent("""
        import packaging.version

        def major(text):
            return packaging.version.Version(text).major
    """))  # fmt: skip
    src = tmp_path / "uses_helper.py"
    src.write_text(textwrap.dedent("""
        import numpy as np

        class M:
            def load(self, context):
                pass

            def predict(self, inputs):
                import versionhelp

                return np.asarray(inputs, dtype=np.float64) * versionhelp.major("2.0")
    """))  # fmt: skip
    pkg = tiffin.pack(
        f"{src}:M", tmp_path / "p", name="m", version="1", example=np.ones((1, 2)),
        code=[tmp_path / "versionhelp.py"],
    )  # fmt: skip
    env = pkg.manifest.environment
    assert "unresolved" not in env
    assert "versionhelp" not in capfd.readouterr().err
    assert names(pkg) == {"numpy", "packaging"}
    assert env["why"]["packaging"] == ["packaging (imported by versionhelp)"]


def test_bad_requirements_refused(tmp_path: Path, custom_source: Path) -> None:
    with pytest.raises(tiffin.UsageError, match="mix"):
        pack_custom(custom_source, tmp_path / "p", requirements=["+a==1", "b==2"])
    assert not (tmp_path / "p").exists()
    with pytest.raises(tiffin.UsageError, match="list of requirement strings"):
        merge_requirements([], "numpy==2.0")
    with pytest.raises(tiffin.UsageError, match="not a requirement string"):
        merge_requirements([], ["--index-url=http://x"])


def test_namespace_package_resolved_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two distributions share the top-level name ``tiffinns``; only the imported one counts."""
    import zipfile

    from tests.env.conftest import make_wheel

    site = tmp_path / "site"
    for dist, sub in (("tiffinns-alpha", "alpha"), ("tiffinns-beta", "beta")):
        wheel = make_wheel(tmp_path / "w", dist, "1.0", {f"tiffinns/{sub}/__init__.py": "X = 1\n"})
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    monkeypatch.syspath_prepend(str(site))
    try:
        import tiffinns.alpha  # type: ignore[import-not-found]

        trace = Trace(
            imports={"tiffinns": ["code:m"]}, files={"tiffinns": [tiffinns.alpha.__file__]}
        )
        found = infer_requirements(trace, ())
    finally:
        for name in ("tiffinns", "tiffinns.alpha"):
            sys.modules.pop(name, None)
    pinned = {p.split("==")[0] for p in found.pins}
    assert "tiffinns-alpha" in pinned and "tiffinns-beta" not in pinned
    assert found.why["tiffinns-alpha"] == ["tiffinns (imported by m)"]

    # the same through a real pack, with ``from namespace import sub`` in predict
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("UV_FIND_LINKS", str(tmp_path / "w"))
    src = tmp_path / "ns.py"
    src.write_text(textwrap.dedent("""
        import numpy as np

        class Ns:
            def load(self, context):
                pass

            def predict(self, inputs):
                from tiffinns import alpha

                return np.asarray(inputs, dtype=np.float64) * alpha.X
    """))  # fmt: skip
    try:
        pkg = tiffin.pack(
            f"{src}:Ns", tmp_path / "p", name="ns", version="1", example=np.ones((1, 2))
        )
    finally:
        for name in ("tiffinns", "tiffinns.alpha"):
            sys.modules.pop(name, None)
    assert names(pkg) == {"numpy", "tiffinns-alpha"}


def test_module_from_no_distribution_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    side = tmp_path / "side"
    side.mkdir()
    (side / "sidecar.py").write_text("FACTOR = 3\n")
    monkeypatch.syspath_prepend(str(side))
    monkeypatch.setenv("PYTHONPATH", str(side))
    src = tmp_path / "uses_sidecar.py"
    src.write_text(textwrap.dedent("""
        import numpy as np

        class M:
            def load(self, context):
                pass

            def predict(self, inputs):
                import sidecar

                return np.asarray(inputs, dtype=np.float64) * sidecar.FACTOR
    """))  # fmt: skip
    try:
        pkg = tiffin.pack(
            f"{src}:M", tmp_path / "p", name="m", version="1", example=np.ones((1, 2))
        )
    finally:
        sys.modules.pop("sidecar", None)
    assert pkg.manifest.environment["unresolved"] == {"sidecar": ["uses_sidecar"]}
    assert "module 'sidecar'" in capfd.readouterr().err


def test_inspect_why(tmp_path: Path, custom_source: Path) -> None:
    pkg = pack_custom(custom_source, tmp_path / "p")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "inspect", str(pkg.path), "--why"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "packaging==" in proc.stdout and "imported by scaled" in proc.stdout


def test_dataframe_signature_needs_pandas(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(frame, [0, 1, 0, 1])
    pkg = tiffin.pack(model, tmp_path / "p", name="df", version="1", example=frame.head(2))
    env = pkg.manifest.environment
    assert f"pandas=={pd.__version__}" in env["requirements"]
    assert "DataFrame signature" in " ".join(env["why"]["pandas"])


def test_hand_called_dunder_import_and_a_code_package(tmp_path: Path) -> None:
    """``__import__(name)`` passes no globals; a package folder in code/ is local too."""
    helper = tmp_path / "helpers"
    helper.mkdir()
    (helper / "__init__.py").write_text("from . import inner\n")
    (helper / "inner.py").write_text(textwrap.dedent("""
        def major(text):
            import packaging.version

            return packaging.version.Version(text).major
    """))  # fmt: skip
    src = tmp_path / "dunder.py"
    src.write_text(textwrap.dedent("""
        import numpy as np

        class M:
            def load(self, context):
                pass

            def predict(self, inputs):
                import helpers

                threads = __import__("threadpool" + "ctl")
                assert threads.threadpool_info is not None
                return np.asarray(inputs, dtype=np.float64) * helpers.inner.major("2.0")
    """))  # fmt: skip
    pkg = tiffin.pack(
        f"{src}:M", tmp_path / "p", name="m", version="1", example=np.ones((1, 2)), code=[helper]
    )
    env = pkg.manifest.environment
    assert "unresolved" not in env
    assert names(pkg) == {"numpy", "packaging", "threadpoolctl"}
    assert env["why"]["threadpoolctl"] == ["threadpoolctl (imported by dunder)"]
    assert env["why"]["packaging"] == ["packaging (imported by helpers.inner)"]


def test_a_hanging_trace_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiffin.env import trace

    src = tmp_path / "slow.py"
    src.write_text(textwrap.dedent("""
        import sys, time
        import numpy as np

        class Slow:
            def load(self, context):
                if sys.argv[:1] == ["-c"]:  # only in the tracing subprocess
                    time.sleep(60)

            def predict(self, inputs):
                return np.asarray(inputs, dtype=np.float64)
    """))  # fmt: skip
    monkeypatch.setattr(trace, "TRACE_TIMEOUT", 2)
    with pytest.raises(tiffin.EnvironmentBuildError, match="did not finish within 2 s"):
        tiffin.pack(f"{src}:Slow", tmp_path / "p", name="s", version="1", example=np.ones((1, 2)))
    assert not (tmp_path / "p").exists()


def test_a_need_a_library_imports_as_optional_is_kept_and_a_probe_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tiffin-lib imports tiffinneed and tiffinprobe as optional, declaring neither; the
    model's prediction needs the first (as XGBoost's wrappers need scikit-learn) and not
    the second (as scikit-learn does not need torch)."""
    import zipfile

    from tests.env.conftest import make_wheel

    lib = textwrap.dedent("""
        try:
            import tiffinneed
        except ImportError:
            tiffinneed = None
        try:
            import tiffinprobe
        except ImportError:
            tiffinprobe = None

        def factor():
            if tiffinneed is None:
                raise ImportError("tiffin-lib needs tiffin-need for this")
            return tiffinneed.FACTOR
    """)
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    for dist, files in (("tiffin-lib", {"tiffinlib/__init__.py": lib}),
                        ("tiffin-need", {"tiffinneed/__init__.py": "FACTOR = 5\n"}),
                        ("tiffin-probe", {"tiffinprobe/__init__.py": "X = 1\n"})):  # fmt: skip
        with zipfile.ZipFile(make_wheel(wheels, dist, "1.0", files)) as zf:
            zf.extractall(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("UV_FIND_LINKS", str(wheels))
    src = tmp_path / "uses_lib.py"
    src.write_text(textwrap.dedent("""
        import numpy as np

        class M:
            def load(self, context):
                pass

            def predict(self, inputs):
                import tiffinlib

                return np.asarray(inputs, dtype=np.float64) * tiffinlib.factor()
    """))  # fmt: skip
    try:
        pkg = tiffin.pack(
            f"{src}:M", tmp_path / "p", name="m", version="1", example=np.ones((1, 2))
        )
    finally:
        for name in ("tiffinlib", "tiffinneed", "tiffinprobe"):
            sys.modules.pop(name, None)
    env = pkg.manifest.environment
    assert names(pkg) == {"numpy", "tiffin-lib", "tiffin-need"}
    assert env["why"]["tiffin-need"] == [
        "tiffinneed (imported by tiffinlib); load or predict fails without it"
    ]
    lock = (pkg.path / "env/requirements.lock").read_text()
    assert "tiffin-need==1.0" in lock and "tiffin-probe" not in lock


def test_dataframe_columns_reach_the_traced_model_in_their_order(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"b": [0.0, 1.0, 2.0, 3.0], "a": [5.0, -1.0, 4.0, -2.0]})
    model = LogisticRegression().fit(frame, [1, 0, 1, 0])
    pkg = tiffin.pack(model, tmp_path / "out" / "p", name="df", version="1", example=frame)
    assert "scikit-learn" in names(pkg)


def test_a_failure_in_the_traced_process_is_reported_as_itself(tmp_path: Path) -> None:
    src = tmp_path / "fragile.py"
    src.write_text(textwrap.dedent("""
        import sys
        import numpy as np

        class Fragile:
            def load(self, context):
                pass

            def predict(self, inputs):
                if "pytest" not in sys.modules:  # only in the tracing subprocess
                    raise KeyError("column 'age' is missing in " + "x" * 2000)
                return np.asarray(inputs, dtype=np.float64)
    """))  # fmt: skip
    with pytest.raises(tiffin.EnvironmentBuildError) as info:
        tiffin.pack(f"{src}:Fragile", tmp_path / "p", name="f", version="1",
                    example=np.ones((1, 2)))  # fmt: skip
    err = info.value
    assert "predict" in err.message and "KeyError" in err.message
    assert "column 'age' is missing" in err.message
    assert "could not trace" not in err.message
    assert "fragile.py" in (err.fix or "") and "line" in (err.fix or "")
    assert not (tmp_path / "p").exists()
