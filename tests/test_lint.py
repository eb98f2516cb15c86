"""Each lint rule fires on a crafted package and stays quiet on a clean one."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tiffin._lint import lint


def rules(path: Path) -> set[str]:
    return {f.rule for f in lint(path)}


def _folder(tmp_path: Path, packed_iris: Path) -> Path:
    """A writable copy of a clean package to craft bad variants from (lint reads folders)."""
    import shutil

    dest = tmp_path / "crafted"
    shutil.copytree(packed_iris, dest)
    return dest


def test_clean_package_has_no_findings(packed_iris: Path) -> None:
    assert lint(packed_iris) == []
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "lint", str(packed_iris)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "no findings" in proc.stdout


def test_absolute_path(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    (pkg / "code").mkdir()
    (pkg / "code" / "m.py").write_text("import numpy\nWEIGHTS = '/home/alice/models/w.bin'\n")
    (pkg / "code" / "w.py").write_text("ROUTE = '/api/v1'\nDATA = r'C:\\data\\train'\n")
    found = sorted((f for f in lint(pkg) if f.rule == "TL001"), key=lambda f: f.file)
    assert [(f.file, f.line, f.severity) for f in found] == [
        ("code/m.py", 2, "error"),
        ("code/w.py", 2, "error"),
    ]
    assert "/home/alice" in found[0].message and found[0].fix


def test_training_dependency(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    with open(pkg / "env/requirements.txt", "a") as fh:
        fh.write("matplotlib==3.9.0\nwandb==0.17.0\n")
    found = [f for f in lint(pkg) if f.rule == "TL002"]
    assert {f.line for f in found} == {5, 6}


def test_implicit_dependency(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    (pkg / "code").mkdir()
    (pkg / "code" / "m.py").write_text(
        "import os\nimport numpy\nfrom sklearn import base\nimport yaml\nimport helper\n"
    )
    (pkg / "code" / "helper.py").write_text("x = 1\n")
    found = [f for f in lint(pkg) if f.rule == "TL003"]
    assert [(f.line, "yaml" in f.message) for f in found] == [(4, True)]


def test_data_in_package(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    (pkg / "artifacts" / "train.csv").write_text("a,b\n1,2\n")
    assert "TL004" in rules(pkg)


def test_unpinned(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    with open(pkg / "env/requirements.txt", "a") as fh:
        fh.write("requests>=2\npandas\n")
    assert {f.line for f in lint(pkg) if f.rule == "TL005"} == {5, 6}


def test_pickle_artifact_by_bytes(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    (pkg / "artifacts" / "innocent.json").write_bytes(pickle.dumps({"a": 1}))
    found = [f for f in lint(pkg) if f.rule == "TL006"]
    assert found and found[0].file == "artifacts/innocent.json"


def test_missing_example(tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]) -> None:
    model, _X = iris_pipeline
    sig = {"inputs": [{"name": "input", "dtype": "float64", "shape": [-1, 4]}]}
    pkg = tiffin.pack(model, tmp_path / "p", name="i", version="1", signature=sig)
    assert rules(pkg.path) == {"TL007"}


def test_unhashed_lock(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    from tiffin.env.lock import installed_closure

    (pkg / "env" / "requirements.lock").write_text(installed_closure(["numpy"]))
    found = [f for f in lint(pkg) if f.rule == "TL008"]
    assert found and found[0].file == "env/requirements.lock" and "tiffin env lock" in found[0].fix


def test_every_rule_has_severity_place_and_fix(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    (pkg / "code").mkdir()
    (pkg / "code" / "m.py").write_text("import yaml\nP = '/data/x.csv'\n")
    (pkg / "artifacts" / "t.parquet").write_bytes(b"PAR1")
    (pkg / "artifacts" / "p.bin").write_bytes(pickle.dumps([1]))
    (pkg / "examples" / "input.json").unlink()
    with open(pkg / "env/requirements.txt", "a") as fh:
        fh.write("seaborn\n")
    found = lint(pkg)
    assert {f.rule for f in found} == {f"TL00{i}" for i in range(1, 8)}
    for f in found:
        assert f.severity in ("error", "warning") and f.file and f.fix and f.message


def test_pack_prints_findings_as_warnings(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray], capfd: pytest.CaptureFixture[str]
) -> None:
    model, X = iris_pipeline
    tiffin.pack(model, tmp_path / "p", name="i", version="1", example=X[:2],
                requirements=["scikit-learn==1.9.1", "matplotlib==3.9.0"])  # fmt: skip
    err = capfd.readouterr().err
    assert "TL002" in err and "matplotlib" in err


def test_json_and_exit_code(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    with open(pkg / "env/requirements.txt", "a") as fh:
        fh.write("pandas\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "lint", str(pkg), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 10
    data = json.loads(proc.stdout)
    assert data[0]["rule"] == "TL005" and data[0]["fix"]


def test_pack_strict_fails_on_findings(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    model, X = iris_pipeline
    with pytest.raises(tiffin.VerificationError, match="TL002"):
        tiffin.pack(model, tmp_path / "p", name="i", version="1", example=X[:2],
                    requirements=["scikit-learn==1.9.1", "matplotlib==3.9.0"], strict=True)  # fmt: skip
    assert not (tmp_path / "p").exists()


def test_absolute_paths_false_positives_and_negatives(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    (pkg / "code").mkdir()
    (pkg / "code" / "quiet.py").write_text(
        '"""Trained on /home/user/data/train.csv; serves /api/v1/predict."""\n'
        "URL = 'https://x/y'\n"
        "SINK = '/dev/null'\n"
        "ROUTE = '/api/v1/predict'\n"
        "BUCKET = 's3://bucket/key.csv'\n"
        "SPEC = '/openapi.json'\n"
        "def f():\n"
        "    '''Reads ~/x in development only.'''\n"
    )
    (pkg / "code" / "loud.py").write_text(
        "import os, pathlib\n"
        "A = pathlib.Path('/data/x')\n"
        "B = open(r'C:\\models\\a')\n"
        "C = os.path.expanduser('~/x')\n"
        "D = '/usr/local/share/model.bin'\n"
        "E = '/etc/model/config.yaml'\n"
        "F = '/weights/final/model.pt'\n"
    )
    found = [f for f in lint(pkg) if f.rule == "TL001"]
    assert {f.file for f in found} == {"code/loud.py"}, [f.render() for f in found]
    assert sorted(f.line for f in found) == [2, 3, 4, 5, 6, 7]


def test_more_training_only_dependencies(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    extra = ["mlflow-skinny==3.1.0", "jupyter-core==5.7.0", "pytest-cov==5.0.0", "black==24.1.0",
             "tensorboard==2.17.0", "jupyterlab-git==0.50.0", "pre-commit==3.7.0"]  # fmt: skip
    with open(pkg / "env/requirements.txt", "a") as fh:
        fh.write("".join(f"{r}\n" for r in extra))
    named = {f.message.split()[0] for f in lint(pkg) if f.rule == "TL002"}
    assert named == {r.split("==")[0] for r in extra}
    assert "TL002" not in rules(packed_iris)


def test_optional_imports_are_not_implicit_dependencies(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    (pkg / "code").mkdir()
    (pkg / "code" / "m.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "try:\n"
        "    import orjson as fastjson\n"
        "except ImportError:\n"
        "    fastjson = None\n"
        "if TYPE_CHECKING:\n"
        "    import pandas\n"
        "import yaml\n"
        "import importlib\n"
        "dateparser = importlib.import_module('dateutil.parser')\n"
        "toml = __import__('tomlkit')\n"
        "helper = importlib.import_module('.sibling', 'pkg')\n"
    )
    found = [f for f in lint(pkg) if f.rule == "TL003"]
    assert [(f.line, f.message.split("'")[1]) for f in found] == [
        (8, "yaml"), (10, "dateutil"), (11, "tomlkit")
    ]  # fmt: skip


def test_data_under_another_name(tmp_path: Path, packed_iris: Path) -> None:
    pkg = _folder(tmp_path, packed_iris)
    rows = "".join(f"{i},{i * 0.5},{i % 3}\n" for i in range(3000))
    (pkg / "artifacts" / "table.bin").write_text("id,x,label\n" + rows)  # a renamed CSV
    (pkg / "artifacts" / "rows.dat").write_bytes(b"SQLite format 3\0" + bytes(100))
    (pkg / "artifacts" / "labels.txt").write_text("cat\ndog\n")  # small lookup: fine
    found = {f.file: f.message for f in lint(pkg) if f.rule == "TL004"}
    assert set(found) == {"artifacts/table.bin", "artifacts/rows.dat"}
    assert "','-separated table" in found["artifacts/table.bin"]
    assert "SQLite" in found["artifacts/rows.dat"]


@pytest.mark.parametrize("flavor", ["xgboost", "lightgbm"])
def test_native_model_files_are_not_data(tmp_path: Path, flavor: str) -> None:
    """The text and JSON model formats are no tables."""
    rng = np.random.RandomState(0)
    X = rng.rand(200, 4)
    y = (X[:, 0] > 0.5).astype(int)
    if flavor == "xgboost":
        import xgboost

        model: Any = xgboost.XGBClassifier(n_estimators=80, max_depth=3).fit(X, y)
    else:
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=80, verbose=-1).fit(X, y)
    pkg = tiffin.pack(model, tmp_path / "p", name="m", version="1", example=X[:3])
    from tiffin._lint import TABLE_TEXT_BYTES

    sizes = [p.stat().st_size for p in (pkg.path / "artifacts").iterdir()]
    assert max(sizes) > TABLE_TEXT_BYTES  # big enough for the content check to look
    assert "TL004" not in rules(pkg.path)


def test_a_folder_that_is_no_package_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(tiffin.PackageNotFoundError, match="not a tiffin package"):
        lint(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "lint", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 3 and "not a tiffin package" in proc.stderr


def test_saved_models_holding_training_points_are_not_data(tmp_path: Path) -> None:
    """A Gaussian process and NCA keep training points inside their skops zip: no table."""
    from sklearn.datasets import load_iris
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    X, y = load_iris(return_X_y=True)
    gpr = GaussianProcessRegressor(optimizer=None).fit(X, y)
    nca = NeighborhoodComponentsAnalysis(random_state=0).fit(X, y)
    for name, model, method in [("gpr", gpr, "predict"), ("nca", nca, "transform")]:
        pkg = tiffin.pack(model, tmp_path / name, name=name, version="1", example=X[:3],
                          method=method)  # fmt: skip
        assert "TL004" not in rules(pkg.path), name


def test_a_zip_is_a_spreadsheet_by_its_member_names(tmp_path: Path, packed_iris: Path) -> None:
    import zipfile

    pkg = _folder(tmp_path, packed_iris)
    with zipfile.ZipFile(pkg / "artifacts" / "weights.zip", "w") as archive:
        archive.writestr("0.npy", b"\x93NUMPY" + b"xl/" * 100)  # the bytes, not a folder
    with zipfile.ZipFile(pkg / "artifacts" / "book.bin", "w") as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        archive.writestr("xl/workbook.xml", b"<workbook/>")
    found = {f.file: f.message for f in lint(pkg) if f.rule == "TL004"}
    assert list(found) == ["artifacts/book.bin"] and "spreadsheet" in found["artifacts/book.bin"]


UNUSED_CLASS_SRC = """\
import numpy as np


