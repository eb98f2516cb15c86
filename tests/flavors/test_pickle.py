from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tests.conftest import run_python

SRC = textwrap.dedent(
    """
    import numpy as np


    class Thresholder:
        def __init__(self, cut):
            self.cut = cut
            self.weights = np.array([0.5, 2.0])

        def predict(self, x):
            return (np.asarray(x) @ self.weights > self.cut).astype(np.int64)
    """
)


@pytest.fixture
def thresholder(tmp_path: Path) -> Any:
    import importlib.util
    import sys

    src = tmp_path / "src" / "thresh.py"
    src.parent.mkdir()
    src.write_text(SRC)
    spec = importlib.util.spec_from_file_location("thresh", src)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["thresh"] = module
    spec.loader.exec_module(module)
    yield module.Thresholder(1.0)
    sys.modules.pop("thresh", None)


def test_refused_without_opt_in(tmp_path: Path, thresholder: Any) -> None:
    with pytest.raises(tiffin.UnsafeArtifactError, match="allow_pickle=True"):
        tiffin.pack(thresholder, tmp_path / "p", name="t", version="1", example=np.ones((2, 2)))
    assert not (tmp_path / "p").exists()


def test_round_trip_with_opt_in_twice(tmp_path: Path, thresholder: Any) -> None:
    pkg = tiffin.pack(
        thresholder,
        tmp_path / "p",
        name="t",
        version="1",
        example=np.ones((2, 2)),
        allow_pickle=True,
    )
    assert pkg.manifest.flavor == "pickle"
    assert (pkg.path / "code" / "thresh.py").is_file()
    with pytest.raises(tiffin.UnsafeArtifactError, match="model.pkl is pickle"):
        tiffin.load(pkg.path)
    (tmp_path / "src" / "thresh.py").unlink()
    proc = run_python(
        f"""
        import numpy as np, tiffin
        m = tiffin.load({str(pkg.path)!r}, allow_pickle=True)
        print(m.predict(np.array([[1.0, 1.0], [0.0, 0.1]])).tolist())
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1, 0]"


PKG_SRC = textwrap.dedent(
    """
    import datetime
    import numpy as np


    class Scaled:
        def __init__(self):
            self.factor = np.float64(3.0)
            self.trained_on = datetime.date(2024, 1, 2)  # not on the allow-list by itself

        def predict(self, x):
            return np.asarray(x, dtype=np.float64) * self.factor
    """
)


def _import_package(root: Path, name: str) -> Any:
    import importlib
    import sys

    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(root))


def test_class_in_a_package_and_declared_types(tmp_path: Path) -> None:
    import sys

    pkg_dir = tmp_path / "src" / "acme"
    (pkg_dir / "models").mkdir(parents=True)
    (pkg_dir / "__init__.py").write_text("")
    (pkg_dir / "models" / "__init__.py").write_text("")
    (pkg_dir / "models" / "scaled.py").write_text(PKG_SRC)
    try:
        module = _import_package(tmp_path / "src", "acme.models.scaled")
        model = module.Scaled()
        x = np.ones((2, 2))
        with pytest.raises(tiffin.UnsafeArtifactError, match="datetime.date") as info:
            tiffin.pack(model, tmp_path / "p", name="s", version="1", example=x, allow_pickle=True)
        assert "trusted_types" in (info.value.fix or "")
        assert not (tmp_path / "p").exists()
        pkg = tiffin.pack(model, tmp_path / "q", name="s", version="1", example=x,
                          allow_pickle=True, trusted_types=["datetime.date"])  # fmt: skip
    finally:
        for name in [n for n in sys.modules if n == "acme" or n.startswith("acme.")]:
            del sys.modules[name]
    assert (pkg.path / "code" / "acme" / "models" / "scaled.py").is_file()
    assert pkg.manifest.runtime["options"]["trusted_types"] == ["datetime.date"]
    proc = run_python(
        f"""
        import numpy as np, tiffin
        m = tiffin.load({str(pkg.path)!r}, allow_pickle=True)
        print(m.predict(np.ones((2, 2))).tolist())
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[[3.0, 3.0], [3.0, 3.0]]"


def test_main_classes_and_library_classes(tmp_path: Path) -> None:
    import collections

    from tiffin.flavors.pickle import user_source

    assert user_source(collections.OrderedDict) is None  # never copied over the stdlib
    from sklearn.linear_model import LogisticRegression

    assert user_source(LogisticRegression) is None
    proc = run_python(
        f"""
        import numpy as np, tiffin
        class M:
            def predict(self, x):
                return x
        try:
            tiffin.pack(M(), {str(tmp_path / "p")!r}, name="m", version="1",
                        example=np.ones((1, 2)), allow_pickle=True)
        except tiffin.FlavorError as exc:
            print("REFUSED", exc.message)
        """,
        cwd=tmp_path,
    )
    assert "REFUSED" in proc.stdout and "__main__" in proc.stdout, proc.stdout + proc.stderr


EVIL_SRC = textwrap.dedent(
    """
    import os


    class Evil:
        def __init__(self, trip):
            self.trip = trip

        def predict(self, x):
            return x

        def __reduce__(self):
            return os.system, (f"touch {self.trip}",)
    """
)


def test_hostile_pickles_never_run(tmp_path: Path, thresholder: Any) -> None:
    """At pack (the reload check) and at load (a swapped model.pkl, re-sealed)."""
    import dataclasses
    import pickle
    import sys

    from tiffin.package.integrity import index_files, read_manifest

    trip = tmp_path / "TRIPWIRE"
    (tmp_path / "evilmod").mkdir()
    (tmp_path / "evilmod" / "evil.py").write_text(EVIL_SRC)
    module = _import_package(tmp_path / "evilmod", "evil")
    try:
        with pytest.raises(tiffin.UnsafeArtifactError, match="system"):
            tiffin.pack(module.Evil(trip), tmp_path / "e", name="e", version="1",
                        example=np.ones((1, 2)), allow_pickle=True)  # fmt: skip
        assert not trip.exists() and not (tmp_path / "e").exists()
        pkg = tiffin.pack(thresholder, tmp_path / "p", name="t", version="1",
                          example=np.ones((2, 2)), allow_pickle=True)  # fmt: skip
        (pkg.path / "artifacts" / "model.pkl").write_bytes(pickle.dumps(module.Evil(trip)))
    finally:
        sys.modules.pop("evil", None)
    resealed = dataclasses.replace(read_manifest(pkg.path), files=index_files(pkg.path)).seal()
    (pkg.path / "tiffin.json").write_bytes(resealed.to_bytes())
    with pytest.raises(tiffin.UnsafeArtifactError, match="system"):
        tiffin.load(pkg.path, allow_pickle=True)
    assert not trip.exists()


def test_packs_with_environment_capture_on(
    tmp_path: Path, thresholder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture subprocess loads the package too: it needs the same opt-in."""
    monkeypatch.setenv("TIFFIN_ENV_CAPTURE", "on")
    x = np.array([[1.0, 1.0], [0.0, 0.1]])
    pkg = tiffin.pack(thresholder, tmp_path / "p", name="t", version="1", example=x,
                      flavor="pickle", allow_pickle=True)  # fmt: skip
    env = pkg.manifest.environment
    assert any(r.startswith("numpy==") for r in env["requirements"])
    assert env["lock"]["status"] != "skipped"
    assert tiffin.load(pkg.path, allow_pickle=True).predict(x).tolist() == [1, 0]