class Plotter:
    \"\"\"A training-time helper that inference never touches.\"\"\"

    def show(self, x):
        import matplotlib.pyplot as plt

        plt.plot(x)


def report(x):
    import seaborn

    return seaborn


class Model:
    def load(self, context):
        pass

    def predict(self, inputs):
        return np.asarray(inputs) * 2

    def explain(self):
        import shap  # reachable from the model: its dependency must be declared

        return shap
"""


def test_imports_in_unused_classes_are_not_implicit_dependencies(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "model.py"
    src.write_text(UNUSED_CLASS_SRC)
    pkg = tiffin.pack(f"{src}:Model", tmp_path / "p", name="m", version="1",
                      example=np.ones((1, 2)))  # fmt: skip
    err = capfd.readouterr().err
    assert "matplotlib" not in err and "seaborn" not in err
    found = [f for f in lint(pkg.path) if f.rule == "TL003"]
    assert [(f.line, "'shap'" in f.message) for f in found] == [(27, True)]
    # Once something refers to the helper, its imports count again.
    used = tmp_path / "used"
    used.mkdir()
    (used / "model.py").write_text(UNUSED_CLASS_SRC + "\nPLOTTER = Plotter\n")
    pkg = tiffin.pack(f"{used / 'model.py'}:Model", tmp_path / "q", name="m", version="1",
                      example=np.ones((1, 2)))  # fmt: skip
    assert "'matplotlib'" in " ".join(f.message for f in lint(pkg.path) if f.rule == "TL003")
